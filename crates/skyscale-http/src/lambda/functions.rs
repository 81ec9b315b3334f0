//! Function lifecycle operations: CreateFunction, GetFunction, GetFunctionConfiguration,
//! ListFunctions, UpdateFunctionCode, UpdateFunctionConfiguration, DeleteFunction.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use skyscale_core::{Expect, FunctionChanges, FunctionRecord, FunctionSpec, Principal};

use super::error::LambdaError;
use super::extract::{Caller, Function, LambdaJson, Unqualified};
use super::model::{self};
use super::{
    config_json, expect, max_items, page_response, target, LambdaResult, Params, MAX_PAGE,
};
use crate::AppState;

fn only_x86_64(architectures: Option<&[String]>) -> LambdaResult<()> {
    match architectures {
        Some(a) if a.iter().any(|a| a != "x86_64") => Err(LambdaError::invalid(
            "only the x86_64 architecture is supported",
        )),
        _ => Ok(()),
    }
}

/// The zip of a request's `ZipFile` (base64); code from S3 or an image is refused by name.
fn zip_required(
    zip: Option<String>,
    s3: Option<String>,
    image: Option<String>,
) -> LambdaResult<Vec<u8>> {
    match (zip, s3, image) {
        (Some(b64), _, _) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| LambdaError::invalid(format!("ZipFile is not valid base64: {e}"))),
        (None, Some(_), _) => Err(LambdaError::invalid(
            "code from S3 is not supported: send the zip in ZipFile",
        )),
        (None, None, Some(_)) => Err(LambdaError::invalid(
            "container images are not supported: send a zip in ZipFile",
        )),
        (None, None, None) => Err(LambdaError::invalid("ZipFile is required")),
    }
}

pub(super) async fn create(
    State(cp): State<AppState>,
    Caller(by): Caller,
    LambdaJson(req): LambdaJson<model::CreateFunctionIn>,
) -> LambdaResult<Response> {
    req.unhonoured.check()?;
    if req.package_type.as_deref().is_some_and(|p| p != "Zip") {
        return Err(LambdaError::invalid(
            "only the Zip package type is supported",
        ));
    }
    only_x86_64(req.architectures.as_deref())?;
    let runtime = req
        .runtime
        .ok_or_else(|| LambdaError::invalid("Runtime is required for a Zip function"))?;
    let zip = zip_required(req.code.zip_file, req.code.s3_bucket, req.code.image_uri)?;
    let _ = req.role;
    let arn = cp.settings().function_arn(&req.function_name);
    let f = cp
        .create_function(
            &by,
            FunctionSpec {
                name: req.function_name,
                runtime,
                handler: req.handler,
                memory_mb: req.memory_size,
                timeout_s: req.timeout,
                environment: req.environment.unwrap_or_default().variables,
                description: req.description,
                code: Some(zip),
                // Lambda functions outside a VPC reach the internet; Skyscale's do not unless
                // given network explicitly (through /v1 or the CLI).
                network: None,
                ephemeral_storage_mb: req.ephemeral_storage.map(|e| e.size),
                tags: req.tags.unwrap_or_default(),
                layers: req.layers.unwrap_or_default(),
                snap_start: req.snap_start.map(model::SnapStartIn::apply_on),
            },
        )
        .await
        .map_err(|e| LambdaError::about(e, &arn))?;
    let f = published_or_latest(&cp, &by, f, req.publish, &arn).await?;
    Ok((StatusCode::CREATED, config_json(&cp, &f)).into_response())
}

pub(super) async fn get_function(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    headers: axum::http::HeaderMap,
) -> LambdaResult<Response> {
    let about = |e| LambdaError::about(e, &t.qualified_arn());
    let f = cp
        .get_function_version(&by, &t.name, t.qualifier.as_deref())
        .await
        .map_err(about)?;
    let tags = cp.list_tags(&by, &t.name).await.map_err(about)?;
    let mut out = serde_json::json!({
        "Configuration": model::configuration(&cp, &f),
        "Code": { "RepositoryType": "S3" },
        "Tags": tags,
    });
    let grant = cp
        .code_location(&by, &t.name, t.qualifier.as_deref(), SystemTime::now())
        .await
        .map_err(about)?;
    if let Some(grant) = grant {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        out["Code"]["Location"] = crate::code::location(host, &grant).into();
    }
    if let Some(n) = f.reserved_concurrency {
        out["Concurrency"] = serde_json::json!({ "ReservedConcurrentExecutions": n });
    }
    Ok(Json(out).into_response())
}

pub(super) async fn get_configuration(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
) -> LambdaResult<Response> {
    let f = cp
        .get_function_version(&by, &t.name, t.qualifier.as_deref())
        .await
        .map_err(|e| LambdaError::about(e, &t.qualified_arn()))?;
    Ok(config_json(&cp, &f).into_response())
}

/// A function's configuration as the answer, or, with `publish`, the version published from
/// exactly that revision (Lambda's `Publish` on create and code updates).
async fn published_or_latest(
    cp: &AppState,
    by: &Principal,
    f: FunctionRecord,
    publish: bool,
    arn: &str,
) -> LambdaResult<FunctionRecord> {
    if !publish {
        return Ok(f);
    }
    let expect = Expect {
        revision: Some(f.revision),
    };
    let (v, _) = cp
        .publish_version(by, f.name.as_str(), None, expect)
        .await
        .map_err(|e| LambdaError::about(e, arn))?;
    Ok(v)
}

pub(super) async fn list(
    State(cp): State<AppState>,
    Caller(by): Caller,
    params: Params,
) -> LambdaResult<Response> {
    let max = max_items(&params, MAX_PAGE)?;
    let all_versions = match params.get("FunctionVersion").map(String::as_str) {
        None | Some("") => false,
        Some("ALL") => true,
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "invalid FunctionVersion {other:?}: the only value is ALL"
            )))
        }
    };
    let marker = params.get("Marker").filter(|m| !m.is_empty()).cloned();
    let (page, next) = cp.list_functions_page(&by, marker, max).await?;
    if !all_versions {
        let items = page.iter().map(|f| model::configuration(&cp, f));
        return Ok(page_response("Functions", items, next));
    }
    // Every version of each function on the page, `$LATEST` first. A page holds whole
    // functions, so the marker stays a function name.
    let mut items = Vec::new();
    for f in &page {
        let (versions, _) = cp
            .list_versions_page(&by, f.name.as_str(), None, usize::MAX)
            .await?;
        items.extend(versions.iter().map(|v| model::configuration(&cp, v)));
    }
    Ok(page_response("Functions", items.into_iter(), next))
}

pub(super) async fn update_code(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    LambdaJson(req): LambdaJson<model::UpdateCodeIn>,
) -> LambdaResult<Response> {
    req.refuse_unhonoured()?;
    only_x86_64(req.architectures.as_deref())?;
    let zip = zip_required(req.zip_file, req.s3_bucket, req.image_uri)?;
    let expect = expect(&cp, &by, &t, req.revision_id.as_deref(), None).await?;
    let f = cp
        .deploy_code(&by, &t.name, zip, None, expect)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    let f = published_or_latest(&cp, &by, f, req.publish, &t.arn).await?;
    Ok(config_json(&cp, &f).into_response())
}

pub(super) async fn update_configuration(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    LambdaJson(req): LambdaJson<model::UpdateConfigurationIn>,
) -> LambdaResult<Response> {
    req.unhonoured.check()?;
    let _ = req.role;
    let update = FunctionChanges {
        runtime: req.runtime,
        handler: req.handler,
        memory_mb: req.memory_size,
        timeout_s: req.timeout,
        environment: req.environment.map(|e| e.variables),
        description: req.description,
        network: None,
        ephemeral_storage_mb: req.ephemeral_storage.map(|e| e.size),
        layers: req.layers,
        snap_start: req.snap_start.map(model::SnapStartIn::apply_on),
    };
    let expect = expect(&cp, &by, &t, req.revision_id.as_deref(), None).await?;
    let f = cp
        .update_function(&by, &t.name, update, expect)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(config_json(&cp, &f).into_response())
}

pub(super) async fn delete(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    let latest_named =
        params.get("Qualifier").map(String::as_str) == Some("$LATEST") || raw.ends_with(":$LATEST");
    match &t.qualifier {
        None if latest_named => cp.delete_version(&by, &t.name, "$LATEST").await,
        None => cp.delete_function(&by, &t.name).await,
        Some(q) => cp.delete_version(&by, &t.name, q).await,
    }
    .map_err(|e| LambdaError::about(e, &t.qualified_arn()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
