//! `/v1` asynchronous invocation: the async invoke (`x-skyscale-invocation-type: Event` on
//! `POST /v1/functions/{name}/invoke`, with an optional `Idempotency-Key`), a function's
//! events and dead letters, redrives, and event invoke configurations.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use skyscale_core::{
    AsyncInvoke, CoreError, EventConfig, EventConfigChange, EventInfo, EventStatus, Principal,
};
use skyscale_types::api::REQUEST_ID_HEADER;
use skyscale_types::events::{
    AsyncAccepted, EventConfigInfo, EventConfigList, EventConfigRequest, EventEntry, EventList,
    RedriveRequest, Redriven, IDEMPOTENCY_KEY_HEADER,
};
use skyscale_types::time::rfc3339;

use super::extract::{query, Caller, JsonBody, OptionalJsonBody};
use super::{qualifier, ApiResult, QualifierQuery};
use crate::{ApiError, AppState};

/// The async branch of `POST /v1/functions/{name}/invoke`: 202 once the event is committed.
pub(super) async fn invoke_async(
    cp: &AppState,
    by: &Principal,
    name: &str,
    qualifier: Option<String>,
    kind: &HeaderValue,
    headers: &HeaderMap,
    payload: Bytes,
) -> ApiResult<Response> {
    if kind.as_bytes() != b"Event" {
        return Err(ApiError(CoreError::InvalidParameter(format!(
            "invalid x-skyscale-invocation-type {:?}: expected Event (or no header for a \
             synchronous invoke)",
            String::from_utf8_lossy(kind.as_bytes())
        ))));
    }
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError(CoreError::InvalidParameter(
                        "invalid Idempotency-Key: expected printable ASCII".into(),
                    ))
                })?
                .to_owned(),
        ),
    };
    let accepted = cp
        .enqueue(
            by,
            name,
            AsyncInvoke {
                qualifier,
                idempotency_key,
            },
            payload.to_vec(),
        )
        .await?;
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&accepted.event_id) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    Ok((
        StatusCode::ACCEPTED,
        h,
        Json(AsyncAccepted {
            event_id: accepted.event_id,
            duplicate: accepted.duplicate,
        }),
    )
        .into_response())
}

fn entry(e: EventInfo, full: bool) -> EventEntry {
    let payload = full.then(|| {
        serde_json::from_slice(&e.payload).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&e.payload).into_owned())
        })
    });
    EventEntry {
        id: e.id,
        function: e.function,
        qualifier: e.qualifier,
        status: e.status.as_str().to_owned(),
        running: e.running,
        accepted_at: rfc3339(e.accepted_at),
        age_seconds: e.age.as_secs_f64(),
        attempts: e.attempts,
        next_attempt_at: e.next_attempt_at.map(rfc3339),
        last_error: e.last_error,
        dead_reason: e.dead_reason.map(|r| r.as_str().to_owned()),
        dead_at: e.dead_at.map(rfc3339),
        payload,
        record: if full { e.record } else { None },
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    status: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn list(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Json<EventList>> {
    let q = query(q, "events", "status, limit")?;
    let status = q.status.as_deref().map(EventStatus::parse).transpose()?;
    let events = cp.events(&by, &name, status, q.limit).await?;
    Ok(Json(EventList {
        events: events.into_iter().map(|e| entry(e, false)).collect(),
    }))
}

pub(super) async fn get_one(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<EventEntry>> {
    Ok(Json(entry(cp.event(&by, &id).await?, true)))
}

pub(super) async fn delete_one(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    cp.delete_dead_letter(&by, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn redrive(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<RedriveRequest>,
) -> ApiResult<Json<Redriven>> {
    let id = match (req.id.as_deref(), req.all) {
        (Some(id), false) => Some(id),
        (None, true) => None,
        _ => {
            return Err(ApiError(CoreError::InvalidParameter(
                "a redrive names one dead letter (\"id\") or all of them (\"all\": true), \
                 not both and not neither"
                    .into(),
            )))
        }
    };
    let redriven = cp.redrive(&by, &name, id).await?;
    Ok(Json(Redriven { redriven }))
}

fn config_info(c: EventConfig) -> EventConfigInfo {
    EventConfigInfo {
        function: c.function.to_string(),
        qualifier: c.qualifier,
        function_arn: c.function_arn,
        maximum_retry_attempts: c.max_retries,
        maximum_event_age_seconds: c.max_age_s,
        on_success: c.on_success,
        on_failure: c.on_failure,
        last_modified: rfc3339(c.last_modified),
    }
}

/// A request's destination: absent leaves it (in a PATCH), empty removes it.
fn destination(d: Option<String>) -> Option<Option<String>> {
    d.map(|d| Some(d).filter(|d| !d.is_empty()))
}

fn change(r: EventConfigRequest) -> EventConfigChange {
    EventConfigChange {
        max_retries: r.maximum_retry_attempts,
        max_age_s: r.maximum_event_age_seconds,
        on_success: destination(r.on_success),
        on_failure: destination(r.on_failure),
    }
}

pub(super) async fn get_config(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
) -> ApiResult<Json<EventConfigInfo>> {
    let q = qualifier(query, "event config")?;
    Ok(Json(config_info(
        cp.event_config(&by, &name, q.as_deref()).await?,
    )))
}

pub(super) async fn put_config(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    OptionalJsonBody(req): OptionalJsonBody<EventConfigRequest>,
) -> ApiResult<Json<EventConfigInfo>> {
    let q = qualifier(query, "event config")?;
    Ok(Json(config_info(
        cp.put_event_config(&by, &name, q.as_deref(), change(req))
            .await?,
    )))
}

pub(super) async fn update_config(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    JsonBody(req): JsonBody<EventConfigRequest>,
) -> ApiResult<Json<EventConfigInfo>> {
    let q = qualifier(query, "event config")?;
    Ok(Json(config_info(
        cp.update_event_config(&by, &name, q.as_deref(), change(req))
            .await?,
    )))
}

pub(super) async fn delete_config(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
) -> ApiResult<StatusCode> {
    let q = qualifier(query, "event config")?;
    cp.delete_event_config(&by, &name, q.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_configs(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<EventConfigList>> {
    let configs = cp.event_configs(&by, &name).await?;
    Ok(Json(EventConfigList {
        configs: configs.into_iter().map(config_info).collect(),
    }))
}
