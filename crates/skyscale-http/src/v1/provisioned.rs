//! `/v1` provisioned concurrency: put, get, list, delete a version's or an alias's
//! configuration (`/v1/functions/{name}/provisioned[/{qualifier}]`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skyscale_core::{CoreError, ProvisionedConfig};
use skyscale_types::api::{ProvisionedInfo, ProvisionedList, PutProvisioned};

use super::extract::{Caller, JsonBody};
use super::{ApiResult, LIST_PAGE};
use crate::AppState;

/// The core's configuration as the wire shows it.
fn info(c: ProvisionedConfig) -> ProvisionedInfo {
    ProvisionedInfo {
        function: c.function.to_string(),
        qualifier: c.qualifier,
        function_arn: c.function_arn,
        requested: c.requested,
        allocated: c.allocated,
        available: c.available,
        status: c.status,
        status_reason: c.status_reason,
        version: c.version,
        last_modified: c.last_modified,
    }
}

fn not_found(function: &str, qualifier: &str) -> CoreError {
    CoreError::NotFound(format!(
        "function {function}:{qualifier} has no provisioned concurrency configuration"
    ))
}

pub(super) async fn put(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((function, qualifier)): Path<(String, String)>,
    JsonBody(req): JsonBody<PutProvisioned>,
) -> ApiResult<Response> {
    let c = cp
        .put_provisioned(&by, &function, Some(&qualifier), req.requested)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(info(c))).into_response())
}

pub(super) async fn get_one(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((function, qualifier)): Path<(String, String)>,
) -> ApiResult<Response> {
    match cp.get_provisioned(&by, &function, Some(&qualifier)).await? {
        Some(c) => Ok(Json(info(c)).into_response()),
        None => Err(not_found(&function, &qualifier).into()),
    }
}

pub(super) async fn list(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(function): Path<String>,
) -> ApiResult<Response> {
    let mut configs = Vec::new();
    let mut marker = None;
    loop {
        let (page, next) = cp
            .list_provisioned(&by, &function, marker.as_deref(), LIST_PAGE)
            .await?;
        configs.extend(page.into_iter().map(info));
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    Ok(Json(ProvisionedList { configs }).into_response())
}

pub(super) async fn delete(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((function, qualifier)): Path<(String, String)>,
) -> ApiResult<Response> {
    if cp
        .delete_provisioned(&by, &function, Some(&qualifier))
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&function, &qualifier).into())
    }
}
