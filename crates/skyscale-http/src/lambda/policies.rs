//! AddPermission, RemovePermission and GetPolicy: a function's resource-based policy, with
//! Lambda's shapes (the policy and each statement are JSON documents inside JSON strings).
//! What a statement means in Skyscale is the core's business (`policies.rs` there).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use skyscale_core::{NewStatement, PolicyStatement};

use super::error::LambdaError;
use super::extract::{Caller, Function, LambdaJson};
use super::{expect, Params};
use super::{missing_resource, LambdaResult};
use crate::AppState;

/// AddPermission's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AddPermissionIn {
    statement_id: String,
    action: String,
    principal: String,
    source_arn: Option<String>,
    source_account: Option<String>,
    #[serde(rename = "PrincipalOrgID")]
    principal_org_id: Option<String>,
    function_url_auth_type: Option<String>,
    event_source_token: Option<String>,
    #[serde(default)]
    invoked_via_function_url: bool,
    revision_id: Option<String>,
}

/// One statement as Lambda shows it.
fn statement_json(arn: &str, s: &PolicyStatement) -> Value {
    let resource = match &s.qualifier {
        Some(q) => format!("{arn}:{q}"),
        None => arn.to_owned(),
    };
    let principal = if s.principal == "*" {
        json!("*")
    } else if s.principal.ends_with(".amazonaws.com") {
        json!({ "Service": s.principal })
    } else {
        json!({ "AWS": s.principal })
    };
    let mut out = json!({
        "Sid": s.statement_id,
        "Effect": "Allow",
        "Principal": principal,
        "Action": s.action,
        "Resource": resource,
    });
    let mut condition = serde_json::Map::new();
    if let Some(a) = &s.source_arn {
        condition.insert("ArnLike".into(), json!({ "AWS:SourceArn": a }));
    }
    let mut equals = serde_json::Map::new();
    if let Some(a) = &s.source_account {
        equals.insert("AWS:SourceAccount".into(), json!(a));
    }
    if let Some(o) = &s.principal_org_id {
        equals.insert("aws:PrincipalOrgID".into(), json!(o));
    }
    if let Some(t) = &s.url_auth_type {
        equals.insert("lambda:FunctionUrlAuthType".into(), json!(t));
    }
    if !equals.is_empty() {
        condition.insert("StringEquals".into(), Value::Object(equals));
    }
    if !condition.is_empty() {
        out["Condition"] = Value::Object(condition);
    }
    out
}

pub(super) async fn add(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    LambdaJson(req): LambdaJson<AddPermissionIn>,
) -> LambdaResult<Response> {
    if req
        .event_source_token
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(LambdaError::invalid(
            "EventSourceToken is not supported by Skyscale: there are no Alexa skills",
        ));
    }
    if req.invoked_via_function_url {
        return Err(LambdaError::invalid(
            "InvokedViaFunctionUrl is not supported by Skyscale: grant \
             lambda:InvokeFunctionUrl instead",
        ));
    }
    // The precondition is on the function's RevisionId, as in Lambda.
    expect(&cp, &by, &t, req.revision_id.as_deref(), None).await?;
    let s = cp
        .add_permission(
            &by,
            &t.name,
            t.qualifier.as_deref(),
            NewStatement {
                statement_id: req.statement_id,
                action: req.action,
                principal: req.principal,
                source_arn: req.source_arn,
                source_account: req.source_account,
                principal_org_id: req.principal_org_id,
                url_auth_type: req.function_url_auth_type,
            },
        )
        .await
        .map_err(|e| LambdaError::about(e, &t.qualified_arn()))?;
    let statement = statement_json(&t.arn, &s).to_string();
    Ok((StatusCode::CREATED, Json(json!({ "Statement": statement }))).into_response())
}

pub(super) async fn get(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
) -> LambdaResult<Response> {
    let statements = match cp.policy(&by, &t.name, t.qualifier.as_deref()).await {
        Ok(s) => s,
        Err(e) => return Err(missing_resource(&cp, &by, &t, e).await),
    };
    let policy = json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": statements.iter().map(|s| statement_json(&t.arn, s)).collect::<Vec<_>>(),
    });
    let policy = policy.to_string();
    // A revision of the policy: changes whenever a statement is added or removed.
    let revision = super::model::uuid_shaped(&policy);
    Ok(Json(json!({ "Policy": policy, "RevisionId": revision })).into_response())
}

pub(super) async fn remove(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    Path((_, sid)): Path<(String, String)>,
    params: Params,
) -> LambdaResult<Response> {
    expect(
        &cp,
        &by,
        &t,
        params.get("RevisionId").map(String::as_str),
        None,
    )
    .await?;
    if let Err(e) = cp
        .remove_permission(&by, &t.name, t.qualifier.as_deref(), &sid)
        .await
    {
        return Err(missing_resource(&cp, &by, &t, e).await);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
