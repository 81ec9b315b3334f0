//! `/v1/keys` (create, list, revoke API keys) and `/v1/audit` (the audit log): admin keys
//! only, which the core decides like every other permission.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use skyscale_core::{AuditRecord, KeySpec, KeyView};
use skyscale_types::access::{AuditEntry, AuditLog, CreateKey, CreatedKey, KeyInfo, KeyList};

use super::extract::{query, Caller, JsonBody};
use crate::{ApiError, AppState};

type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn routes(cp: AppState) -> Router<AppState> {
    Router::new()
        .route(super::KEYS, get(list_keys).post(create_key))
        .route("/v1/keys/{id}", delete(revoke_key))
        .route("/v1/audit", get(audit))
        .route_layer(middleware::from_fn_with_state(cp, super::require_key))
}

async fn create_key(
    State(cp): State<AppState>,
    Caller(by): Caller,
    JsonBody(req): JsonBody<CreateKey>,
) -> ApiResult<Response> {
    let spec = KeySpec {
        role: req.role,
        functions: req.functions,
        description: req.description,
    };
    let created = cp.create_key(&by, spec).await?;
    let k = created.key;
    let answer = CreatedKey {
        id: k.id.to_string(),
        key: created.token,
        role: k.role,
        functions: k.functions,
        description: k.description,
        created_at: k.created_at,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

async fn list_keys(State(cp): State<AppState>, Caller(by): Caller) -> ApiResult<Response> {
    let keys = cp.list_keys(&by).await?;
    let keys = keys.into_iter().map(key_info).collect();
    Ok(Json(KeyList { keys }).into_response())
}

fn key_info(k: KeyView) -> KeyInfo {
    KeyInfo {
        id: k.id.to_string(),
        role: k.role,
        functions: k.functions,
        description: k.description,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
    }
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
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q, "audit", "limit, since")?;
    let entries = cp.audit_log(&by, q.limit, q.since.as_deref()).await?;
    let entries = entries.into_iter().map(audit_entry).collect();
    Ok(Json(AuditLog { entries }).into_response())
}

fn audit_entry(r: AuditRecord) -> AuditEntry {
    AuditEntry {
        id: r.id,
        time: r.time,
        key_id: r.key_id,
        action: r.action,
        target: r.target,
        outcome: r.outcome,
        detail: r.detail,
    }
}
