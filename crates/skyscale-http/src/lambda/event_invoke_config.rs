//! Asynchronous invocation settings (lambda-compatibility.md §13): Put, Update, Get, List and
//! DeleteFunctionEventInvokeConfig on `/2019-09-25/functions/{name}/event-invoke-config`,
//! shapes as in botocore's model. Destinations are Skyscale functions (name or ARN).

use std::time::UNIX_EPOCH;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use skyscale_core::{CoreError, EventConfig, EventConfigChange, Principal};

use super::error::LambdaError;
use super::extract::{Caller, Function, Unqualified};
use super::model::Target;
use super::{parse_json, LambdaResult, Params};
use crate::AppState;

/// Most configurations on one page of ListFunctionEventInvokeConfigs, as in Lambda.
const MAX_LIST: usize = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigIn {
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_in_seconds: Option<i64>,
    destination_config: Option<DestinationConfigIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationConfigIn {
    on_success: Option<DestinationIn>,
    on_failure: Option<DestinationIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationIn {
    destination: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigOut {
    /// Epoch seconds (botocore's `timestamp` in rest-json).
    last_modified: f64,
    function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_retry_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_event_age_in_seconds: Option<u32>,
    destination_config: DestinationConfigOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationConfigOut {
    on_success: DestinationOut,
    on_failure: DestinationOut,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListOut {
    function_event_invoke_configs: Vec<ConfigOut>,
    next_marker: Option<String>,
}

fn out(c: EventConfig) -> ConfigOut {
    ConfigOut {
        last_modified: c
            .last_modified
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0),
        function_arn: c.function_arn,
        maximum_retry_attempts: c.max_retries,
        maximum_event_age_in_seconds: c.max_age_s,
        destination_config: DestinationConfigOut {
            on_success: DestinationOut {
                destination: c.on_success,
            },
            on_failure: DestinationOut {
                destination: c.on_failure,
            },
        },
    }
}

/// A number in the request as the core's type; out of `u32` range is out of range anyway.
fn number(v: Option<i64>, what: &str) -> LambdaResult<Option<u32>> {
    v.map(|n| {
        u32::try_from(n).map_err(|_| {
            LambdaError::invalid(match what {
                "MaximumRetryAttempts" => {
                    format!("{what} {n} is out of range: expected 0 to 2")
                }
                _ => format!("{what} {n} is out of range: expected 60 to 21600"),
            })
        })
    })
    .transpose()
}

fn change(body: &Bytes) -> LambdaResult<EventConfigChange> {
    let c: ConfigIn = if body.iter().all(u8::is_ascii_whitespace) {
        ConfigIn::default()
    } else {
        parse_json(body)?
    };
    let d = c.destination_config.unwrap_or_default();
    // A destination object without a Destination removes it.
    let dest = |d: Option<DestinationIn>| d.map(|d| d.destination.filter(|s| !s.is_empty()));
    Ok(EventConfigChange {
        max_retries: number(c.maximum_retry_attempts, "MaximumRetryAttempts")?,
        max_age_s: number(c.maximum_event_age_in_seconds, "MaximumEventAgeInSeconds")?,
        on_success: dest(d.on_success),
        on_failure: dest(d.on_failure),
    })
}

/// Lambda's answer when the function exists but has no configuration for the qualifier.
async fn about(cp: &AppState, by: &Principal, t: &Target, e: CoreError) -> LambdaError {
    if let CoreError::NotFound(_) = e {
        if cp
            .get_function_version(by, &t.name, t.qualifier.as_deref())
            .await
            .is_ok()
        {
            let arn = format!("{}:{}", t.arn, t.qualifier.as_deref().unwrap_or("$LATEST"));
            return CoreError::NotFound(format!(
                "The function {arn} doesn't have an EventInvokeConfig"
            ))
            .into();
        }
    }
    LambdaError::about(e, &t.qualified_arn())
}

pub(super) async fn put(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    body: Bytes,
) -> LambdaResult<Response> {
    let c = change(&body)?;
    let config = cp
        .put_event_config(&by, &t.name, t.qualifier.as_deref(), c)
        .await
        .map_err(|e| LambdaError::about(e, &t.qualified_arn()))?;
    Ok(Json(out(config)).into_response())
}

pub(super) async fn update(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    body: Bytes,
) -> LambdaResult<Response> {
    let c = change(&body)?;
    match cp
        .update_event_config(&by, &t.name, t.qualifier.as_deref(), c)
        .await
    {
        Ok(config) => Ok(Json(out(config)).into_response()),
        Err(e) => Err(about(&cp, &by, &t, e).await),
    }
}

pub(super) async fn get(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
) -> LambdaResult<Response> {
    match cp.event_config(&by, &t.name, t.qualifier.as_deref()).await {
        Ok(config) => Ok(Json(out(config)).into_response()),
        Err(e) => Err(about(&cp, &by, &t, e).await),
    }
}

pub(super) async fn delete(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
) -> LambdaResult<Response> {
    match cp
        .delete_event_config(&by, &t.name, t.qualifier.as_deref())
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(about(&cp, &by, &t, e).await),
    }
}

pub(super) async fn list(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    params: Params,
) -> LambdaResult<Response> {
    let max = match params.get("MaxItems") {
        None => MAX_LIST,
        Some(s) => match s.parse::<usize>() {
            Ok(n @ 1..=MAX_LIST) => n,
            _ => {
                return Err(LambdaError::invalid(format!(
                    "invalid MaxItems {s:?}: must be between 1 and {MAX_LIST}"
                )))
            }
        },
    };
    let start = match params.get("Marker") {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| LambdaError::invalid(format!("invalid Marker {m:?}")))?,
    };
    let all = cp
        .event_configs(&by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    let end = start.saturating_add(max);
    let next_marker = (end < all.len()).then(|| end.to_string());
    let page = all.into_iter().skip(start).take(max).map(out).collect();
    Ok(Json(ListOut {
        function_event_invoke_configs: page,
        next_marker,
    })
    .into_response())
}
