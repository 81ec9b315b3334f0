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
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use skyscale_core::{CoreError, Followed, InvocationFilter, LogFilter, Principal};
use skyscale_types::api::{
    InvocationList, LogEntry, LogList, LogsSkipped, StreamEndReason, StreamEnded,
    LOGS_SKIPPED_EVENT, LOG_EVENT, STREAM_ENDED_EVENT,
};

use crate::{ApiError, AppState};

type ApiResult<T> = Result<T, ApiError>;

/// A comment line this often keeps a quiet stream (and the proxies on its way) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) fn routes(cp: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/invocations/{request_id}", get(one))
        .route("/v1/functions/{name}/invocations", get(list))
        .route("/v1/functions/{name}/logs", get(logs))
        .route_layer(middleware::from_fn_with_state(cp, crate::v1::require_key))
}

/// A query that does not parse is a 400 naming the parameters accepted.
fn query<T>(q: Result<Query<T>, QueryRejection>, what: &str, accepted: &str) -> ApiResult<T> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError(CoreError::InvalidRequest(format!(
            "invalid {what} query (accepted: {accepted}): {}",
            e.body_text()
        )))
    })
}

async fn one(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(request_id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(cp.invocation(&by, &request_id).await?).into_response())
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
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q, "invocations", "status, since, limit")?;
    let filter = InvocationFilter {
        status: q.status,
        since: q.since,
        limit: q.limit,
    };
    let invocations = cp.invocations(&by, &name, &filter).await?;
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
    Extension(by): Extension<Principal>,
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
    json_event(LOG_EVENT, e).id(e.id.to_string())
}

fn json_event<T: serde::Serialize>(name: &str, value: &T) -> Event {
    // The wire types serialise without fail; an empty object keeps the stream going if not.
    let data = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event(name).data(data)
}
