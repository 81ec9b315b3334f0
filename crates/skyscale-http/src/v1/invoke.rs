//! `/v1` invoke: the payload in, the result and the invocation's headers out.
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use skyscale_core::InvokeOptions;
use skyscale_types::api::{
    COLD_START_HEADER, DURATION_HEADER, EXECUTED_VERSION_HEADER, FUNCTION_ERROR_HEADER,
    INIT_DURATION_HEADER, LOG_RESULT_HEADER, LOG_TYPE_HEADER, REQUEST_ID_HEADER,
};
use skyscale_types::events::INVOCATION_TYPE_HEADER;

use super::extract::Caller;
use super::{qualifier, ApiResult, AuthTiming, QualifierQuery};
use crate::AppState;

/// `server-timing` for an invocation, in milliseconds with microsecond precision:
/// `auth`, `lookup`, `acquire` (cold start included), `channel` (control plane ⇄ agent, minus
/// the runtime's share), `runtime` (agent ⇄ runtime, handler included) and `total`. A cold
/// start on this node adds the parts of `acquire` after it: `sandbox` (a booted sandbox taken
/// from the pool or booted), `place` (code and layers linked, memory limit set) and `init`
/// (the runtime's start, when not pre-started, and the handler module's import).
fn server_timing(t: &skyscale_core::InvokeTiming, auth: Duration, total: Duration) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let cold = if t.cold.init.is_zero() {
        String::new()
    } else {
        format!(
            "sandbox;dur={:.3}, place;dur={:.3}, init;dur={:.3}, ",
            ms(t.cold.sandbox),
            ms(t.cold.place),
            ms(t.cold.init),
        )
    };
    format!(
        "auth;dur={:.3}, lookup;dur={:.3}, acquire;dur={:.3}, {cold}channel;dur={:.3}, runtime;dur={:.3}, total;dur={:.3}",
        ms(auth),
        ms(t.lookup),
        ms(t.acquire),
        ms(t.agent.saturating_sub(t.runtime)),
        ms(t.runtime),
        ms(total),
    )
}

pub(super) async fn invoke(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Extension(AuthTiming { received, auth }): Extension<AuthTiming>,
    Path(name): Path<String>,
    query: Result<Query<QualifierQuery>, QueryRejection>,
    request_headers: HeaderMap,
    payload: Bytes,
) -> ApiResult<Response> {
    let qualifier = qualifier(query, "invoke")?;
    if let Some(kind) = request_headers.get(INVOCATION_TYPE_HEADER) {
        return super::events::invoke_async(
            &cp,
            &by,
            &name,
            qualifier,
            kind,
            &request_headers,
            payload,
        )
        .await;
    }
    let tail = request_headers
        .get(LOG_TYPE_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"Tail"));
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
        headers.insert(LOG_RESULT_HEADER, crate::log_result(&out.logs));
    }
    Ok((StatusCode::OK, headers, out.body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyscale_core::{ColdTiming, InvokeTiming};

    #[test]
    fn a_cold_start_adds_the_parts_of_acquire() {
        let ms = Duration::from_millis;
        let warm = InvokeTiming {
            lookup: Duration::from_micros(20),
            acquire: Duration::from_micros(5),
            agent: ms(3),
            runtime: ms(2),
            cold: ColdTiming::default(),
        };
        assert_eq!(
            server_timing(&warm, Duration::from_micros(10), ms(4)),
            "auth;dur=0.010, lookup;dur=0.020, acquire;dur=0.005, channel;dur=1.000, \
             runtime;dur=2.000, total;dur=4.000"
        );
        let cold = InvokeTiming {
            acquire: ms(300),
            cold: ColdTiming {
                sandbox: Duration::from_micros(50),
                place: ms(40),
                init: ms(250),
            },
            ..warm
        };
        assert_eq!(
            server_timing(&cold, Duration::from_micros(10), ms(310)),
            "auth;dur=0.010, lookup;dur=0.020, acquire;dur=300.000, sandbox;dur=0.050, \
             place;dur=40.000, init;dur=250.000, channel;dur=1.000, runtime;dur=2.000, \
             total;dur=310.000"
        );
    }
}
