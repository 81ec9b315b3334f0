//! `/v1` layers: publish a version, list layers (the newest version of each), list a
//! layer's versions, get one, delete one.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use futures_util::StreamExt;
use skyscale_core::{CoreError, DepsLayer, LayerSpec, LayerVersionRecord};
use skyscale_types::api::{
    BuildFailed, BuildOutput, BuildRequirements, ErrorDetail, LayerVersionInfo, LayerVersionList,
    PublishLayer, RequirementsLayer, BUILD_ERROR_EVENT, BUILD_OUTPUT_EVENT, BUILD_RESULT_EVENT,
};

use super::error::ApiError;
use super::extract::{Caller, JsonBody};
use super::invocations::json_event;
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

/// `POST /v1/requirements`: the layer of a `requirements.txt`, built or reused. With
/// `Accept: text/event-stream`, pip's output streams as it runs (see
/// [`skyscale_types::api::BUILD_OUTPUT_EVENT`]); checks that fail before anything runs are
/// plain errors either way. The build runs on a task of its own: a caller that hangs up
/// does not cut it short (it finishes, and its layer is reused next time).
pub(super) async fn requirements(
    State(cp): State<AppState>,
    Caller(by): Caller,
    headers: HeaderMap,
    JsonBody(req): JsonBody<BuildRequirements>,
) -> ApiResult<Response> {
    let build = cp.requirements_build(&by, &req.requirements, &req.runtime)?;
    let stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    let task = {
        let cp = cp.clone();
        tokio::spawn(async move { cp.requirements_layer(build, stream.then_some(tx)).await })
    };
    let finished = |cp: &AppState, joined: Result<Result<DepsLayer, CoreError>, _>| match joined {
        Ok(Ok(deps)) => Ok(RequirementsLayer {
            layer: info(cp, &deps.layer),
            built: deps.built,
            output: deps.output,
        }),
        Ok(Err(e)) => Err(ApiError(e)),
        Err(e) => Err(ApiError(CoreError::internal_from(
            "the requirements build task".to_owned(),
            e,
        ))),
    };
    if !stream {
        let answer = finished(&cp, task.await)?;
        let status = if answer.built {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok((status, Json(answer)).into_response());
    }
    // The lines while the build runs; the sender is dropped when it ends.
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        let event = json_event(BUILD_OUTPUT_EVENT, &BuildOutput { line });
        Some((Ok::<_, Infallible>(event), rx))
    });
    let end = futures_util::stream::once(async move {
        let event = match finished(&cp, task.await) {
            Ok(answer) => json_event(BUILD_RESULT_EVENT, &answer),
            Err(e) => {
                let (status, code) = e.status_and_code();
                json_event(
                    BUILD_ERROR_EVENT,
                    &BuildFailed {
                        status: status.as_u16(),
                        error: ErrorDetail {
                            code: code.to_owned(),
                            message: e.message(),
                        },
                    },
                )
            }
        };
        Ok(event)
    });
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(15))
        .text("keep-alive");
    Ok(Sse::new(lines.chain(end))
        .keep_alive(keep_alive)
        .into_response())
}
