//! Answers axum gives before any `/v1` handler runs — no route matches (404), the route has
//! no such method (405), a path segment does not decode (400) — get the `/v1` error body
//! like every other `/v1` error, instead of an empty or plain-text one.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skyscale_types::api::{ErrorDetail, ErrorResponse};

/// Most bytes of axum's own answer kept for the message.
const MAX_TEXT: usize = 1024;
/// Most characters of the request path repeated in a message.
const MAX_PATH: usize = 200;

/// Middleware for the whole router; only touches `/v1` answers that are client errors
/// without a JSON body.
pub(crate) async fn v1_json_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path != "/v1" && !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let shown: String = path.chars().take(MAX_PATH).collect();
    let route = format!("{} {shown}", req.method());
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !resp.status().is_client_error() || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let (code, message) = match parts.status {
        StatusCode::NOT_FOUND => ("not_found", format!("no /v1 operation matches {route}")),
        StatusCode::METHOD_NOT_ALLOWED => (
            "invalid_request",
            format!("{route}: this method is not allowed here"),
        ),
        status if text.is_empty() => (
            "invalid_request",
            format!(
                "{route}: {}",
                status.canonical_reason().unwrap_or("bad request")
            ),
        ),
        _ => ("invalid_request", format!("{route}: {text}")),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let body = ErrorResponse {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
        },
    };
    (parts.status, parts.headers, Json(body)).into_response()
}
