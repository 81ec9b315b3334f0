//! Function lifecycle operations: Create/Get/List/Update/Delete, concurrency, account
//! settings.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use skyscale_core::{CoreError, Principal};
use skyscale_types::api::{CreateFunction, FunctionInfo, UpdateFunction};

use super::error::LambdaError;
use super::model::{self, Concurrency, Target};
use super::{parse_json, LambdaResult};
use crate::AppState;

/// Real ListFunctions returns at most 50 functions per page, whatever MaxItems says.
const MAX_PAGE: usize = 50;

type Params = Query<HashMap<String, String>>;

/// Resolves the `{name}` path segment (already URL-decoded) and the `Qualifier` query.
pub(super) fn target(cp: &AppState, raw: &str, params: &Params) -> LambdaResult<Target> {
    model::parse_target(
        cp.settings(),
        raw,
        params.get("Qualifier").map(String::as_str),
    )
    .map_err(|arn| match arn {
        Some(arn) => LambdaError::about(CoreError::NotFound(String::new()), &arn),
        None => LambdaError::invalid(format!(
            "invalid function name {raw:?}: expected a name, name:qualifier or a function ARN"
        )),
    })
}

fn only_x86_64(architectures: Option<&[String]>) -> LambdaResult<()> {
    match architectures {
        Some(a) if a.iter().any(|a| a != "x86_64") => Err(LambdaError::invalid(
            "only the x86_64 architecture is supported",
        )),
        _ => Ok(()),
    }
}

fn zip_required(
    zip: Option<String>,
    s3: Option<String>,
    image: Option<String>,
) -> LambdaResult<String> {
    match (zip, s3, image) {
        (Some(z), _, _) => Ok(z),
        (None, Some(_), _) => Err(LambdaError::invalid(
            "code from S3 is not supported: send the zip in ZipFile",
        )),
        (None, None, Some(_)) => Err(LambdaError::invalid(
            "container images are not supported: send a zip in ZipFile",
        )),
        (None, None, None) => Err(LambdaError::invalid("ZipFile is required")),
    }
}

fn config_json(cp: &AppState, f: &FunctionInfo) -> Json<model::FunctionConfiguration> {
    Json(model::configuration(cp.settings(), f))
}

pub(super) async fn create(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    body: Bytes,
) -> LambdaResult<Response> {
    let req: model::CreateFunctionIn = parse_json(&body)?;
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
    let arn = model::function_arn(cp.settings(), &req.function_name);
    let f = cp
        .create_function(
            &by,
            CreateFunction {
                name: req.function_name,
                runtime,
                handler: req.handler,
                memory_mb: req.memory_size,
                timeout_s: req.timeout,
                environment: req.environment.unwrap_or_default().variables,
                description: req.description,
                code_zip_base64: Some(zip),
            },
        )
        .await
        .map_err(|e| LambdaError::about(e, &arn))?;
    Ok((StatusCode::CREATED, config_json(&cp, &f)).into_response())
}

pub(super) async fn get_function(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    let f = cp
        .get_function(&by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    let mut out = serde_json::json!({
        "Configuration": model::configuration(cp.settings(), &f),
        "Code": { "RepositoryType": "S3" },
        "Tags": {},
    });
    if let Some(n) = f.reserved_concurrency {
        out["Concurrency"] = serde_json::json!({ "ReservedConcurrentExecutions": n });
    }
    Ok(Json(out).into_response())
}

pub(super) async fn get_configuration(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    let f = cp
        .get_function(&by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(config_json(&cp, &f).into_response())
}

pub(super) async fn list(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    params: Params,
) -> LambdaResult<Response> {
    let max = match params.get("MaxItems") {
        None => MAX_PAGE,
        Some(s) => match s.parse::<usize>() {
            Ok(n @ 1..=10_000) => n.min(MAX_PAGE),
            _ => {
                return Err(LambdaError::invalid(format!(
                    "invalid MaxItems {s:?}: must be between 1 and 10000"
                )))
            }
        },
    };
    let marker = params.get("Marker").filter(|m| !m.is_empty()).cloned();
    let (page, next) = cp.list_functions_page(&by, marker, max).await?;
    let functions: Vec<_> = page
        .iter()
        .map(|f| model::configuration(cp.settings(), f))
        .collect();
    let mut out = serde_json::json!({ "Functions": functions });
    if let Some(next) = next {
        out["NextMarker"] = next.into();
    }
    Ok(Json(out).into_response())
}

pub(super) async fn update_code(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
    body: Bytes,
) -> LambdaResult<Response> {
    use base64::Engine;
    let t = target(&cp, &raw, &params)?;
    let req: model::UpdateCodeIn = parse_json(&body)?;
    only_x86_64(req.architectures.as_deref())?;
    let b64 = zip_required(req.zip_file, req.s3_bucket, req.image_uri)?;
    let zip = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| LambdaError::invalid(format!("ZipFile is not valid base64: {e}")))?;
    let f = cp
        .deploy_code(&by, &t.name, zip)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(config_json(&cp, &f).into_response())
}

pub(super) async fn update_configuration(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
    body: Bytes,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    let req: model::UpdateConfigurationIn = parse_json(&body)?;
    let update = UpdateFunction {
        runtime: req.runtime,
        handler: req.handler,
        memory_mb: req.memory_size,
        timeout_s: req.timeout,
        environment: req.environment.map(|e| e.variables),
        description: req.description,
    };
    let f = cp
        .update_function(&by, &t.name, update)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(config_json(&cp, &f).into_response())
}

pub(super) async fn delete(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    cp.delete_function(&by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn put_concurrency(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
    body: Bytes,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    let req: model::ConcurrencyIn = parse_json(&body)?;
    let f = cp
        .set_reserved_concurrency(&by, &t.name, Some(req.reserved_concurrent_executions))
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(Json(Concurrency {
        reserved_concurrent_executions: f.reserved_concurrency,
    })
    .into_response())
}

pub(super) async fn get_concurrency(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    let f = cp
        .get_function(&by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(Json(Concurrency {
        reserved_concurrent_executions: f.reserved_concurrency,
    })
    .into_response())
}

pub(super) async fn delete_concurrency(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    cp.set_reserved_concurrency(&by, &t.name, None)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn account(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
) -> LambdaResult<Response> {
    let a = cp.account_settings(&by).await?;
    Ok(Json(model::account_settings(&a)).into_response())
}
