//! The `/v1` wire formats of asynchronous invocation: the answer to an async invoke, events
//! and dead letters, redrives and event invoke configurations.

use serde::{Deserialize, Serialize};

/// The header that makes `POST /v1/functions/{name}/invoke` asynchronous (value `Event`).
pub const INVOCATION_TYPE_HEADER: &str = "x-skyscale-invocation-type";

/// The header carrying an asynchronous invoke's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// 202 of an asynchronous invoke: the event is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncAccepted {
    pub event_id: String,
    /// The idempotency key was seen before: `event_id` is the first event's and nothing new
    /// was queued.
    pub duplicate: bool,
}

/// One event (`GET /v1/events/{id}`, and each entry of a function's list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEntry {
    pub id: String,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// `queued`, `retrying` or `dead`.
    pub status: String,
    /// An attempt is running now.
    pub running: bool,
    /// RFC 3339.
    pub accepted_at: String,
    pub age_seconds: f64,
    /// Attempts that ran and failed.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why a dead letter was given up on: `RetriesExhausted`, `EventAgeExceeded`,
    /// `FunctionDeleted`, `Refused` or `DestinationFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<String>,
    /// The payload as sent (only on `GET /v1/events/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// A dead letter's invocation record, Lambda's document (only on `GET /v1/events/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<serde_json::Value>,
}

/// `GET /v1/functions/{name}/events`: oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventList {
    pub events: Vec<EventEntry>,
}

/// `POST /v1/functions/{name}/events/redrive`: one dead letter (`id`) or all (`all`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub all: bool,
}

/// The ids sent back to the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Redriven {
    pub redriven: Vec<String>,
}

/// `PUT` (replace) or `PATCH` (change what is given) `/v1/functions/{name}/event-config`.
/// In a `PATCH`, an empty destination removes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfigRequest {
    /// 0 to 2 (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<u32>,
    /// 60 to 21600 (default 21600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_seconds: Option<u32>,
    /// A function name, `name:qualifier` or function ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

/// An event invoke configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventConfigInfo {
    pub function: String,
    /// `$LATEST`, a version's number or an alias.
    pub qualifier: String,
    pub function_arn: String,
    /// Not set: the default (2).
    pub maximum_retry_attempts: Option<u32>,
    /// Not set: the default (21600).
    pub maximum_event_age_seconds: Option<u32>,
    /// Destination function ARNs.
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    /// RFC 3339.
    pub last_modified: String,
}

/// `GET /v1/functions/{name}/event-configs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventConfigList {
    pub configs: Vec<EventConfigInfo>,
}
