//! Layers: PublishLayerVersion, GetLayerVersion, GetLayerVersionByArn, ListLayers,
//! ListLayerVersions, DeleteLayerVersion (botocore's shapes). Layer version permissions
//! (`.../policy`) stay unsupported (`unsupported.rs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use skyscale_core::{LayerSpec, LayerVersionRecord};

use super::error::LambdaError;
use super::extract::{Caller, LambdaJson};
use super::model::{code_sha256_b64, lambda_time};
use super::{max_items, page_response, LambdaResult, Params};
use crate::AppState;

/// Most items of a ListLayers or ListLayerVersions page (Lambda's `MaxLayerListItems`).
const MAX_LAYER_PAGE: usize = 50;

/// PublishLayerVersion's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PublishIn {
    description: Option<String>,
    content: ContentIn,
    compatible_runtimes: Option<Vec<String>>,
    compatible_architectures: Option<Vec<String>>,
    license_info: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContentIn {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
}

/// The members every layer version answer has (`GetLayerVersionResponse`, and
/// `LayerVersionsListItem` without `Content` and `LayerArn`).
fn version_item(cp: &AppState, v: &LayerVersionRecord) -> serde_json::Value {
    let mut out = serde_json::json!({
        "LayerVersionArn": cp.layer_version_arn(&v.layer, v.version),
        "Version": v.version,
        "Description": v.description,
        "CreatedDate": lambda_time(&v.created_at),
        "CompatibleArchitectures": ["x86_64"],
    });
    if !v.compatible_runtimes.is_empty() {
        let runtimes: Vec<&str> = v.compatible_runtimes.iter().map(|r| r.as_str()).collect();
        out["CompatibleRuntimes"] = runtimes.into();
    }
    if let Some(l) = &v.license {
        out["LicenseInfo"] = l.as_str().into();
    }
    out
}

fn version_full(cp: &AppState, v: &LayerVersionRecord) -> serde_json::Value {
    let mut out = version_item(cp, v);
    out["LayerArn"] = cp.layer_arn(&v.layer).into();
    out["Content"] = serde_json::json!({
        "CodeSha256": code_sha256_b64(Some(&v.code.sha256)),
        "CodeSize": v.code.size,
    });
    out
}

/// `VersionNumber` of the path: a positive integer.
fn version_number(raw: &str) -> LambdaResult<u64> {
    raw.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        LambdaError::invalid(format!(
            "invalid VersionNumber {raw:?}: must be a positive integer"
        ))
    })
}

/// Paging of a list already read whole: `Marker` is the index of the first item.
fn page<T>(items: Vec<T>, params: &Params) -> LambdaResult<(Vec<T>, Option<String>)> {
    let max = max_items(params, MAX_LAYER_PAGE)?;
    let start = match params.get("Marker").filter(|m| !m.is_empty()) {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| LambdaError::invalid(format!("invalid Marker {m:?}")))?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + page.len() < total).then(|| (start + page.len()).to_string());
    Ok((page, next))
}

/// Only x86_64 exists here: a filter for another architecture matches nothing.
fn other_architecture(params: &Params) -> bool {
    params
        .get("CompatibleArchitecture")
        .is_some_and(|a| a != "x86_64")
}

pub(super) async fn publish(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    LambdaJson(req): LambdaJson<PublishIn>,
) -> LambdaResult<Response> {
    if req
        .compatible_architectures
        .as_deref()
        .is_some_and(|a| a.iter().any(|a| a != "x86_64"))
    {
        return Err(LambdaError::invalid(
            "only the x86_64 architecture is supported",
        ));
    }
    let zip = match (req.content.zip_file, req.content.s3_bucket) {
        (Some(b64), _) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| LambdaError::invalid(format!("ZipFile is not valid base64: {e}")))?,
        (None, Some(_)) => {
            return Err(LambdaError::invalid(
                "layer content from S3 is not supported: send the zip in Content.ZipFile",
            ))
        }
        (None, None) => return Err(LambdaError::invalid("Content.ZipFile is required")),
    };
    let v = cp
        .publish_layer_version(
            &by,
            LayerSpec {
                name,
                description: req.description,
                license: req.license_info,
                compatible_runtimes: req.compatible_runtimes.unwrap_or_default(),
                zip,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(version_full(&cp, &v))).into_response())
}

pub(super) async fn get(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((name, version)): Path<(String, String)>,
) -> LambdaResult<Response> {
    let version = version_number(&version)?;
    let v = cp.get_layer_version(&by, &name, version).await?;
    Ok(Json(version_full(&cp, &v)).into_response())
}

/// `GET /2018-10-31/layers`: ListLayers, or with `find=LayerVersion` GetLayerVersionByArn.
pub(super) async fn list_or_find(
    State(cp): State<AppState>,
    Caller(by): Caller,
    params: Params,
) -> LambdaResult<Response> {
    if let Some(find) = params.get("find") {
        if find != "LayerVersion" {
            return Err(LambdaError::invalid(format!(
                "invalid find {find:?}: only LayerVersion is an operation"
            )));
        }
        let arn = params
            .get("Arn")
            .ok_or_else(|| LambdaError::invalid("Arn is required"))?;
        let v = cp.get_layer_version_by_arn(&by, arn).await?;
        return Ok(Json(version_full(&cp, &v)).into_response());
    }
    let runtime = params.get("CompatibleRuntime").map(String::as_str);
    let mut all = cp.list_layers(&by, runtime).await?;
    if other_architecture(&params) {
        all.clear();
    }
    let (page, next) = page(all, &params)?;
    let items = page.iter().map(|v| {
        serde_json::json!({
            "LayerName": v.layer.as_str(),
            "LayerArn": cp.layer_arn(&v.layer),
            "LatestMatchingVersion": version_item(&cp, v),
        })
    });
    Ok(page_response("Layers", items, next))
}

pub(super) async fn list_versions(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let runtime = params.get("CompatibleRuntime").map(String::as_str);
    let mut all = cp.list_layer_versions(&by, &name, runtime).await?;
    if other_architecture(&params) {
        all.clear();
    }
    let (page, next) = page(all, &params)?;
    let items = page.iter().map(|v| version_item(&cp, v));
    Ok(page_response("LayerVersions", items, next))
}

pub(super) async fn delete(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((name, version)): Path<(String, String)>,
) -> LambdaResult<Response> {
    let version = version_number(&version)?;
    cp.delete_layer_version(&by, &name, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
