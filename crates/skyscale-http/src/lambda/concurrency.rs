//! Reserved concurrency (Put/Get/DeleteFunctionConcurrency) and GetAccountSettings.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use skyscale_core::Principal;

use super::error::LambdaError;
use super::model::{self, Concurrency};
use super::{parse_json, unqualified, LambdaResult, Params};
use crate::AppState;

pub(super) async fn put_concurrency(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
    body: Bytes,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    let req: model::ConcurrencyIn = parse_json(&body)?;
    let f = cp
        .set_reserved_concurrency(&by, &t.name, Some(req.reserved_concurrent_executions))
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(concurrency_response(&f))
}

pub(super) async fn get_concurrency(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    let f = cp
        .get_function(&by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(concurrency_response(&f))
}

pub(super) async fn delete_concurrency(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    cp.set_reserved_concurrency(&by, &t.name, None)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{"ReservedConcurrentExecutions": N}`, the field omitted when there is no reservation.
fn concurrency_response(f: &skyscale_core::FunctionRecord) -> Response {
    Json(Concurrency {
        reserved_concurrent_executions: f.reserved_concurrency,
    })
    .into_response()
}

pub(super) async fn account(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
) -> LambdaResult<Response> {
    let a = cp.account_settings(&by).await?;
    Ok(Json(model::account_settings(&a)).into_response())
}
