//! Function URLs: `/url/<function>[:<alias>]/<any path>` on the control plane, any method.
//! Each request becomes a payload-format-2.0 event ([`event`]) for the function, and the
//! function's result becomes the HTTP response ([`response`]). `AuthType` `NONE` is
//! public; `AWS_IAM` needs a SigV4 signature by an API key. CORS preflights are answered
//! from the URL's settings without invoking the function.

mod error;
mod event;
mod response;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use percent_encoding::percent_decode_str;
use skyscale_core::{CoreError, InvokeOptions, Principal, MAX_SYNC_PAYLOAD};
use skyscale_types::{Cors, FunctionName, UrlAuthType};

use crate::auth;
use crate::body::{self, BodyLimits, Sender};
use crate::AppState;
use error::UrlError;
use event::{IamCaller, UrlRequest};

const PREFIX: &str = "/url/";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/url/{*rest}", any(serve))
        // The handler reads the body with its own limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// The path a function URL is served under: `/url/<function>/` or `/url/<function>:<alias>/`.
pub(crate) fn url_path(function: &str, alias: Option<&str>) -> String {
    match alias {
        Some(a) => format!("{PREFIX}{function}:{a}/"),
        None => format!("{PREFIX}{function}/"),
    }
}

/// The full URL as the caller of a management API reached this server.
pub(crate) fn function_url(headers: &HeaderMap, function: &str, alias: Option<&str>) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}{}", url_path(function, alias))
}

/// A refused signature: 429 when the address is over its limit of failures, else 403.
fn auth_failed(function: &FunctionName, e: CoreError) -> Response {
    tracing::debug!(error = %e, function = %function, "function URL: authentication failed");
    UrlError(e).into_response()
}

fn core_error(e: CoreError) -> Response {
    UrlError(e).into_response()
}

/// Splits `/url/<target>/<rest>` into the function, the alias and the path below.
fn parse_target(path: &str) -> Option<(FunctionName, Option<String>, &str)> {
    let after = path.strip_prefix(PREFIX)?;
    let (target, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    let target = percent_decode_str(target).decode_utf8().ok()?;
    let (function, alias) = match target.split_once(':') {
        Some((f, a)) => (f, Some(a.to_owned())),
        None => (target.as_ref(), None),
    };
    Some((FunctionName::parse(function).ok()?, alias, rest))
}

/// `Root=1-<epoch seconds, hex>-<96 random bits, hex>` (X-Ray's format).
fn trace_id(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{secs:08x}-{}", &random[..24])
}

fn join(items: &[String]) -> Option<HeaderValue> {
    HeaderValue::from_str(&items.join(",")).ok()
}

/// The answer to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`), from the URL's settings; no CORS headers when the
/// origin is not allowed.
fn preflight(cors: &Cors, headers: &HeaderMap) -> Response {
    let mut out = HeaderMap::new();
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if let Some(origin) = origin.filter(|o| cors.allows_origin(o)) {
        allow_origin(cors, origin, &mut out);
        let methods = if cors.allow_methods.iter().any(|m| m == "*") {
            headers.get(header::ACCESS_CONTROL_REQUEST_METHOD).cloned()
        } else {
            join(&cors.allow_methods)
        };
        if let Some(m) = methods {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m);
        }
        let allow_headers = if cors.allow_headers.iter().any(|h| h == "*") {
            headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned()
        } else if cors.allow_headers.is_empty() {
            None
        } else {
            join(&cors.allow_headers)
        };
        if let Some(h) = allow_headers {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h);
        }
        if let Some(age) = cors.max_age {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
        }
    }
    (StatusCode::OK, out).into_response()
}

fn allow_origin(cors: &Cors, origin: &str, out: &mut HeaderMap) {
    let wildcard = cors.allow_origins.iter().any(|o| o == "*") && !cors.allow_credentials;
    let value = if wildcard {
        HeaderValue::from_static("*")
    } else {
        match HeaderValue::from_str(origin) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    if cors.allow_credentials {
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// CORS headers on an actual (non-preflight) response.
fn add_cors(cors: Option<&Cors>, request: &HeaderMap, response: &mut HeaderMap) {
    let Some(cors) = cors else { return };
    let Some(origin) = request.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return;
    };
    if !cors.allows_origin(origin) {
        return;
    }
    allow_origin(cors, origin, response);
    if let Some(e) = (!cors.expose_headers.is_empty())
        .then(|| join(&cors.expose_headers))
        .flatten()
    {
        response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e);
    }
}

async fn serve(State(cp): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some((function, alias, raw_path)) = parse_target(parts.uri.path()) else {
        return error::answer(
            StatusCode::NOT_FOUND,
            "not a function URL: expected /url/<function>[:<alias>]/<path>",
        );
    };
    let config = match cp.url_record(&function, alias.as_deref()).await {
        Ok(c) => c,
        Err(CoreError::NotFound(m)) => return error::answer(StatusCode::NOT_FOUND, &m),
        Err(e) => return core_error(e),
    };
    let is_preflight = parts.method == Method::OPTIONS
        && parts.headers.contains_key(header::ORIGIN)
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if let (true, Some(cors)) = (is_preflight, &config.cors) {
        return preflight(cors, &parts.headers);
    }
    if config.auth_type == UrlAuthType::AwsIam {
        if let Err(e) = auth::sigv4_precheck(&cp, &parts) {
            return auth_failed(&function, e);
        }
    }
    // Public or not yet authenticated either way: the body comes from the shared budget
    // until it has become the event (`body.rs`).
    let Some(limits) = parts.extensions.get::<BodyLimits>().cloned() else {
        return core_error(CoreError::internal("body limits not configured"));
    };
    let declared = body::declared_length(&parts.headers);
    let body = match body::read(
        &limits,
        body,
        declared,
        MAX_SYNC_PAYLOAD,
        Sender::Unauthenticated,
        "the request body",
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return core_error(e.into()),
    };
    // A public URL's caller may invoke this function and nothing else; a signed request
    // acts for its key, whose role and patterns must allow invoking it (the same check as
    // the APIs', in `invoke_with`).
    let principal = match config.auth_type {
        UrlAuthType::None => Principal::function_url(&function),
        UrlAuthType::AwsIam => match auth::sigv4_principal(&cp, &parts, &body.bytes).await {
            Ok(p) => p,
            Err(e) => return auth_failed(&function, e),
        },
    };
    let now = SystemTime::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let trace = trace_id(now);
    let source_ip = auth::source_ip(&parts.extensions).to_string();
    let domain = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let event = event::event(&UrlRequest {
        method: &parts.method,
        raw_path,
        raw_query: parts.uri.query(),
        headers: &parts.headers,
        body: &body.bytes,
        source_ip,
        url_id: &config.url_id,
        domain: &domain,
        request_id: &request_id,
        trace_id: &trace,
        now,
        iam: principal.key_id.as_ref().map(|k| IamCaller {
            access_key: k.to_string(),
            account_id: cp.settings().account_id.clone(),
        }),
    });
    drop(body);
    let opts = InvokeOptions {
        qualifier: alias.clone(),
        trigger: skyscale_core::Trigger::Url,
        ..InvokeOptions::default()
    };
    let out = match cp
        .invoke_with(
            &principal,
            function.as_str(),
            opts,
            event.to_string().into_bytes(),
        )
        .await
    {
        Ok(out) => out,
        Err(e @ CoreError::TooManyRequests { .. }) => {
            return error::answer(StatusCode::TOO_MANY_REQUESTS, &e.to_string())
        }
        Err(e) => return core_error(e),
    };
    let mut response = if out.function_error().is_some() {
        tracing::debug!(function = %function, request_id = %out.request_id,
            error_type = ?out.error_type(), "function URL: the function failed");
        error::answer(StatusCode::BAD_GATEWAY, "Internal Server Error")
    } else {
        match response::from_result(&out.body) {
            Ok(r) => {
                let mut resp = Response::new(Body::from(r.body));
                *resp.status_mut() = r.status;
                for (name, value) in r.headers {
                    resp.headers_mut().append(name, value);
                }
                resp
            }
            Err(why) => {
                tracing::warn!(function = %function, request_id = %out.request_id,
                    error = %why, "function URL: the result is not a valid response");
                error::answer(StatusCode::BAD_GATEWAY, "Internal Server Error")
            }
        }
    };
    add_cors(config.cors.as_ref(), &parts.headers, response.headers_mut());
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&out.request_id) {
        h.insert(HeaderName::from_static("x-amzn-requestid"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&trace) {
        h.insert(HeaderName::from_static("x-amzn-trace-id"), v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let (f, a, rest) = parse_target("/url/web/a/b").unwrap();
        assert_eq!((f.as_str(), a, rest), ("web", None, "/a/b"));
        let (f, a, rest) = parse_target("/url/web%3Alive").unwrap();
        assert_eq!((f.as_str(), a.as_deref(), rest), ("web", Some("live"), "/"));
        assert!(parse_target("/url/bad$name/x").is_none());
        assert_eq!(url_path("web", Some("live")), "/url/web:live/");
    }

    #[test]
    fn cors_preflight_and_actual() {
        let cors = Cors {
            allow_origins: vec!["https://app.example".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["*".into()],
            expose_headers: vec!["x-total".into()],
            max_age: Some(300),
            allow_credentials: true,
        };
        let mut req = HeaderMap::new();
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-custom"),
        );
        let r = preflight(&cors, &req);
        let h = r.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET,POST");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], "x-custom");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "300");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        let mut out = HeaderMap::new();
        add_cors(Some(&cors), &req, &mut out);
        assert_eq!(out[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-total");
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(preflight(&cors, &req).headers().is_empty());
    }
}
