//! Reserved concurrency (Put/Get/DeleteFunctionConcurrency) and GetAccountSettings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::LambdaError;
use super::extract::{Caller, LambdaJson, Unqualified};
use super::model::{self, Concurrency};
use super::LambdaResult;
use crate::AppState;

pub(super) async fn put_concurrency(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    LambdaJson(req): LambdaJson<model::ConcurrencyIn>,
) -> LambdaResult<Response> {
    let f = cp
        .set_reserved_concurrency(&by, &t.name, Some(req.reserved_concurrent_executions))
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(concurrency_response(&f))
}

pub(super) async fn get_concurrency(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
) -> LambdaResult<Response> {
    let f = cp
        .get_function(&by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(concurrency_response(&f))
}

pub(super) async fn delete_concurrency(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
) -> LambdaResult<Response> {
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
    Caller(by): Caller,
) -> LambdaResult<Response> {
    let a = cp.account_settings(&by).await?;
    Ok(Json(model::account_settings(&a)).into_response())
}
