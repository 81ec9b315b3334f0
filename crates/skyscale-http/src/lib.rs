//! The control plane's HTTP APIs: the native `/v1` and the AWS Lambda-compatible one. This crate is the only one that knows axum: it turns
//! requests into `ControlPlane` calls and `CoreError`s into responses, in one place.
//!
//! `serve` takes an already-bound listener and a shutdown future, so tests run the real
//! server on `127.0.0.1:0`.

mod auth;
mod body;
mod cluster;
mod code;
mod lambda;
mod metrics;
mod rejections;
mod server;
mod url;
mod v1;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use skyscale_core::ControlPlane;
use tokio::net::TcpListener;

pub use body::BodyLimits;
pub use cluster::{serve_worker, worker_router, ClusterSecret, HttpWorkerLink};
pub use server::ConnectionLimits;
pub use v1::ApiError;

/// Shared state of every handler.
pub type AppState = Arc<ControlPlane>;

/// How the server guards itself against slow, idle and unauthenticated clients.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub connections: ConnectionLimits,
    pub bodies: BodyLimits,
}

/// The whole API as a router.
pub fn router(cp: AppState, bodies: BodyLimits) -> Router {
    Router::new()
        .merge(v1::routes(cp.clone()))
        .merge(lambda::routes(cp.clone()))
        .merge(metrics::routes(cp.clone()))
        .merge(url::routes())
        .merge(code::routes())
        .layer(axum::middleware::from_fn(rejections::v1_json_errors))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::Extension(bodies))
        .with_state(cp)
}

/// The tail of an invocation's logs as an invoke's answer carries it, on every surface:
/// base64 of the core's one tail (cut at a character boundary).
pub(crate) fn log_result(logs: &str) -> axum::http::HeaderValue {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(skyscale_core::logs::invocation_tail(logs));
    // Base64 is always a valid header value.
    axum::http::HeaderValue::try_from(b64).unwrap_or(axum::http::HeaderValue::from_static(""))
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, closes idle
/// connections and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    cp: AppState,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Function URLs pass the caller's address to the function (`sourceIp`), and the rate
    // limit of failed authentications counts by it: the server inserts `ConnectInfo`.
    let app = router(cp, settings.bodies);
    server::serve(listener, app, settings.connections, shutdown).await
}
