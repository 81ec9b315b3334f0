//! Invocation records and logs on `/v1`: one record by request id, a function's records,
//! and its logs as text, JSON or, with `follow=true`, a server-sent-events stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use skyscale_core::{
    CoreError, Followed, InvocationFilter, InvocationRecord, InvocationStatus, LogEntry, LogFilter,
};
use skyscale_types::api::{
    self, InvocationList, LogList, LogsSkipped, StreamEndReason, StreamEnded,
};
use skyscale_types::api::{LOGS_SKIPPED_EVENT, LOG_EVENT, STREAM_ENDED_EVENT};
use skyscale_types::time::rfc3339;

use super::extract::{query, Caller};
use crate::{ApiError, AppState};

type ApiResult<T> = Result<T, ApiError>;

/// A comment line this often keeps a quiet stream (and the proxies on its way) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) fn routes(cp: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/invocations/{request_id}", get(one))
        .route("/v1/functions/{name}/invocations", get(list))
        .route("/v1/functions/{name}/logs", get(logs))
        .route_layer(middleware::from_fn_with_state(cp, super::require_key))
}

async fn one(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(request_id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(record(cp.invocation(&by, &request_id).await?)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q, "invocations", "status, since, limit")?;
    let status = q
        .status
        .map(|s| {
            InvocationStatus::parse(&s).ok_or_else(|| {
                CoreError::InvalidParameter(format!(
                    "invalid status {s:?}: expected success, function_error, timeout, \
                     throttled or crashed"
                ))
            })
        })
        .transpose()?;
    let filter = InvocationFilter {
        status,
        since: q.since,
        limit: q.limit,
    };
    let invocations = cp.invocations(&by, &name, &filter).await?;
    let invocations = invocations.into_iter().map(record).collect();
    Ok(Json(InvocationList { invocations }).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    since: Option<String>,
    request_id: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    follow: bool,
    format: Option<String>,
}

async fn logs(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q, "logs", "since, request_id, limit, follow, format")?;
    let json = match q.format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ApiError(CoreError::InvalidParameter(format!(
                "invalid format {other:?}: expected text or json"
            ))))
        }
    };
    let filter = LogFilter {
        since: q.since,
        request_id: q.request_id,
        limit: q.limit,
    };
    if q.follow {
        let (backlog, follower) = cp.follow_logs(&by, &name, &filter).await?;
        let backlog = futures_util::stream::iter(backlog).map(|e| Ok(log_event(&e)));
        let live = futures_util::stream::unfold(follower, |mut f| async move {
            let event = match f.next().await {
                Followed::Entry(e) => log_event(&e),
                Followed::Skipped(skipped) => {
                    json_event(LOGS_SKIPPED_EVENT, &LogsSkipped { skipped })
                }
                Followed::End => return None,
                // The follower answers `End` after these.
                Followed::KeyRevoked => ended(
                    StreamEndReason::KeyRevoked,
                    "the API key of this stream was revoked".to_owned(),
                ),
                Followed::Expired(after) => ended(
                    StreamEndReason::Lifetime,
                    format!(
                        "the stream reached the server's maximum lifetime of {}s: reconnect \
                         to follow on",
                        after.as_secs()
                    ),
                ),
            };
            Some((Ok::<_, Infallible>(event), f))
        });
        let keep_alive = KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive");
        return Ok(Sse::new(backlog.chain(live))
            .keep_alive(keep_alive)
            .into_response());
    }
    let entries = cp.logs(&by, &name, &filter).await?;
    if json {
        let entries = entries.iter().map(log_entry).collect();
        return Ok(Json(LogList { entries }).into_response());
    }
    let text: String = entries.iter().map(|e| e.text.as_str()).collect();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

fn ended(reason: StreamEndReason, message: String) -> Event {
    json_event(STREAM_ENDED_EVENT, &StreamEnded { reason, message })
}

/// `event: log`, `id: <entry id>`, `data: <the entry as JSON>` (one line).
fn log_event(e: &LogEntry) -> Event {
    json_event(LOG_EVENT, &log_entry(e)).id(e.id.to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn record(r: InvocationRecord) -> api::InvocationRecord {
    api::InvocationRecord {
        started_at: rfc3339(r.started_at),
        ended_at: rfc3339(r.ended_at),
        request_id: r.request_id,
        function: r.function,
        version: r.version,
        caller_key_id: r.caller,
        trigger: r.trigger.as_str().to_owned(),
        status: r.status.as_str().to_owned(),
        error_type: r.error_type,
        cold_start: r.cold_start,
        init_type: r.init_type.as_str().to_owned(),
        queue_wait_ms: ms(r.queue_wait),
        init_duration_ms: r.init_duration.map(ms),
        duration_ms: ms(r.duration),
        max_memory_used_mb: r.max_memory_used_mb,
        memory_size_mb: r.memory_size_mb,
        response_bytes: r.response_bytes,
        attempt: r.event.as_ref().map(|(_, n)| *n),
        event_id: r.event.map(|(id, _)| id),
    }
}

fn log_entry(e: &LogEntry) -> api::LogEntry {
    api::LogEntry {
        id: e.id,
        request_id: e.request_id.clone(),
        function: e.function.clone(),
        started_at: rfc3339(e.started_at),
        bytes: e.bytes,
        text: e.text.clone(),
    }
}

pub(super) fn json_event<T: serde::Serialize>(name: &str, value: &T) -> Event {
    // The wire types serialise without fail; an empty object keeps the stream going if not.
    let data = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event(name).data(data)
}
