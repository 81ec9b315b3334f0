//! Invoke (lambda-compatibility.md §5): `RequestResponse` (200, the raw result), `Event` (202 once the
//! event is committed to the durable queue) and `DryRun` (204).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use skyscale_core::{AsyncInvoke, CoreError, InvokeOptions, MAX_ASYNC_PAYLOAD};

use super::error::LambdaError;
use super::extract::{Caller, Function};
use super::LambdaResult;
use crate::AppState;

/// Largest decoded `X-Amz-Client-Context`, as in Lambda.
const MAX_CLIENT_CONTEXT: usize = 3583;

/// `X-Amz-Client-Context`: base64 of a JSON object, handed to the runtime as raw JSON.
fn client_context(header: Option<&str>) -> LambdaResult<Option<String>> {
    let Some(b64) = header.filter(|h| !h.trim().is_empty()) else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| LambdaError::invalid(format!("X-Amz-Client-Context is not base64: {e}")))?;
    if raw.len() > MAX_CLIENT_CONTEXT {
        return Err(LambdaError::invalid(format!(
            "X-Amz-Client-Context is {} bytes decoded: the limit is {MAX_CLIENT_CONTEXT}",
            raw.len()
        )));
    }
    let json = String::from_utf8(raw)
        .ok()
        .filter(|s| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s).is_ok())
        .ok_or_else(|| {
            LambdaError::invalid("X-Amz-Client-Context is not the base64 of a JSON object")
        })?;
    Ok(Some(json))
}

/// The same rule the core applies to a synchronous payload (empty means `{}`), checked
/// before an `Event` invocation is accepted, so a bad payload is a 400 rather than a
/// silently failed background run.
fn check_json(payload: &[u8]) -> LambdaResult<()> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(payload)
        .map(drop)
        .map_err(|e| {
            CoreError::InvalidRequest(format!("could not parse request body into json: {e}")).into()
        })
}

pub(super) async fn invoke(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    headers: HeaderMap,
    payload: Bytes,
) -> LambdaResult<Response> {
    let arn = t.qualified_arn();
    let about = |e| LambdaError::about(e, &arn);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("x-amz-invocation-type").unwrap_or("RequestResponse") {
        "RequestResponse" => {}
        "DryRun" => {
            cp.check_invoke(&by, &t.name, t.qualifier.as_deref())
                .await
                .map_err(about)?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        "Event" => {
            if payload.len() > MAX_ASYNC_PAYLOAD {
                return Err(CoreError::PayloadTooLarge(format!(
                    "asynchronous invoke payload is {} bytes: the limit is {MAX_ASYNC_PAYLOAD}",
                    payload.len()
                ))
                .into());
            }
            check_json(&payload)?;
            // Committed to the queue before the 202; its id is the request id (§13).
            let opts = AsyncInvoke {
                qualifier: t.qualifier.clone(),
                idempotency_key: None,
            };
            let accepted = cp
                .enqueue(&by, &t.name, opts, payload.to_vec())
                .await
                .map_err(about)?;
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&accepted.event_id) {
                h.insert(super::REQUEST_ID, v);
            }
            return Ok((StatusCode::ACCEPTED, h).into_response());
        }
        other => {
            return Err(LambdaError::invalid(format!(
                "invalid X-Amz-Invocation-Type {other:?}: expected RequestResponse, Event or DryRun"
            )))
        }
    }
    let tail = match header("x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "invalid X-Amz-Log-Type {other:?}: expected None or Tail"
            )))
        }
    };
    let opts = InvokeOptions {
        qualifier: t.qualifier.clone(),
        client_context: client_context(header("x-amz-client-context"))?,
        ..InvokeOptions::default()
    };
    let out = cp
        .invoke_with(&by, &t.name, opts, payload.to_vec())
        .await
        .map_err(about)?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&out.request_id) {
        h.insert(super::REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&out.executed_version) {
        h.insert("X-Amz-Executed-Version", v);
    }
    if let Some(kind) = out.function_error() {
        h.insert("X-Amz-Function-Error", HeaderValue::from_static(kind));
    }
    if tail {
        h.insert("X-Amz-Log-Result", crate::log_result(&out.logs));
    }
    Ok((StatusCode::OK, h, out.body).into_response())
}
