//! Provisioned concurrency (lambda-compatibility.md, "Provisioned concurrency"): Put, Get,
//! List and DeleteProvisionedConcurrencyConfig on
//! `/2019-09-30/functions/{name}/provisioned-concurrency`, shapes as in botocore's model.
//! Get and List share the route: List is the one with `List=ALL`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use skyscale_core::{ProvisionedConfig, MAX_PROVISIONED_LIST};

use super::error::LambdaError;
use super::extract::{Caller, Function, LambdaJson};
use super::model::{lambda_time, Target};
use super::{LambdaResult, Params};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PutIn {
    provisioned_concurrent_executions: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    function_arn: Option<String>,
    requested_provisioned_concurrent_executions: u32,
    available_provisioned_concurrent_executions: u32,
    allocated_provisioned_concurrent_executions: u32,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_reason: Option<String>,
    last_modified: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListOut {
    provisioned_concurrency_configs: Vec<ConfigOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

/// The shape of Put and Get (no `FunctionArn`), or of a list item (with it).
fn out(c: ProvisionedConfig, with_arn: bool) -> ConfigOut {
    ConfigOut {
        function_arn: with_arn.then_some(c.function_arn),
        requested_provisioned_concurrent_executions: c.requested,
        available_provisioned_concurrent_executions: c.available,
        allocated_provisioned_concurrent_executions: c.allocated,
        status: c.status.as_str(),
        status_reason: c.status_reason,
        last_modified: lambda_time(&c.last_modified),
    }
}

/// The qualifier as sent: the extractor reads `$LATEST` as no qualifier, which these
/// operations refuse by name rather than as missing.
fn qualifier(t: &Target, params: &Params) -> Option<String> {
    t.qualifier
        .clone()
        .or_else(|| params.get("Qualifier").cloned())
}

pub(super) async fn put(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    params: Params,
    LambdaJson(req): LambdaJson<PutIn>,
) -> LambdaResult<Response> {
    let q = qualifier(&t, &params);
    let n = req
        .provisioned_concurrent_executions
        .ok_or_else(|| LambdaError::invalid("ProvisionedConcurrentExecutions is required"))?;
    let c = cp
        .put_provisioned(&by, &t.name, q.as_deref(), n)
        .await
        .map_err(|e| LambdaError::about(e, &t.qualified_arn()))?;
    Ok((StatusCode::ACCEPTED, Json(out(c, false))).into_response())
}

/// Get, or List with `List=ALL`.
pub(super) async fn get_or_list(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    params: Params,
) -> LambdaResult<Response> {
    if params.get("List").map(String::as_str) == Some("ALL") {
        return list(cp, by, t, params).await;
    }
    let q = qualifier(&t, &params);
    match cp
        .get_provisioned(&by, &t.name, q.as_deref())
        .await
        .map_err(|e| LambdaError::about(e, &t.qualified_arn()))?
    {
        Some(c) => Ok(Json(out(c, false)).into_response()),
        None => Err(LambdaError::provisioned_not_found()),
    }
}

async fn list(
    cp: AppState,
    by: skyscale_core::Principal,
    t: Target,
    params: Params,
) -> LambdaResult<Response> {
    if t.qualifier.is_some() {
        return Err(LambdaError::invalid(
            "ListProvisionedConcurrencyConfigs takes an unqualified function name",
        ));
    }
    let max = match params.get("MaxItems") {
        None => MAX_PROVISIONED_LIST,
        Some(s) => match s.parse::<usize>() {
            Ok(n @ 1..=MAX_PROVISIONED_LIST) => n,
            _ => {
                return Err(LambdaError::invalid(format!(
                    "invalid MaxItems {s:?}: must be between 1 and {MAX_PROVISIONED_LIST}"
                )))
            }
        },
    };
    let (page, next_marker) = cp
        .list_provisioned(&by, &t.name, params.get("Marker").map(String::as_str), max)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(Json(ListOut {
        provisioned_concurrency_configs: page.into_iter().map(|c| out(c, true)).collect(),
        next_marker,
    })
    .into_response())
}

pub(super) async fn delete(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    params: Params,
) -> LambdaResult<Response> {
    let q = qualifier(&t, &params);
    let existed = cp
        .delete_provisioned(&by, &t.name, q.as_deref())
        .await
        .map_err(|e| LambdaError::about(e, &t.qualified_arn()))?;
    if existed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(LambdaError::provisioned_not_found())
    }
}
