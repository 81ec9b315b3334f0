//! `/v1` functions: create, list, get, update, delete, deploy code, reserved concurrency.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use skyscale_core::{Expect, Principal};
use skyscale_types::api::{CreateFunction, FunctionList, PutConcurrency, UpdateFunction};

use super::{read_body, read_json, ApiResult};
use crate::AppState;

pub(super) async fn create(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    body: Body,
) -> ApiResult<Response> {
    let req: CreateFunction = read_json(body).await?;
    let f = cp.create_function(&by, req).await?;
    Ok((StatusCode::CREATED, Json(f)).into_response())
}

pub(super) async fn list(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
) -> ApiResult<Response> {
    let functions = cp.list_functions(&by).await?;
    Ok(Json(FunctionList { functions }).into_response())
}

pub(super) async fn get_one(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(cp.get_function(&by, &name).await?).into_response())
}

pub(super) async fn update(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let req: UpdateFunction = read_json(body).await?;
    Ok(Json(
        cp.update_function(&by, &name, req, Expect::default())
            .await?,
    )
    .into_response())
}

pub(super) async fn delete(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    cp.delete_function(&by, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn deploy(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let zip = read_body(body).await?;
    Ok(Json(
        cp.deploy_code(&by, &name, zip.to_vec(), Expect::default())
            .await?,
    )
    .into_response())
}

pub(super) async fn put_concurrency(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let req: PutConcurrency = read_json(body).await?;
    let f = cp
        .set_reserved_concurrency(&by, &name, Some(req.reserved_concurrency))
        .await?;
    Ok(Json(f).into_response())
}

pub(super) async fn delete_concurrency(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(cp.set_reserved_concurrency(&by, &name, None).await?).into_response())
}
