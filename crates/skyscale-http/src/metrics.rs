//! `GET /metrics` (the Prometheus text format) and `GET /v1/functions/{name}/metrics` (one
//! function's summary over a window). Both need an API key, like `/v1`: admin keys see
//! every function, developer keys the functions their patterns match, invoker keys get 403;
//! the core decides.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use skyscale_core::PROMETHEUS_CONTENT_TYPE;

use crate::v1::extract::Caller;
use crate::{ApiError, AppState};

pub(crate) fn routes(cp: AppState) -> Router<AppState> {
    Router::new()
        .route("/metrics", get(prometheus))
        .route("/v1/functions/{name}/metrics", get(function_metrics))
        .route_layer(middleware::from_fn_with_state(cp, crate::v1::require_key))
}

async fn prometheus(State(cp): State<AppState>, Caller(by): Caller) -> Result<Response, ApiError> {
    let text = cp.prometheus_metrics(&by)?;
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response())
}

/// The query of `GET /v1/functions/{name}/metrics`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsQuery {
    since: Option<String>,
}

async fn function_metrics(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    query: Result<Query<MetricsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = crate::v1::extract::query(query, "metrics", "since")?;
    let m = cp.function_metrics(&by, &name, q.since.as_deref()).await?;
    Ok(Json(m).into_response())
}
