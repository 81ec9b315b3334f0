//! Function lifecycle operations: Create/Get/List/Update/Delete, concurrency, account
//! settings.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use skyscale_core::{CoreError, Expect, Principal};
use skyscale_types::api::{CreateFunction, FunctionInfo, UpdateFunction};

use super::error::LambdaError;
use super::model::{self, Concurrency, Target};
use super::{parse_json, LambdaResult};
use crate::AppState;

/// Real ListFunctions returns at most 50 functions per page, whatever MaxItems says.
pub(super) const MAX_PAGE: usize = 50;

pub(super) type Params = Query<HashMap<String, String>>;

/// Resolves the `{name}` path segment (already URL-decoded) and the `Qualifier` query.
pub(super) fn target(cp: &AppState, raw: &str, params: &Params) -> LambdaResult<Target> {
    model::parse_target(
        cp.settings(),
        raw,
        params.get("Qualifier").map(String::as_str),
    )
    .ok_or_else(|| {
        LambdaError::invalid(format!(
            "invalid function name {raw:?}: expected a name, name:qualifier or a function ARN"
        ))
    })
}

/// The target of an operation on the function itself (not on a version or alias).
fn unqualified(cp: &AppState, raw: &str, params: &Params) -> LambdaResult<Target> {
    let t = target(cp, raw, params)?;
    match &t.qualifier {
        None => Ok(t),
        Some(q) => Err(LambdaError::invalid(format!(
            "this operation does not take a qualifier ({q:?}): name the function itself"
        ))),
    }
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
    let arn = model::function_arn(cp.settings(), &req.function_name);
    let f = cp
        .create_function_tagged(
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
                // Lambda functions outside a VPC reach the internet; Skyscale's do not unless
                // given network explicitly (through /v1 or the CLI).
                network: None,
                ephemeral_storage_mb: req.ephemeral_storage.map(|e| e.size),
            },
            req.tags.unwrap_or_default(),
        )
        .await
        .map_err(|e| LambdaError::about(e, &arn))?;
    let f = published_or_latest(&cp, &by, f, req.publish, &arn).await?;
    Ok((StatusCode::CREATED, config_json(&cp, &f)).into_response())
}

pub(super) async fn get_function(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
    headers: axum::http::HeaderMap,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    let about = |e| LambdaError::about(e, &t.qualified_arn());
    let f = cp
        .get_function_version(&by, &t.name, t.qualifier.as_deref())
        .await
        .map_err(about)?;
    let tags = cp.list_tags(&by, &t.name).await.map_err(about)?;
    let mut out = serde_json::json!({
        "Configuration": model::configuration(cp.settings(), &f),
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
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = target(&cp, &raw, &params)?;
    let f = cp
        .get_function_version(&by, &t.name, t.qualifier.as_deref())
        .await
        .map_err(|e| LambdaError::about(e, &t.qualified_arn()))?;
    Ok(config_json(&cp, &f).into_response())
}

/// Parses `MaxItems` (1..=10000), capped at `cap`.
pub(super) fn max_items(params: &Params, cap: usize) -> LambdaResult<usize> {
    match params.get("MaxItems") {
        None => Ok(cap),
        Some(s) => match s.parse::<usize>() {
            Ok(n @ 1..=10_000) => Ok(n.min(cap)),
            _ => Err(LambdaError::invalid(format!(
                "invalid MaxItems {s:?}: must be between 1 and 10000"
            ))),
        },
    }
}

pub(super) async fn publish_version(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
    body: Bytes,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    let about = |e| LambdaError::about(e, &t.arn);
    let req: model::PublishVersionIn = if body.iter().all(u8::is_ascii_whitespace) {
        model::PublishVersionIn::default()
    } else {
        parse_json(&body)?
    };
    if req.publish_to.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(LambdaError::invalid(
            "PublishTo is not supported by Skyscale: there are no capacity providers",
        ));
    }
    let expect = expect(
        &cp,
        &by,
        &t,
        req.revision_id.as_deref(),
        req.code_sha256.as_deref(),
    )
    .await?;
    let (v, _) = cp
        .publish_version_expecting(&by, &t.name, req.description, expect)
        .await
        .map_err(about)?;
    Ok((StatusCode::CREATED, config_json(&cp, &v)).into_response())
}

/// The precondition a request's `RevisionId` (and PublishVersion's `CodeSha256`) sets: the
/// values are compared with the function now, and the revision they name is then held by
/// the core in the same transaction as the change, so a change in between is refused too.
pub(super) async fn expect(
    cp: &AppState,
    by: &Principal,
    t: &Target,
    revision_id: Option<&str>,
    code_sha256: Option<&str>,
) -> LambdaResult<Expect> {
    if revision_id.is_none() && code_sha256.is_none() {
        return Ok(Expect::default());
    }
    let latest = cp
        .get_function(by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    let sha = model::code_sha256_b64(latest.code_sha256.as_deref());
    if let Some(c) = code_sha256.filter(|c| *c != sha) {
        return Err(CoreError::PreconditionFailed(format!(
            "CodeSha256 {c:?} does not match the function's current code ({sha})"
        ))
        .into());
    }
    if revision_id.is_some_and(|r| r != model::revision_id(&latest)) {
        return Err(CoreError::PreconditionFailed(
            "the RevisionId provided does not match the latest RevisionId for the \
             function; call GetFunction to get the latest RevisionId"
                .into(),
        )
        .into());
    }
    Ok(Expect {
        revision: Some(latest.revision),
    })
}

/// A function's configuration as the answer, or, with `publish`, the version published from
/// exactly that revision (Lambda's `Publish` on create and code updates).
async fn published_or_latest(
    cp: &AppState,
    by: &Principal,
    f: FunctionInfo,
    publish: bool,
    arn: &str,
) -> LambdaResult<FunctionInfo> {
    if !publish {
        return Ok(f);
    }
    let expect = Expect {
        revision: Some(f.revision),
    };
    let (v, _) = cp
        .publish_version_expecting(by, &f.name, None, expect)
        .await
        .map_err(|e| LambdaError::about(e, arn))?;
    Ok(v)
}

pub(super) async fn list_versions(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    let max = max_items(&params, MAX_PAGE)?;
    let marker = params.get("Marker").filter(|m| !m.is_empty());
    let (page, next) = cp
        .list_versions_page(&by, &t.name, marker.map(String::as_str), max)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    let items = page.iter().map(|f| model::configuration(cp.settings(), f));
    Ok(page_response("Versions", items, next))
}

pub(super) async fn create_alias(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
    body: Bytes,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    let req: model::CreateAliasIn = parse_json(&body)?;
    let weights = req.routing_config.map(|r| r.weights()).unwrap_or_default();
    let a = cp
        .create_alias(
            &by,
            &t.name,
            &req.name,
            &req.function_version,
            req.description,
            &weights,
        )
        .await
        .map_err(|e| LambdaError::about(e, &format!("{}:{}", t.arn, req.name)))?;
    Ok((
        StatusCode::CREATED,
        Json(model::alias_configuration(cp.settings(), &a)),
    )
        .into_response())
}

pub(super) async fn get_alias(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path((raw, alias)): Path<(String, String)>,
    params: Params,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    let a = cp
        .get_alias(&by, &t.name, &alias)
        .await
        .map_err(|e| LambdaError::about(e, &format!("{}:{alias}", t.arn)))?;
    Ok(Json(model::alias_configuration(cp.settings(), &a)).into_response())
}

pub(super) async fn list_aliases(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    let max = max_items(&params, MAX_PAGE)?;
    let marker = params.get("Marker").filter(|m| !m.is_empty());
    let version = params.get("FunctionVersion").filter(|v| !v.is_empty());
    let (page, next) = cp
        .list_aliases_page(
            &by,
            &t.name,
            version.map(String::as_str),
            marker.map(String::as_str),
            max,
        )
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    let items = page
        .iter()
        .map(|a| model::alias_configuration(cp.settings(), a));
    Ok(page_response("Aliases", items, next))
}

pub(super) async fn update_alias(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path((raw, alias)): Path<(String, String)>,
    params: Params,
    body: Bytes,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    let arn = format!("{}:{alias}", t.arn);
    let about = |e| LambdaError::about(e, &arn);
    let req: model::UpdateAliasIn = if body.iter().all(u8::is_ascii_whitespace) {
        model::UpdateAliasIn::default()
    } else {
        parse_json(&body)?
    };
    if let Some(rev) = &req.revision_id {
        let current = cp.get_alias(&by, &t.name, &alias).await.map_err(about)?;
        if *rev != model::alias_revision_id(&current) {
            return Err(CoreError::PreconditionFailed(
                "the RevisionId provided does not match the latest RevisionId for the alias; \
                 call GetAlias to get the latest RevisionId"
                    .into(),
            )
            .into());
        }
    }
    let weights = req.routing_config.map(|r| r.weights());
    let a = cp
        .update_alias(
            &by,
            &t.name,
            &alias,
            req.function_version.as_deref(),
            req.description,
            weights.as_deref(),
        )
        .await
        .map_err(about)?;
    Ok(Json(model::alias_configuration(cp.settings(), &a)).into_response())
}

pub(super) async fn delete_alias(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path((raw, alias)): Path<(String, String)>,
    params: Params,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    cp.delete_alias(&by, &t.name, &alias)
        .await
        .map_err(|e| LambdaError::about(e, &format!("{}:{alias}", t.arn)))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The function a tagging call names: an unqualified function ARN.
fn tag_target(cp: &AppState, resource: &str) -> LambdaResult<Target> {
    match model::parse_target(cp.settings(), resource, None) {
        Some(t) if t.qualifier.is_none() && resource.starts_with("arn:") => Ok(t),
        _ => Err(LambdaError::invalid(format!(
            "invalid resource {resource:?}: expected an unqualified function ARN"
        ))),
    }
}

pub(super) async fn list_tags(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(resource): Path<String>,
) -> LambdaResult<Response> {
    let t = tag_target(&cp, &resource)?;
    let tags = cp
        .list_tags(&by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(Json(serde_json::json!({ "Tags": tags })).into_response())
}

pub(super) async fn tag_resource(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(resource): Path<String>,
    body: Bytes,
) -> LambdaResult<Response> {
    let t = tag_target(&cp, &resource)?;
    let req: model::TagsIn = parse_json(&body)?;
    cp.tag_function(&by, &t.name, req.tags)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn untag_resource(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(resource): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> LambdaResult<Response> {
    let t = tag_target(&cp, &resource)?;
    // `tagKeys` repeats, which a map extractor would collapse.
    let keys: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v)
        .collect();
    cp.untag_function(&by, &t.name, keys)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
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
        let items = page.iter().map(|f| model::configuration(cp.settings(), f));
        return Ok(page_response("Functions", items, next));
    }
    // Every version of each function on the page, `$LATEST` first. A page holds whole
    // functions, so the marker stays a function name.
    let mut items = Vec::new();
    for f in &page {
        let (versions, _) = cp
            .list_versions_page(&by, f.name.as_str(), None, usize::MAX)
            .await?;
        items.extend(
            versions
                .iter()
                .map(|v| model::configuration(cp.settings(), v)),
        );
    }
    Ok(page_response("Functions", items.into_iter(), next))
}

pub(super) async fn update_code(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
    body: Bytes,
) -> LambdaResult<Response> {
    use base64::Engine;
    let t = unqualified(&cp, &raw, &params)?;
    let req: model::UpdateCodeIn = parse_json(&body)?;
    req.refuse_unhonoured()?;
    only_x86_64(req.architectures.as_deref())?;
    let b64 = zip_required(req.zip_file, req.s3_bucket, req.image_uri)?;
    let zip = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| LambdaError::invalid(format!("ZipFile is not valid base64: {e}")))?;
    let expect = expect(&cp, &by, &t, req.revision_id.as_deref(), None).await?;
    let f = cp
        .deploy_code_expecting(&by, &t.name, zip, expect)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    let f = published_or_latest(&cp, &by, f, req.publish, &t.arn).await?;
    Ok(config_json(&cp, &f).into_response())
}

pub(super) async fn update_configuration(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    params: Params,
    body: Bytes,
) -> LambdaResult<Response> {
    let t = unqualified(&cp, &raw, &params)?;
    let req: model::UpdateConfigurationIn = parse_json(&body)?;
    req.unhonoured.check()?;
    let _ = req.role;
    let update = UpdateFunction {
        runtime: req.runtime,
        handler: req.handler,
        memory_mb: req.memory_size,
        timeout_s: req.timeout,
        environment: req.environment.map(|e| e.variables),
        description: req.description,
        network: None,
        ephemeral_storage_mb: req.ephemeral_storage.map(|e| e.size),
    };
    let expect = expect(&cp, &by, &t, req.revision_id.as_deref(), None).await?;
    let f = cp
        .update_function_expecting(&by, &t.name, update, expect)
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

pub(super) async fn account(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
) -> LambdaResult<Response> {
    let a = cp.account_settings(&by).await?;
    Ok(Json(model::account_settings(&a)).into_response())
}

/// A page of a List* operation: `{"<key>": [...], "NextMarker": ...}` (no marker on the
/// last page, which ends the client's paginator).
pub(super) fn page_response<T: serde::Serialize>(
    key: &str,
    items: impl Iterator<Item = T>,
    next: Option<String>,
) -> Response {
    let items: Vec<T> = items.collect();
    let mut out = serde_json::json!({ key: items });
    if let Some(next) = next {
        out["NextMarker"] = next.into();
    }
    Json(out).into_response()
}

/// `{"ReservedConcurrentExecutions": N}`, the field omitted when there is no reservation.
fn concurrency_response(f: &skyscale_types::api::FunctionInfo) -> Response {
    Json(Concurrency {
        reserved_concurrent_executions: f.reserved_concurrency,
    })
    .into_response()
}
