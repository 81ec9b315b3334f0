//! `/v1/keys` (create, list, revoke API keys) and `/v1/audit` (the audit log): admin keys
//! only, which the core decides like every other permission.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use skyscale_core::CoreError;
use skyscale_types::access::{AuditLog, CreateKey, KeyList};

use super::extract::Caller;
use crate::{ApiError, AppState};

type ApiResult<T> = Result<T, ApiError>;

/// Key requests are tiny.
const MAX_BODY: usize = 64 * 1024;

pub(crate) fn routes(cp: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", delete(revoke_key))
        .route("/v1/audit", get(audit))
        .route_layer(middleware::from_fn_with_state(cp, super::require_key))
}

async fn create_key(
    State(cp): State<AppState>,
    Caller(by): Caller,
    body: Body,
) -> ApiResult<Response> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError(CoreError::PayloadTooLarge(format!(
            "request body is larger than the {MAX_BODY}-byte limit"
        )))
    })?;
    let req: CreateKey = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError(CoreError::InvalidRequest(format!(
            "request body is not valid JSON for this operation: {e}"
        )))
    })?;
    let created = cp.create_key(&by, req).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_keys(State(cp): State<AppState>, Caller(by): Caller) -> ApiResult<Response> {
    let keys = cp.list_keys(&by).await?;
    Ok(Json(KeyList { keys }).into_response())
}

async fn revoke_key(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    cp.revoke_key(&by, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The query of `GET /v1/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<usize>,
    since: Option<String>,
}

async fn audit(
    State(cp): State<AppState>,
    Caller(by): Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| {
        ApiError(CoreError::InvalidRequest(format!(
            "invalid audit query (accepted: limit, since): {}",
            e.body_text()
        )))
    })?;
    let entries = cp.audit_log(&by, q.limit, q.since.as_deref()).await?;
    Ok(Json(AuditLog { entries }).into_response())
}
