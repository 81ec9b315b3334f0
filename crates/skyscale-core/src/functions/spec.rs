//! What callers ask of the function service, in the core's own terms: raw values that the
//! service validates (so every rule, and every message naming a field, lives in one place),
//! and the code as bytes. Each surface maps its own wire format onto these.

use std::collections::BTreeMap;

/// A new function.
#[derive(Debug, Clone, Default)]
pub struct FunctionSpec {
    pub name: String,
    /// A runtime name (`python3.11`, `provided.al2023`, …), resolved against those installed.
    pub runtime: String,
    /// Default: [`skyscale_types::Handler::DEFAULT`].
    pub handler: Option<String>,
    pub memory_mb: Option<i64>,
    pub timeout_s: Option<i64>,
    pub environment: BTreeMap<String, String>,
    pub description: Option<String>,
    /// The code package (a zip), or none yet: a function can be deployed later.
    pub code: Option<Vec<u8>>,
    /// Outbound network access (default: none).
    pub network: Option<bool>,
    /// Size of `/tmp` in MiB (default 512).
    pub ephemeral_storage_mb: Option<i64>,
    pub tags: BTreeMap<String, String>,
    /// Layer version ARNs, in order (at most five).
    pub layers: Vec<String>,
    /// Lambda's `SnapStart.ApplyOn`: `PublishedVersions` or `None` (the default).
    pub snap_start: Option<String>,
}

/// A change of a function's configuration: only what is given changes.
#[derive(Debug, Clone, Default)]
pub struct FunctionChanges {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub memory_mb: Option<i64>,
    pub timeout_s: Option<i64>,
    /// Replaces the whole environment when given.
    pub environment: Option<BTreeMap<String, String>>,
    pub description: Option<String>,
    pub network: Option<bool>,
    pub ephemeral_storage_mb: Option<i64>,
    /// Replaces the whole list of layers (version ARNs, in order) when given.
    pub layers: Option<Vec<String>>,
    /// Lambda's `SnapStart.ApplyOn`: `PublishedVersions` or `None`.
    pub snap_start: Option<String>,
}
