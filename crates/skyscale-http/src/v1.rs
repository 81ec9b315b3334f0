//! The native `/v1` API used by the `skyscale` CLI.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use skyscale_core::{CoreError, InvokeOptions, Principal, MAX_SYNC_PAYLOAD};
use skyscale_types::api::{
    AliasInfo, AliasList, AliasRouting, CreateAlias, CreateFunction, CreateFunctionUrl,
    FunctionList, FunctionUrlInfo, FunctionUrlList, Health, PublishVersion, PutConcurrency,
    RuntimeEntry, RuntimeList, UpdateAlias, UpdateFunction, UpdateFunctionUrl, VersionList,
    COLD_START_HEADER, DURATION_HEADER, EXECUTED_VERSION_HEADER, FUNCTION_ERROR_HEADER,
    INIT_DURATION_HEADER, LOG_RESULT_HEADER, LOG_TYPE_HEADER, REQUEST_ID_HEADER,
};

use crate::body::{self, BodyLimits, Sender};
use crate::{ApiError, AppState};

type ApiResult<T> = Result<T, ApiError>;

/// JSON requests (a create may carry a base64 zip) are at most this large.
const MAX_JSON_BODY: usize = 70 * 1024 * 1024;
/// Every other JSON request (configuration, aliases, URL settings, keys) is small: far less
/// than this, which leaves room for the checks of each field to say which one is too big.
const MAX_SMALL_BODY: usize = 2 * 1024 * 1024;

const CREATE_FUNCTION: &str = "/v1/functions";
const DEPLOY: &str = "/v1/functions/{name}/code";
const INVOKE: &str = "/v1/functions/{name}/invoke";
/// `/v1` lists are not paged: the core's pages are read this many at a time until the end.
const LIST_PAGE: usize = 1000;

pub(crate) fn routes(cp: AppState) -> Router<AppState> {
    let authed = Router::new()
        .route(CREATE_FUNCTION, post(create).get(list))
        .route(
            "/v1/functions/{name}",
            get(get_one).patch(update).delete(delete),
        )
        .route(DEPLOY, put(deploy))
        .route(
            "/v1/functions/{name}/concurrency",
            put(put_concurrency).delete(delete_concurrency),
        )
        .route(INVOKE, post(invoke))
        .route(
            "/v1/functions/{name}/versions",
            post(publish_version).get(list_versions),
        )
        .route(
            "/v1/functions/{name}/aliases",
            post(create_alias).get(list_aliases),
        )
        .route(
            "/v1/functions/{name}/aliases/{alias}",
            get(get_alias).patch(update_alias).delete(delete_alias),
        )
        .route(
            "/v1/functions/{name}/url",
            post(create_url)
                .get(get_url)
                .patch(update_url)
                .delete(delete_url),
        )
        .route("/v1/functions/{name}/urls", get(list_urls))
        .route("/v1/runtimes", get(runtimes))
        .route_layer(middleware::from_fn_with_state(cp, require_key));
    Router::new()
        .route("/v1/health", get(health))
        .merge(authed)
        // Each handler reads its body with its own limit (see `read_body`).
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// When the request arrived and how long authentication took (for `server-timing`).
#[derive(Clone, Copy)]
struct AuthTiming {
    received: Instant,
    auth: Duration,
}

/// The largest body a `/v1` operation can legitimately carry, by its route, and what the
/// body is called in an error.
fn body_limit(cp: &AppState, method: &Method, route: Option<&str>) -> (usize, &'static str) {
    match (method, route) {
        (&Method::POST, Some(CREATE_FUNCTION)) => (MAX_JSON_BODY, "request body"),
        (&Method::PUT, Some(DEPLOY)) => (
            usize::try_from(cp.max_code_bytes()).unwrap_or(usize::MAX),
            "code package",
        ),
        (&Method::POST, Some(INVOKE)) => (MAX_SYNC_PAYLOAD, "invoke payload"),
        _ => (MAX_SMALL_BODY, "request body"),
    }
}

/// Every `/v1` route but health needs `Authorization: Bearer <id>.<secret>`. The key is
/// checked from the headers alone; then the body is read here, once, within the route's size
/// limit and the body timeout, so no handler can forget either.
pub(crate) async fn require_key(State(cp): State<AppState>, req: Request, next: Next) -> Response {
    let received = Instant::now();
    let Some(authorization) = req.headers().get(header::AUTHORIZATION) else {
        return ApiError(CoreError::Unauthorized(
            "missing api key: send 'Authorization: Bearer <key-id>.<secret>'".into(),
        ))
        .into_response();
    };
    let token = authorization
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return malformed_authorization().into_response();
    };
    match cp
        .authenticate(token, crate::source_ip(req.extensions()))
        .await
    {
        Ok(principal) => {
            let auth = received.elapsed();
            let (mut parts, body) = req.into_parts();
            let Some(limits) = parts.extensions.get::<BodyLimits>().cloned() else {
                return ApiError(CoreError::Internal("body limits not configured".into()))
                    .into_response();
            };
            let route = parts
                .extensions
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            let (limit, what) = body_limit(&cp, &parts.method, route);
            let declared = body::declared_length(&parts.headers);
            let bytes = match body::read(&limits, body, declared, limit, Sender::Known, what).await
            {
                Ok(b) => b.release(),
                Err(e) => return ApiError(CoreError::from(e)).into_response(),
            };
            parts.extensions.insert(principal);
            parts.extensions.insert(AuthTiming { received, auth });
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// Reads a request body, refusing more than `limit` bytes with a 413.
async fn read_body(body: Body, limit: usize, what: &str) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError(CoreError::PayloadTooLarge(format!(
            "{what} is larger than the {limit}-byte limit"
        )))
    })
}

async fn read_json<T: DeserializeOwned>(body: Body) -> ApiResult<T> {
    parse_json(&read_body(body, MAX_JSON_BODY, "request body").await?)
}

/// Like [`read_json`], but an empty body is the type's default.
async fn read_optional_json<T: DeserializeOwned + Default>(body: Body) -> ApiResult<T> {
    let bytes = read_body(body, MAX_JSON_BODY, "request body").await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&bytes)
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(CoreError::InvalidRequest(format!(
            "request body is not valid JSON for this operation: {e}"
        )))
    })
}

/// Liveness for anyone; the host's driver, version and sandbox counts only for a valid key
/// (they tell an outsider how busy the host is).
async fn health(State(cp): State<AppState>, req: Request) -> ApiResult<Json<Health>> {
    let alive = Health {
        status: "ok".into(),
        version: None,
        driver: None,
        warm_pool_idle: None,
        sandboxes: None,
        busy: None,
    };
    let Some(authorization) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(Json(alive));
    };
    let token = authorization
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(malformed_authorization)?;
    cp.authenticate(token, crate::source_ip(req.extensions()))
        .await?;
    let counts = cp.sandbox_counts();
    Ok(Json(Health {
        version: Some(env!("CARGO_PKG_VERSION").into()),
        driver: Some(cp.driver_name().into()),
        warm_pool_idle: Some(counts.generic),
        sandboxes: Some(counts.live),
        busy: Some(counts.busy),
        ..alive
    }))
}

fn malformed_authorization() -> ApiError {
    ApiError(CoreError::Unauthorized(
        "malformed Authorization header: expected 'Bearer <key-id>.<secret>'".into(),
    ))
}

async fn runtimes(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
) -> Json<RuntimeList> {
    let runtimes = cp
        .list_runtimes(&by)
        .into_iter()
        .map(|r| RuntimeEntry {
            name: r.name,
            packages: r.packages,
        })
        .collect();
    Json(RuntimeList { runtimes })
}

async fn create(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    body: Body,
) -> ApiResult<Response> {
    let req: CreateFunction = read_json(body).await?;
    let f = cp.create_function(&by, req).await?;
    Ok((StatusCode::CREATED, Json(f)).into_response())
}

async fn list(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
) -> ApiResult<Response> {
    let functions = cp.list_functions(&by).await?;
    Ok(Json(FunctionList { functions }).into_response())
}

async fn get_one(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(cp.get_function(&by, &name).await?).into_response())
}

async fn update(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let req: UpdateFunction = read_json(body).await?;
    Ok(Json(cp.update_function(&by, &name, req).await?).into_response())
}

async fn delete(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    cp.delete_function(&by, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deploy(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let limit = usize::try_from(cp.max_code_bytes()).unwrap_or(usize::MAX);
    let zip = read_body(body, limit, "code package").await?;
    Ok(Json(cp.deploy_code(&by, &name, zip.to_vec()).await?).into_response())
}

async fn put_concurrency(
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

async fn delete_concurrency(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(cp.set_reserved_concurrency(&by, &name, None).await?).into_response())
}

async fn publish_version(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let req: PublishVersion = read_optional_json(body).await?;
    // Publishing unchanged code returns the newest version, as in Lambda: 201 either way.
    let (v, _new) = cp.publish_version(&by, &name, req.description).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn list_versions(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut versions = Vec::new();
    let mut marker = None;
    loop {
        let (page, next) = cp
            .list_versions_page(&by, &name, marker.as_deref(), LIST_PAGE)
            .await?;
        versions.extend(page);
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    Ok(Json(VersionList { versions }).into_response())
}

/// The core's alias as the wire shows it.
fn alias_info(a: &skyscale_core::AliasInfo) -> AliasInfo {
    AliasInfo {
        function: a.function.clone(),
        name: a.name.clone(),
        version: a.version_label(),
        description: a.description.clone(),
        routing: a.routing.map(|(version, weight)| AliasRouting {
            version: version.to_string(),
            weight,
        }),
        revision: a.revision,
        created_at: a.created_at.clone(),
    }
}

/// The core's routing weights: none, or the one additional version.
fn weights(routing: Option<AliasRouting>) -> Vec<(String, f64)> {
    routing.map(|r| (r.version, r.weight)).into_iter().collect()
}

async fn create_alias(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(function): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let req: CreateAlias = read_json(body).await?;
    let a = cp
        .create_alias(
            &by,
            &function,
            &req.name,
            &req.version,
            req.description,
            &weights(req.routing),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(alias_info(&a))).into_response())
}

async fn list_aliases(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(function): Path<String>,
) -> ApiResult<Response> {
    let mut aliases = Vec::new();
    let mut marker = None;
    loop {
        let (page, next) = cp
            .list_aliases_page(&by, &function, None, marker.as_deref(), LIST_PAGE)
            .await?;
        aliases.extend(page.iter().map(alias_info));
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    Ok(Json(AliasList { aliases }).into_response())
}

async fn get_alias(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult<Response> {
    let a = cp.get_alias(&by, &function, &alias).await?;
    Ok(Json(alias_info(&a)).into_response())
}

async fn update_alias(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path((function, alias)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let req: UpdateAlias = read_json(body).await?;
    let weights = req.routing.map(weights);
    let a = cp
        .update_alias(
            &by,
            &function,
            &alias,
            req.version.as_deref(),
            req.description,
            weights.as_deref(),
        )
        .await?;
    Ok(Json(alias_info(&a)).into_response())
}

async fn delete_alias(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult<Response> {
    cp.delete_alias(&by, &function, &alias).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The query of `POST /v1/functions/{name}/invoke` and of `.../url`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QualifierQuery {
    /// `$LATEST` (the default), a published version's number (invoke only) or an alias.
    qualifier: Option<String>,
}

/// The `?qualifier=` of a request to `what`; any other query parameter is refused.
fn qualifier(
    query: Result<Query<QualifierQuery>, QueryRejection>,
    what: &str,
) -> ApiResult<Option<String>> {
    match query {
        Ok(Query(q)) => Ok(q.qualifier),
        Err(e) => Err(ApiError(CoreError::InvalidRequest(format!(
            "invalid {what} query (only 'qualifier' is accepted): {}",
            e.body_text()
        )))),
    }
}

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

async fn create_url(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(function): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let qualifier = qualifier(query, "function URL")?;
    let req: CreateFunctionUrl = read_json(body).await?;
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

async fn get_url(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
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

async fn update_url(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(function): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let qualifier = qualifier(query, "function URL")?;
    let req: UpdateFunctionUrl = read_json(body).await?;
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

async fn delete_url(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(function): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let qualifier = qualifier(query, "function URL")?;
    cp.delete_url_config(&by, &function, qualifier.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_urls(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
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

/// `server-timing` for an invocation, in milliseconds with microsecond precision:
/// `auth`, `lookup`, `acquire` (cold start included), `channel` (control plane ⇄ agent, minus
/// the runtime's share), `runtime` (agent ⇄ runtime, handler included) and `total`.
fn server_timing(t: &skyscale_core::InvokeTiming, auth: Duration, total: Duration) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "auth;dur={:.3}, lookup;dur={:.3}, acquire;dur={:.3}, channel;dur={:.3}, runtime;dur={:.3}, total;dur={:.3}",
        ms(auth),
        ms(t.lookup),
        ms(t.acquire),
        ms(t.agent.saturating_sub(t.runtime)),
        ms(t.runtime),
        ms(total),
    )
}

async fn invoke(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Extension(AuthTiming { received, auth }): Extension<AuthTiming>,
    Path(name): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    request_headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let qualifier = qualifier(query, "invoke")?;
    let tail = request_headers
        .get(LOG_TYPE_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"Tail"));
    let payload = read_body(body, MAX_SYNC_PAYLOAD, "invoke payload").await?;
    let opts = InvokeOptions {
        qualifier,
        ..InvokeOptions::default()
    };
    let out = cp.invoke_with(&by, &name, opts, payload.to_vec()).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&out.request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&out.executed_version) {
        headers.insert(EXECUTED_VERSION_HEADER, v);
    }
    headers.insert(
        COLD_START_HEADER,
        HeaderValue::from_static(if out.cold_start { "true" } else { "false" }),
    );
    headers.insert(
        DURATION_HEADER,
        HeaderValue::from(out.duration.as_millis() as u64),
    );
    if let Some(init) = out.init_duration {
        headers.insert(
            INIT_DURATION_HEADER,
            HeaderValue::from(init.as_millis() as u64),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&server_timing(&out.timing, auth, received.elapsed())) {
        headers.insert("server-timing", v);
    }
    if let Some(kind) = out.function_error() {
        headers.insert(FUNCTION_ERROR_HEADER, HeaderValue::from_static(kind));
    }
    if tail {
        if let Ok(v) = HeaderValue::from_str(&skyscale_core::logs::tail_base64(&out.logs)) {
            headers.insert(LOG_RESULT_HEADER, v);
        }
    }
    Ok((StatusCode::OK, headers, out.body).into_response())
}
