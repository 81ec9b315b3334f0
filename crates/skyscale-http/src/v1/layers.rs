//! `/v1` layers: publish a version, list layers (the newest version of each), list a
//! layer's versions, get one, delete one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use skyscale_core::{CoreError, LayerSpec, LayerVersionRecord};
use skyscale_types::api::{
    BuildRequirements, LayerVersionInfo, LayerVersionList, PublishLayer, RequirementsLayer,
};

use super::extract::{Caller, JsonBody};
use super::ApiResult;
use crate::AppState;

fn info(cp: &AppState, v: &LayerVersionRecord) -> LayerVersionInfo {
    LayerVersionInfo {
        layer: v.layer.to_string(),
        version: v.version,
        arn: cp.layer_version_arn(&v.layer, v.version),
        description: v.description.clone(),
        license: v.license.clone(),
        compatible_runtimes: v
            .compatible_runtimes
            .iter()
            .map(|r| r.to_string())
            .collect(),
        code_sha256: v.code.sha256.clone(),
        code_size: v.code.size,
        unzipped_size: v.unzipped_size,
        created_at: v.created_at.clone(),
    }
}

fn list(cp: &AppState, all: &[LayerVersionRecord]) -> Response {
    Json(LayerVersionList {
        layers: all.iter().map(|v| info(cp, v)).collect(),
    })
    .into_response()
}

fn version_number(raw: &str) -> ApiResult<u64> {
    Ok(raw.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        CoreError::InvalidParameter(format!(
            "invalid layer version {raw:?}: must be a positive integer"
        ))
    })?)
}

pub(super) async fn publish(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<PublishLayer>,
) -> ApiResult<Response> {
    let zip = base64::engine::general_purpose::STANDARD
        .decode(req.zip_base64.trim())
        .map_err(|e| CoreError::InvalidParameter(format!("zip_base64 is not valid base64: {e}")))?;
    let v = cp
        .publish_layer_version(
            &by,
            LayerSpec {
                name,
                description: req.description,
                license: req.license,
                compatible_runtimes: req.compatible_runtimes,
                zip,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(info(&cp, &v))).into_response())
}

pub(super) async fn list_layers(
    State(cp): State<AppState>,
    Caller(by): Caller,
) -> ApiResult<Response> {
    Ok(list(&cp, &cp.list_layers(&by, None).await?))
}

pub(super) async fn list_versions(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(list(&cp, &cp.list_layer_versions(&by, &name, None).await?))
}

pub(super) async fn get_one(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    let version = version_number(&version)?;
    let v = cp.get_layer_version(&by, &name, version).await?;
    Ok(Json(info(&cp, &v)).into_response())
}

pub(super) async fn delete_one(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    let version = version_number(&version)?;
    cp.delete_layer_version(&by, &name, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/requirements`: the layer of a `requirements.txt`, built or reused.
pub(super) async fn requirements(
    State(cp): State<AppState>,
    Caller(by): Caller,
    JsonBody(req): JsonBody<BuildRequirements>,
) -> ApiResult<Response> {
    let deps = cp
        .requirements_layer(&by, &req.requirements, &req.runtime)
        .await?;
    let status = if deps.built {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = RequirementsLayer {
        layer: info(&cp, &deps.layer),
        built: deps.built,
        output: deps.output,
    };
    Ok((status, Json(answer)).into_response())
}
