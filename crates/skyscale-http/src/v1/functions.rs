//! `/v1` functions: create, list, get, update, delete, deploy code, reserved concurrency.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use skyscale_core::{
    ControlPlane, CoreError, Expect, FunctionChanges, FunctionRecord, FunctionSpec,
};
use skyscale_types::api::{
    CreateFunction, FunctionInfo, FunctionLayerInfo, FunctionList, PutConcurrency, SnapStartInfo,
    UpdateFunction,
};

use super::extract::{query, Caller, JsonBody};
use super::ApiResult;
use crate::AppState;

/// A function as `/v1` shows it.
pub(super) fn function_info(cp: &ControlPlane, f: &FunctionRecord) -> FunctionInfo {
    let settings = cp.settings();
    let snap = cp.snap_start_status(f);
    FunctionInfo {
        name: f.name.to_string(),
        runtime: f.runtime.to_string(),
        handler: f.handler.as_str().to_owned(),
        memory_mb: f.memory.get(),
        timeout_s: f.timeout.get(),
        environment: f.environment.clone(),
        description: f.description.clone(),
        code_sha256: f.code.as_ref().map(|c| c.sha256.clone()),
        code_size: f.code.as_ref().map(|c| c.size),
        reserved_concurrency: f.reserved_concurrency,
        revision: f.revision,
        created_at: f.created_at.clone(),
        updated_at: f.updated_at.clone(),
        version: f.version,
        network: f.network,
        ephemeral_storage_mb: f.ephemeral_mb,
        layers: f
            .layers
            .iter()
            .map(|l| FunctionLayerInfo {
                arn: settings.layer_version_arn(l.layer.as_str(), l.version),
                layer: l.layer.to_string(),
                version: l.version,
                code_size: l.code.size,
            })
            .collect(),
        snap_start: SnapStartInfo {
            apply_on: snap.apply_on,
            optimization_status: snap.optimization,
            reason: snap.reason,
        },
    }
}

fn answer(cp: &AppState, f: &FunctionRecord) -> Response {
    Json(function_info(cp, f)).into_response()
}

fn spec(req: CreateFunction) -> ApiResult<FunctionSpec> {
    let code = req
        .code_zip_base64
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    CoreError::InvalidParameter(format!("code_zip_base64 is not valid base64: {e}"))
                })
        })
        .transpose()?;
    Ok(FunctionSpec {
        name: req.name,
        runtime: req.runtime,
        handler: req.handler,
        memory_mb: req.memory_mb,
        timeout_s: req.timeout_s,
        environment: req.environment,
        description: req.description,
        code,
        network: req.network,
        ephemeral_storage_mb: req.ephemeral_storage_mb,
        tags: Default::default(),
        layers: req.layers,
        snap_start: req.snap_start,
    })
}

fn changes(req: UpdateFunction) -> FunctionChanges {
    FunctionChanges {
        runtime: req.runtime,
        handler: req.handler,
        memory_mb: req.memory_mb,
        timeout_s: req.timeout_s,
        environment: req.environment,
        description: req.description,
        network: req.network,
        ephemeral_storage_mb: req.ephemeral_storage_mb,
        layers: req.layers,
        snap_start: req.snap_start,
    }
}

pub(super) async fn create(
    State(cp): State<AppState>,
    Caller(by): Caller,
    JsonBody(req): JsonBody<CreateFunction>,
) -> ApiResult<Response> {
    let f = cp.create_function(&by, spec(req)?).await?;
    Ok((StatusCode::CREATED, answer(&cp, &f)).into_response())
}

pub(super) async fn list(State(cp): State<AppState>, Caller(by): Caller) -> ApiResult<Response> {
    let functions = cp.list_functions(&by).await?;
    let functions = functions.iter().map(|f| function_info(&cp, f)).collect();
    Ok(Json(FunctionList { functions }).into_response())
}

pub(super) async fn get_one(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(answer(&cp, &cp.get_function(&by, &name).await?))
}

pub(super) async fn update(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<UpdateFunction>,
) -> ApiResult<Response> {
    let f = cp
        .update_function(&by, &name, changes(req), Expect::default())
        .await?;
    Ok(answer(&cp, &f))
}

pub(super) async fn delete(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    cp.delete_function(&by, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/functions/{name}/code`'s query: `layers`, comma-separated layer version ARNs
/// (empty: none) that replace the function's layers in the same update as the code.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeployQuery {
    layers: Option<String>,
}

pub(super) async fn deploy(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    q: Result<Query<DeployQuery>, QueryRejection>,
    zip: Bytes,
) -> ApiResult<Response> {
    let q = query(q, "deploy", "layers")?;
    let layers = q.layers.map(|l| {
        l.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let f = cp
        .deploy_code(&by, &name, zip.to_vec(), layers, Expect::default())
        .await?;
    Ok(answer(&cp, &f))
}

pub(super) async fn put_concurrency(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<PutConcurrency>,
) -> ApiResult<Response> {
    let f = cp
        .set_reserved_concurrency(&by, &name, Some(req.reserved_concurrency))
        .await?;
    Ok(answer(&cp, &f))
}

pub(super) async fn delete_concurrency(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let f = cp.set_reserved_concurrency(&by, &name, None).await?;
    Ok(answer(&cp, &f))
}
