//! `/v1` function URLs: create, get, update, delete, list.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use skyscale_types::api::{CreateFunctionUrl, FunctionUrlInfo, FunctionUrlList, UpdateFunctionUrl};

use super::extract::{Caller, JsonBody};
use super::{qualifier, ApiResult, QualifierQuery, LIST_PAGE};
use crate::AppState;

/// The core's function URL as the wire shows it; the address uses the host this request
/// was sent to.
fn url_info(headers: &HeaderMap, c: &skyscale_core::UrlConfig) -> FunctionUrlInfo {
    FunctionUrlInfo {
        url: crate::url::function_url(headers, &c.function, c.alias.as_deref()),
        function: c.function.clone(),
        alias: c.alias.clone(),
        function_arn: c.function_arn.clone(),
        auth_type: c.auth_type,
        cors: c.cors.clone(),
        invoke_mode: c.invoke_mode.clone(),
        created_at: c.created_at.clone(),
        updated_at: c.updated_at.clone(),
    }
}

pub(super) async fn create_url(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(function): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateFunctionUrl>,
) -> ApiResult<Response> {
    let qualifier = qualifier(query, "function URL")?;
    let c = cp
        .create_url_config(
            &by,
            &function,
            qualifier.as_deref(),
            req.auth_type,
            req.cors,
            None,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(url_info(&headers, &c))).into_response())
}

pub(super) async fn get_url(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(function): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let qualifier = qualifier(query, "function URL")?;
    let c = cp
        .get_url_config(&by, &function, qualifier.as_deref())
        .await?;
    Ok(Json(url_info(&headers, &c)).into_response())
}

pub(super) async fn update_url(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(function): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<UpdateFunctionUrl>,
) -> ApiResult<Response> {
    let qualifier = qualifier(query, "function URL")?;
    let c = cp
        .update_url_config(
            &by,
            &function,
            qualifier.as_deref(),
            req.auth_type,
            req.cors,
            None,
        )
        .await?;
    Ok(Json(url_info(&headers, &c)).into_response())
}

pub(super) async fn delete_url(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(function): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let qualifier = qualifier(query, "function URL")?;
    cp.delete_url_config(&by, &function, qualifier.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_urls(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(function): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let mut urls = Vec::new();
    let mut marker = None;
    loop {
        let (page, next) = cp
            .list_url_configs_page(&by, &function, marker.as_deref(), LIST_PAGE)
            .await?;
        urls.extend(page.iter().map(|c| url_info(&headers, c)));
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    Ok(Json(FunctionUrlList { urls }).into_response())
}
