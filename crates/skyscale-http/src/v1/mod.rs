//! The native `/v1` API used by the `skyscale` CLI: the routes and what every route shares
//! (the key and body middleware, JSON reading, the qualifier query); one file per resource.

mod access;
mod aliases;
mod cluster;
mod error;
mod events;
pub(crate) mod extract;
mod functions;
mod invocations;
mod invoke;
mod layers;
mod provisioned;
mod schedules;
mod urls;
mod versions;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use skyscale_core::{CoreError, MAX_SYNC_PAYLOAD};
use skyscale_types::api::{Health, RuntimeEntry, RuntimeList};

use crate::auth;
use crate::body::{self, BodyLimits, Sender};
use crate::AppState;
pub(crate) use error::status;
pub use error::ApiError;
use extract::Caller;

type ApiResult<T> = Result<T, ApiError>;

/// JSON requests (a create may carry a base64 zip) are at most this large.
const MAX_JSON_BODY: usize = 70 * 1024 * 1024;

/// Every other JSON request (configuration, aliases, URL settings, keys) is small: far less
/// than this, which leaves room for the checks of each field to say which one is too big.
const MAX_SMALL_BODY: usize = 2 * 1024 * 1024;

const CREATE_FUNCTION: &str = "/v1/functions";

const DEPLOY: &str = "/v1/functions/{name}/code";

const INVOKE: &str = "/v1/functions/{name}/invoke";

const KEYS: &str = "/v1/keys";

const LAYER_VERSIONS: &str = "/v1/layers/{name}/versions";
const REQUIREMENTS: &str = "/v1/requirements";

/// Key requests are tiny.
const MAX_KEY_BODY: usize = 64 * 1024;

/// `/v1` lists are not paged: the core's pages are read this many at a time until the end.
const LIST_PAGE: usize = 1000;

pub(crate) fn routes(cp: AppState) -> Router<AppState> {
    let authed = Router::new()
        .route(
            CREATE_FUNCTION,
            post(functions::create).get(functions::list),
        )
        .route(
            "/v1/functions/{name}",
            get(functions::get_one)
                .patch(functions::update)
                .delete(functions::delete),
        )
        .route(DEPLOY, put(functions::deploy))
        .route(
            "/v1/functions/{name}/concurrency",
            put(functions::put_concurrency).delete(functions::delete_concurrency),
        )
        .route(INVOKE, post(invoke::invoke))
        .route(
            "/v1/functions/{name}/versions",
            post(versions::publish_version).get(versions::list_versions),
        )
        .route(
            "/v1/functions/{name}/aliases",
            post(aliases::create_alias).get(aliases::list_aliases),
        )
        .route(
            "/v1/functions/{name}/aliases/{alias}",
            get(aliases::get_alias)
                .patch(aliases::update_alias)
                .delete(aliases::delete_alias),
        )
        .route(
            "/v1/functions/{name}/url",
            post(urls::create_url)
                .get(urls::get_url)
                .patch(urls::update_url)
                .delete(urls::delete_url),
        )
        .route("/v1/functions/{name}/urls", get(urls::list_urls))
        .route("/v1/functions/{name}/provisioned", get(provisioned::list))
        .route(
            "/v1/functions/{name}/provisioned/{qualifier}",
            get(provisioned::get_one)
                .put(provisioned::put)
                .delete(provisioned::delete),
        )
        .route("/v1/functions/{name}/events", get(events::list))
        .route("/v1/functions/{name}/events/redrive", post(events::redrive))
        .route(
            "/v1/events/{id}",
            get(events::get_one).delete(events::delete_one),
        )
        .route(
            "/v1/functions/{name}/event-config",
            get(events::get_config)
                .put(events::put_config)
                .patch(events::update_config)
                .delete(events::delete_config),
        )
        .route(
            "/v1/functions/{name}/event-configs",
            get(events::list_configs),
        )
        .route("/v1/layers", get(layers::list_layers))
        .route(REQUIREMENTS, post(layers::requirements))
        .route(
            LAYER_VERSIONS,
            post(layers::publish).get(layers::list_versions),
        )
        .route(
            "/v1/layers/{name}/versions/{version}",
            get(layers::get_one).delete(layers::delete_one),
        )
        .route("/v1/runtimes", get(runtimes))
        .route("/v1/cluster", get(cluster::status))
        .merge(schedules::routes())
        .route_layer(middleware::from_fn_with_state(cp.clone(), require_key));
    Router::new()
        .route("/v1/health", get(health))
        .merge(authed)
        .merge(access::routes(cp.clone()))
        .merge(invocations::routes(cp))
        // `require_key` reads the body, with the route's own limit (see `body_limit`).
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
        (&Method::POST, Some(CREATE_FUNCTION | LAYER_VERSIONS | REQUIREMENTS)) => {
            (MAX_JSON_BODY, "request body")
        }
        (&Method::PUT, Some(DEPLOY)) => (
            usize::try_from(cp.max_code_bytes()).unwrap_or(usize::MAX),
            "code package",
        ),
        (&Method::POST, Some(INVOKE)) => (MAX_SYNC_PAYLOAD, "invoke payload"),
        (&Method::POST, Some(KEYS)) => (MAX_KEY_BODY, "request body"),
        _ => (MAX_SMALL_BODY, "request body"),
    }
}

/// Every `/v1` route but health needs `Authorization: Bearer <id>.<secret>`. The key is
/// checked from the headers alone; then the body is read here, once, within the route's size
/// limit and the body timeout, so no handler can forget either.
pub(crate) async fn require_key(State(cp): State<AppState>, req: Request, next: Next) -> Response {
    let received = Instant::now();
    match auth::bearer_principal(&cp, req.headers(), req.extensions()).await {
        Ok(principal) => {
            let auth = received.elapsed();
            let (mut parts, body) = req.into_parts();
            let Some(limits) = parts.extensions.get::<BodyLimits>().cloned() else {
                return ApiError(CoreError::internal("body limits not configured")).into_response();
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
    if let auth::Bearer::Missing = auth::bearer(req.headers()) {
        return Ok(Json(alive));
    }
    auth::bearer_principal(&cp, req.headers(), req.extensions()).await?;
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

async fn runtimes(State(cp): State<AppState>, Caller(by): Caller) -> Json<RuntimeList> {
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
    Ok(extract::query(query, what, "qualifier")?.qualifier)
}
