//! The `/v1` JSON wire formats, shared by the HTTP layer and the client.
//!
//! Requests carry raw, unvalidated values (`i64`, `String`): the control plane validates
//! them into domain types so that every rule lives in one place and every error message
//! names the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Cors, UrlAuthType};

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
/// Response header of an invoke: the version that ran, `$LATEST` or a published version's
/// number (an alias names a version; with routing, the one picked this time).
pub const EXECUTED_VERSION_HEADER: &str = "x-skyscale-executed-version";

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
    /// Outbound network access (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<bool>,
    /// Size of `/tmp` in MiB, 512–10240 (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_mb: Option<i64>,
    /// Layer version ARNs, in order (at most 5; a later layer wins on the same path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// SnapStart (Lambda's `ApplyOn`): `PublishedVersions` or `None` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snap_start: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_mb: Option<i64>,
    /// Replaces the whole list of layers (version ARNs, in order; empty removes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<String>>,
    /// SnapStart: `PublishedVersions` or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snap_start: Option<String>,
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
    /// Whether its sandboxes have outbound network access.
    #[serde(default)]
    pub network: bool,
    /// Size of its sandboxes' `/tmp`, MiB.
    pub ephemeral_storage_mb: u32,
    /// Its layers, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<FunctionLayerInfo>,
    /// SnapStart as asked for (`None`, `PublishedVersions`) and whether this version starts
    /// from a snapshot now.
    #[serde(default)]
    pub snap_start: SnapStartInfo,
}

/// A version's SnapStart: the setting, whether it is in use, and why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapStartInfo {
    pub apply_on: crate::snapstart::SnapStart,
    pub optimization_status: crate::snapstart::OptimizationStatus,
    /// Why it is `Off` although asked for (e.g. the driver cannot snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One layer of a function: which layer version, and its zip's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionLayerInfo {
    pub arn: String,
    pub layer: String,
    pub version: u64,
    pub code_size: u64,
}

/// `POST /v1/layers/{name}/versions`: a new version of a layer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishLayer {
    /// The layer's contents: a zip archive, base64-encoded (merged at `/opt`).
    pub zip_base64: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Runtimes it is for (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compatible_runtimes: Vec<String>,
}

/// `GET /v1/layers` (the newest version of each layer) and
/// `GET /v1/layers/{name}/versions` (newest first).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerVersionList {
    pub layers: Vec<LayerVersionInfo>,
}

/// A layer version as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerVersionInfo {
    pub layer: String,
    pub version: u64,
    /// `arn:aws:lambda:<region>:<account>:layer:<name>:<version>`: what functions name.
    pub arn: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default)]
    pub compatible_runtimes: Vec<String>,
    /// Hex SHA-256 of the zip.
    pub code_sha256: String,
    pub code_size: u64,
    pub unzipped_size: u64,
    /// RFC 3339.
    pub created_at: String,
}

/// `POST /v1/requirements`: the layer of a `requirements.txt` for a Python runtime, built
/// in a sandbox of that runtime or reused when the same requirements were built before.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRequirements {
    pub runtime: String,
    /// The text of the `requirements.txt`.
    pub requirements: String,
}

/// The answer of `POST /v1/requirements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequirementsLayer {
    pub layer: LayerVersionInfo,
    /// `false`: an existing build was reused (nothing was installed).
    pub built: bool,
    /// pip's output (empty when reused).
    #[serde(default)]
    pub output: String,
}

/// `POST /v1/requirements` with `Accept: text/event-stream` answers server-sent events:
/// any number of [`BUILD_OUTPUT_EVENT`]s while the build runs, then one
/// [`BUILD_RESULT_EVENT`] or [`BUILD_ERROR_EVENT`], and the stream ends.
/// An output event's data is a [`BuildOutput`].
pub const BUILD_OUTPUT_EVENT: &str = "output";
/// The event whose data is the [`RequirementsLayer`] of a build that succeeded (or reused).
pub const BUILD_RESULT_EVENT: &str = "result";
/// The event whose data is the [`BuildFailed`] of a build that failed.
pub const BUILD_ERROR_EVENT: &str = "error";

/// One line of a requirements build's output (pip's, or the platform's own note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOutput {
    pub line: String,
}

/// How a streamed requirements build failed: the HTTP status the same failure has without
/// a stream, and the `/v1` error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildFailed {
    pub status: u16,
    pub error: ErrorDetail,
}

/// `PUT /v1/functions/{name}/concurrency`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutConcurrency {
    pub reserved_concurrency: i64,
}

/// `PUT /v1/functions/{name}/provisioned/{qualifier}`: keep this many initialised
/// sandboxes ready for a published version or an alias.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutProvisioned {
    pub requested: i64,
}

/// A provisioned concurrency configuration and how far its sandboxes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedInfo {
    pub function: String,
    /// A published version's number or an alias.
    pub qualifier: String,
    /// The qualified ARN it applies to.
    pub function_arn: String,
    pub requested: u32,
    /// Initialised sandboxes (idle or running an invocation), at most `requested`.
    pub allocated: u32,
    pub available: u32,
    pub status: crate::provisioned::ProvisionedStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The version the sandboxes are for (an alias's current one), when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// RFC 3339.
    pub last_modified: String,
}

/// `GET /v1/functions/{name}/provisioned`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionedList {
    pub configs: Vec<ProvisionedInfo>,
}

/// `GET /v1/functions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionList {
    pub functions: Vec<FunctionInfo>,
}

/// `POST /v1/functions/{name}/versions`: publishes `$LATEST` as a new immutable version.
/// The body is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishVersion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `GET /v1/functions/{name}/versions`: `$LATEST` first, then the published versions, oldest
/// first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionList {
    pub versions: Vec<FunctionInfo>,
}

/// An alias's weighted routing: `weight` (0.0–1.0) of its invocations run `version` (a
/// published version's number) instead of the alias's own version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasRouting {
    pub version: String,
    pub weight: f64,
}

/// `POST /v1/functions/{name}/aliases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAlias {
    pub name: String,
    /// The version the alias names: `$LATEST` or a published version's number.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<AliasRouting>,
}

/// `PATCH /v1/functions/{name}/aliases/{alias}`: only the fields given change;
/// `"routing": null` removes the routing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAlias {
    /// `$LATEST` or a published version's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Absent: unchanged; `null` (`Some(None)`): removed; a value: replaced.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub routing: Option<Option<AliasRouting>>,
}

/// A field that is present (even as `null`) deserializes to `Some`; `default` covers an
/// absent one.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// An alias as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasInfo {
    pub function: String,
    pub name: String,
    /// The version the alias names: `$LATEST` or a published version's number.
    pub version: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<AliasRouting>,
    /// Increases with every change.
    pub revision: u64,
    /// RFC 3339.
    pub created_at: String,
}

/// `GET /v1/functions/{name}/aliases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasList {
    pub aliases: Vec<AliasInfo>,
}

/// `POST /v1/functions/{name}/url[?qualifier=ALIAS]`: a function URL for `$LATEST` (no
/// qualifier) or an alias.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateFunctionUrl {
    /// `NONE` (public) or `AWS_IAM` (SigV4-signed requests only).
    pub auth_type: UrlAuthType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
}

/// `PATCH /v1/functions/{name}/url[?qualifier=ALIAS]`: only the fields given change;
/// `"cors": null` removes CORS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateFunctionUrl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<UrlAuthType>,
    /// Absent: unchanged; `null` (`Some(None)`): removed; a value: replaced whole.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub cors: Option<Option<Cors>>,
}

/// A function URL as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionUrlInfo {
    /// The address to call: `http://<host>/url/<function>[:<alias>]/`, with the host the
    /// management request was sent to.
    pub url: String,
    pub function: String,
    /// The alias the URL invokes; absent for `$LATEST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The function's ARN, qualified with the alias if there is one.
    pub function_arn: String,
    pub auth_type: UrlAuthType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// Always `BUFFERED`: the whole response is returned at once.
    pub invoke_mode: String,
    /// RFC 3339 timestamps.
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /v1/functions/{name}/urls`: `$LATEST`'s URL and every alias's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionUrlList {
    pub urls: Vec<FunctionUrlInfo>,
}

/// `GET /v1/runtimes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeList {
    pub runtimes: Vec<RuntimeEntry>,
}

/// A runtime functions may name, and the packages its functions can import without bundling
/// them (boto3 and botocore for Python), with their versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeEntry {
    pub name: String,
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
}

/// `GET /v1/health`. Without a key only `status` is answered (liveness); with a valid key
/// the rest too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Generic pre-booted sandboxes ready to be specialised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_pool_idle: Option<usize>,
    /// Sandboxes alive (generic, idle and busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandboxes: Option<usize>,
    /// Invocations running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<usize>,
}

/// One invocation's record (`GET /v1/invocations/{request_id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub request_id: String,
    pub function: String,
    /// `$LATEST` or a published version's number.
    pub version: String,
    /// The key that invoked it; `None` for a public function URL.
    pub caller_key_id: Option<String>,
    /// `sync`, `event` (Lambda's `Event` invocation type) or `url`.
    pub trigger: String,
    /// RFC 3339 timestamps (UTC, milliseconds).
    pub started_at: String,
    pub ended_at: String,
    /// `success`, `function_error`, `timeout`, `throttled` or `crashed`.
    pub status: String,
    /// e.g. `ValueError`, `Sandbox.Timedout`, `Runtime.ExitError`, or a throttle's reason.
    pub error_type: Option<String>,
    pub cold_start: bool,
    /// How the sandbox that ran it was initialised: `on-demand`, `provisioned-concurrency`
    /// or `snap-start` (Lambda's `InitializationType`). Absent from older servers.
    #[serde(default = "on_demand")]
    pub init_type: String,
    /// Milliseconds.
    pub queue_wait_ms: f64,
    pub init_duration_ms: Option<f64>,
    pub duration_ms: f64,
    pub max_memory_used_mb: u64,
    pub memory_size_mb: u32,
    pub response_bytes: u64,
    /// The asynchronous event this invocation was an attempt of, and which attempt (1…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// `GET /v1/functions/{name}/invocations`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationList {
    pub invocations: Vec<InvocationRecord>,
}

/// The logs of one invocation: what it printed, framed by `START` … `END` … `REPORT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Increases with every log stored: the order they were written in.
    pub id: u64,
    pub request_id: String,
    pub function: String,
    /// When the invocation started (RFC 3339).
    pub started_at: String,
    /// Size of `text` in bytes.
    pub bytes: u64,
    pub text: String,
}

/// `GET /v1/functions/{name}/logs?format=json`: oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogList {
    pub entries: Vec<LogEntry>,
}

/// The server-sent event of `GET /v1/functions/{name}/logs?follow=true` that carries one
/// [`LogEntry`] (JSON) as its data; the event's `id` is the entry's.
pub const LOG_EVENT: &str = "log";
/// The server-sent event that says the follower fell behind and entries were skipped; its
/// data is a [`LogsSkipped`].
pub const LOGS_SKIPPED_EVENT: &str = "skipped";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsSkipped {
    pub skipped: u64,
}

/// The last server-sent event of a stream the server ended before the client did; its data
/// is a [`StreamEnded`].
pub const STREAM_ENDED_EVENT: &str = "end";

/// Why the server ended a log stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEndReason {
    /// The API key that opened it was revoked.
    KeyRevoked,
    /// It reached the server's maximum stream lifetime: reconnect for more.
    Lifetime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnded {
    pub reason: StreamEndReason,
    pub message: String,
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

/// An older server's records carry no init type: their sandboxes all started on demand.
fn on_demand() -> String {
    "on-demand".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_alias_tells_absent_null_and_given_routing_apart() {
        let parse = |s: &str| serde_json::from_str::<UpdateAlias>(s).map(|u| u.routing);
        assert_eq!(parse("{}").ok(), Some(None));
        assert_eq!(parse(r#"{"routing": null}"#).ok(), Some(Some(None)));
        let routing = AliasRouting {
            version: "2".into(),
            weight: 0.5,
        };
        assert_eq!(
            parse(r#"{"routing": {"version": "2", "weight": 0.5}}"#).ok(),
            Some(Some(Some(routing.clone())))
        );
        // And back: the client sends what the server reads.
        for routing in [None, Some(None), Some(Some(routing))] {
            let u = UpdateAlias {
                routing: routing.clone(),
                ..UpdateAlias::default()
            };
            let json = serde_json::to_string(&u).unwrap_or_default();
            assert_eq!(parse(&json).ok(), Some(routing), "{json}");
        }
    }

    #[test]
    fn update_function_url_tells_absent_null_and_given_cors_apart() {
        let parse = |s: &str| serde_json::from_str::<UpdateFunctionUrl>(s).map(|u| u.cors);
        assert_eq!(parse("{}").ok(), Some(None));
        assert_eq!(parse(r#"{"cors": null}"#).ok(), Some(Some(None)));
        let cors = Cors {
            allow_origins: vec!["*".into()],
            ..Cors::default()
        };
        assert_eq!(
            parse(r#"{"cors": {"allow_origins": ["*"]}}"#).ok(),
            Some(Some(Some(cors.clone())))
        );
        assert!(parse(r#"{"cors": {"AllowOrigins": ["*"]}}"#).is_err());
        for cors in [None, Some(None), Some(Some(cors))] {
            let u = UpdateFunctionUrl {
                auth_type: Some(UrlAuthType::AwsIam),
                cors: cors.clone(),
            };
            let json = serde_json::to_string(&u).unwrap_or_default();
            assert_eq!(parse(&json).ok(), Some(cors), "{json}");
        }
        let create: Result<CreateFunctionUrl, _> = serde_json::from_str(r#"{"auth_type": "none"}"#);
        assert!(create.is_err());
    }
}
