//! Authentication for every surface, in one place: bearer keys (`/v1`), SigV4 signatures
//! (the Lambda API and `AWS_IAM` function URLs), and the address a request came from. What
//! a principal may do is the core's decision; each surface maps the errors to its own wire.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use axum::http::{header, request, Extensions, HeaderMap};
use skyscale_core::{CoreError, Principal};

use crate::AppState;

/// The address the request came from (the TCP peer; `X-Forwarded-For` is not trusted): the
/// rate limit of failed authentications counts by it, and function URLs pass it to the
/// function. Without connection info (a router used without `serve`) it is `0.0.0.0`.
pub(crate) fn source_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// What a request's `Authorization` header holds for a bearer key.
pub(crate) enum Bearer<'a> {
    Missing,
    Malformed,
    /// `<key-id>.<secret>`, not yet checked.
    Token(&'a str),
}

pub(crate) fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Bearer::Missing;
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    {
        Some(token) => Bearer::Token(token),
        None => Bearer::Malformed,
    }
}

/// The error for a missing bearer key.
pub(crate) fn missing_key() -> CoreError {
    CoreError::Unauthorized(
        "missing api key: send 'Authorization: Bearer <key-id>.<secret>'".into(),
    )
}

/// The error for an `Authorization` header that is not a bearer key.
pub(crate) fn malformed_key() -> CoreError {
    CoreError::Unauthorized(
        "malformed Authorization header: expected 'Bearer <key-id>.<secret>'".into(),
    )
}

/// Checks a bearer key from the request's headers.
pub(crate) async fn bearer_principal(
    cp: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<Principal, CoreError> {
    match bearer(headers) {
        Bearer::Missing => Err(missing_key()),
        Bearer::Malformed => Err(malformed_key()),
        Bearer::Token(token) => cp.authenticate(token, source_ip(extensions)).await,
    }
}

fn authorization(parts: &request::Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// What can be checked of a SigV4 request before its body is read (see
/// `ControlPlane::sigv4_precheck`).
pub(crate) fn sigv4_precheck(cp: &AppState, parts: &request::Parts) -> Result<(), CoreError> {
    cp.sigv4_precheck(authorization(parts), source_ip(&parts.extensions))
}

/// Who signed the request (service `lambda`), checked against its body. The path, query
/// and `Host` header are used exactly as received.
pub(crate) async fn sigv4_principal(
    cp: &AppState,
    parts: &request::Parts,
    body: &[u8],
) -> Result<Principal, CoreError> {
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let signed = skyscale_sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
        body,
    };
    cp.authenticate_sigv4(
        &signed,
        authorization(parts),
        SystemTime::now(),
        source_ip(&parts.extensions),
    )
    .await
}

/// The principal a surface's middleware authenticated for this request. Every route behind
/// a middleware has one; a route without is a wiring mistake, answered as an internal error.
pub(crate) fn caller(parts: &request::Parts) -> Result<Principal, CoreError> {
    parts
        .extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| CoreError::internal("no authenticated principal on this route"))
}
