//! The `/v1` JSON wire formats, shared by the HTTP layer and the client.
//!
//! Requests carry raw, unvalidated values (`i64`, `String`): the control plane validates
//! them into domain types so that every rule lives in one place and every error message
//! names the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Response header that marks an invocation whose handler failed (the body is the error).
pub const FUNCTION_ERROR_HEADER: &str = "x-skyscale-function-error";
/// Response header carrying the invocation's request id.
pub const REQUEST_ID_HEADER: &str = "x-skyscale-request-id";
/// Response header that says whether the invocation needed a cold start (`true`/`false`).
pub const COLD_START_HEADER: &str = "x-skyscale-cold-start";
/// Response header: how long the handler's invocation took, in milliseconds.
pub const DURATION_HEADER: &str = "x-skyscale-duration-ms";
/// Response header on cold starts: how long starting and initialising the sandbox took, ms.
pub const INIT_DURATION_HEADER: &str = "x-skyscale-init-duration-ms";
/// Request header of an invoke: `Tail` asks for the invocation's logs in [`LOG_RESULT_HEADER`].
pub const LOG_TYPE_HEADER: &str = "x-skyscale-log-type";
/// Response header of an invoke with [`LOG_TYPE_HEADER`] `Tail`: the last 4 KB of the
/// invocation's logs (`START` … `REPORT`), base64, like Lambda's `X-Amz-Log-Result`.
pub const LOG_RESULT_HEADER: &str = "x-skyscale-log-result";

/// `POST /v1/functions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateFunction {
    pub name: String,
    pub runtime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Optional code package: a zip archive, base64-encoded. Code can also be deployed later
    /// with `PUT /v1/functions/{name}/code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_zip_base64: Option<String>,
}

/// `PATCH /v1/functions/{name}`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateFunction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<i64>,
    /// Replaces the whole environment when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A function as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    pub runtime: String,
    pub handler: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub environment: BTreeMap<String, String>,
    pub description: String,
    /// Hex SHA-256 of the deployed zip, absent until code is deployed.
    pub code_sha256: Option<String>,
    pub code_size: Option<u64>,
    /// Most invocations running at once; absent = no reservation; 0 = disabled.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// Increases with every change of code or configuration.
    pub revision: u64,
    /// RFC 3339 timestamps.
    pub created_at: String,
    pub updated_at: String,
    /// A published version's number; absent for `$LATEST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// `PUT /v1/functions/{name}/concurrency`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutConcurrency {
    pub reserved_concurrency: i64,
}

/// `GET /v1/functions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionList {
    pub functions: Vec<FunctionInfo>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub driver: String,
    /// Generic pre-booted sandboxes ready to be specialised.
    #[serde(default)]
    pub warm_pool_idle: usize,
    /// Sandboxes alive (generic, idle and busy).
    #[serde(default)]
    pub sandboxes: usize,
    /// Invocations running now.
    #[serde(default)]
    pub busy: usize,
}

/// The body of a function error (handler exception, init failure, timeout, crash): the
/// same shape Lambda uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionError {
    #[serde(rename = "errorMessage")]
    pub error_message: String,
    #[serde(rename = "errorType", default)]
    pub error_type: String,
    #[serde(rename = "stackTrace", default)]
    pub stack_trace: Vec<String>,
}

/// Every non-2xx `/v1` answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
