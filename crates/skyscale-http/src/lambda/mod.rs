//! The AWS Lambda-compatible API (rest-json, lambda-compatibility.md §1–§5), so boto3 and the AWS CLI
//! work against Skyscale with `endpoint_url`. Every route is SigV4-authenticated (§12)
//! with an API key's id as the access key id and its secret as the secret access key, and
//! calls the same `ControlPlane` methods as `/v1`.

mod aliases;
mod concurrency;
mod error;
mod event_invoke_config;
mod extract;
mod functions;
mod invoke;
mod layers;
mod model;
mod policies;
mod provisioned;
mod tags;
mod unhonoured;
mod unsupported;
mod urls;
mod versions;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::collections::HashMap;

use axum::extract::Query;
use skyscale_core::FunctionRecord;
use skyscale_core::{CoreError, Expect, Principal, MAX_SYNC_PAYLOAD};

use model::Target;

use crate::auth;
use crate::body::{self, BodyLimits, Sender};
use crate::AppState;
use error::LambdaError;

type LambdaResult<T> = Result<T, LambdaError>;

/// CreateFunction and UpdateFunctionCode carry a base64 zip: Lambda's 50 MB direct upload
/// limit, encoded, with room for the rest of the JSON.
const MAX_CODE_REQUEST: usize = 70 * 1024 * 1024;
/// Every other operation's JSON (configuration with its environment, aliases, tags, URL
/// settings) is small: far less than this, which leaves room for the checks of each field
/// to say which one is too big.
const MAX_SMALL_REQUEST: usize = 2 * 1024 * 1024;

const CREATE_FUNCTION: &str = "/2015-03-31/functions";
const CREATE_FUNCTION_SLASH: &str = "/2015-03-31/functions/";
const FUNCTION_CODE: &str = "/2015-03-31/functions/{name}/code";
const INVOKE: &str = "/2015-03-31/functions/{name}/invocations";
const LAYER_VERSIONS: &str = "/2018-10-31/layers/{name}/versions";

const REQUEST_ID: &str = "x-amzn-RequestId";

pub(crate) fn routes(cp: AppState) -> Router<AppState> {
    const F: &str = "/2015-03-31/functions";
    let router = Router::new()
        .route(
            CREATE_FUNCTION,
            post(functions::create).get(functions::list),
        )
        .route(
            CREATE_FUNCTION_SLASH,
            post(functions::create).get(functions::list),
        )
        .route(
            &format!("{F}/{{name}}"),
            get(functions::get_function).delete(functions::delete),
        )
        .route(
            &format!("{F}/{{name}}/configuration"),
            get(functions::get_configuration).put(functions::update_configuration),
        )
        .route(FUNCTION_CODE, put(functions::update_code))
        .route(INVOKE, post(invoke::invoke))
        .route(
            &format!("{F}/{{name}}/versions"),
            post(versions::publish_version).get(versions::list_versions),
        )
        .route(
            &format!("{F}/{{name}}/aliases"),
            post(aliases::create_alias).get(aliases::list_aliases),
        )
        .route(
            &format!("{F}/{{name}}/aliases/{{alias}}"),
            get(aliases::get_alias)
                .put(aliases::update_alias)
                .delete(aliases::delete_alias),
        )
        .route(
            "/2017-03-31/tags/{resource}",
            get(tags::list_tags)
                .post(tags::tag_resource)
                .delete(tags::untag_resource),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            put(concurrency::put_concurrency).delete(concurrency::delete_concurrency),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(concurrency::get_concurrency),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            put(provisioned::put)
                .get(provisioned::get_or_list)
                .delete(provisioned::delete),
        )
        .route(
            "/2021-10-31/functions/{name}/url",
            post(urls::create)
                .get(urls::get)
                .put(urls::update)
                .delete(urls::delete),
        )
        .route("/2021-10-31/functions/{name}/urls", get(urls::list))
        .route(
            &format!("{F}/{{name}}/policy"),
            post(policies::add).get(policies::get),
        )
        .route(
            &format!("{F}/{{name}}/policy/{{sid}}"),
            axum::routing::delete(policies::remove),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            put(event_invoke_config::put)
                .post(event_invoke_config::update)
                .get(event_invoke_config::get)
                .delete(event_invoke_config::delete),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(event_invoke_config::list),
        )
        .route("/2018-10-31/layers", get(layers::list_or_find))
        .route(
            LAYER_VERSIONS,
            post(layers::publish).get(layers::list_versions),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{version}",
            get(layers::get).delete(layers::delete),
        )
        .route("/2016-08-19/account-settings", get(concurrency::account))
        .route("/2016-08-19/account-settings/", get(concurrency::account));
    let router = unsupported::PREFIXES.iter().fold(router, |r, prefix| {
        r.route(
            &format!("{prefix}/{{*rest}}"),
            any(unsupported::unsupported),
        )
    });
    router
        .route_layer(middleware::from_fn_with_state(cp, require_sigv4))
        .layer(middleware::map_response(add_request_id))
        // The signature check reads the body itself (see `require_sigv4`).
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// Every response carries `x-amzn-RequestId` (botocore's `ResponseMetadata.RequestId`);
/// Invoke sets the invocation's own.
async fn add_request_id(mut resp: Response) -> Response {
    if !resp.headers().contains_key(REQUEST_ID) {
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
    }
    resp
}

/// The largest body an operation can legitimately carry, by its route.
fn body_limit(method: &Method, route: Option<&str>) -> usize {
    match (method, route) {
        (&Method::POST, Some(CREATE_FUNCTION | CREATE_FUNCTION_SLASH | LAYER_VERSIONS))
        | (&Method::PUT, Some(FUNCTION_CODE)) => MAX_CODE_REQUEST,
        (&Method::POST, Some(INVOKE)) => MAX_SYNC_PAYLOAD,
        _ => MAX_SMALL_REQUEST,
    }
}

/// Checks the request's SigV4 signature. The signature covers the body, so the body is
/// read here and handed on as bytes, but only after what can be checked without it (a
/// well-formed `Authorization`, an address not over its failure limit), within the
/// operation's size limit, and from the budget for unauthenticated bytes (`body.rs`).
async fn require_sigv4(State(cp): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(e) = auth::sigv4_precheck(&cp, &parts) {
        tracing::debug!(error = %e, "sigv4 authentication failed before the body");
        return LambdaError::from(e).into_response();
    }
    let Some(limits) = parts.extensions.get::<BodyLimits>().cloned() else {
        return LambdaError::from(CoreError::internal("body limits not configured"))
            .into_response();
    };
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let limit = body_limit(&parts.method, route);
    let declared = body::declared_length(&parts.headers);
    let buffered = match body::read(
        &limits,
        body,
        declared,
        limit,
        Sender::Unauthenticated,
        "request body",
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return LambdaError::from(CoreError::from(e)).into_response(),
    };
    match auth::sigv4_principal(&cp, &parts, &buffered.bytes).await {
        Ok(principal) => {
            // Authenticated: the bytes are the caller's now, not the shared budget's.
            let bytes = buffered.release();
            let mut req = Request::from_parts(parts, Body::from(bytes));
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => {
            tracing::debug!(error = %e, "sigv4 authentication failed");
            LambdaError::from(e).into_response()
        }
    }
}

/// The error of an operation on something a function has (a URL configuration, a policy or
/// one of its statements): "Function not found" only when the function (or its alias or
/// version) is missing, else Lambda's "The resource you requested does not exist."
async fn missing_resource(
    cp: &AppState,
    by: &Principal,
    t: &model::Target,
    e: CoreError,
) -> LambdaError {
    if let CoreError::NotFound(_) = e {
        let function_exists = cp
            .get_function_version(by, &t.name, t.qualifier.as_deref())
            .await
            .is_ok();
        if function_exists {
            return CoreError::NotFound("The resource you requested does not exist.".into()).into();
        }
    }
    LambdaError::about(e, &t.qualified_arn())
}

/// Parses a JSON body: malformed JSON is InvalidRequestContent, a body of the wrong shape
/// InvalidParameterValue.
fn parse_json<T: DeserializeOwned>(body: &Bytes) -> LambdaResult<T> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        LambdaError::from(CoreError::InvalidRequest(format!(
            "could not parse request body into json: {e}"
        )))
    })?;
    serde_json::from_value(value)
        .map_err(|e| LambdaError::invalid(format!("invalid request body: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Helpers every resource shares.

/// Real ListFunctions returns at most 50 functions per page, whatever MaxItems says.
const MAX_PAGE: usize = 50;

type Params = Query<HashMap<String, String>>;

/// Resolves the `{name}` path segment (already URL-decoded) and the `Qualifier` query.
fn target(cp: &AppState, raw: &str, params: &Params) -> LambdaResult<Target> {
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

/// Parses `MaxItems` (1..=10000), capped at `cap`.
fn max_items(params: &Params, cap: usize) -> LambdaResult<usize> {
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

/// The precondition a request's `RevisionId` (and PublishVersion's `CodeSha256`) sets: the
/// values are compared with the function now, and the revision they name is then held by
/// the core in the same transaction as the change, so a change in between is refused too.
async fn expect(
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
    let sha = model::code_sha256_b64(latest.code.as_ref().map(|c| c.sha256.as_str()));
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

/// A page of a List* operation: `{"<key>": [...], "NextMarker": ...}` (no marker on the
/// last page, which ends the client's paginator).
fn page_response<T: serde::Serialize>(
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

fn config_json(cp: &AppState, f: &FunctionRecord) -> Json<model::FunctionConfiguration> {
    Json(model::configuration(cp, f))
}
