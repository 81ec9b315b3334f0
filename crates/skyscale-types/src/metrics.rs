//! `GET /v1/functions/{name}/metrics`: how a function did over a window of time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A function's invocations over a window, from the control plane's in-memory samples
/// (the last 10,000 invocations of each function, at most 24 h old), and its live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionMetrics {
    pub function: String,
    /// Start of the window (RFC 3339, UTC).
    pub since: String,
    /// End of the window: when the summary was made (RFC 3339, UTC).
    pub until: String,
    /// False when older samples inside the window had already been dropped (more than
    /// 10,000 invocations since `since`): the figures cover only the newest ones.
    pub complete: bool,
    /// Every invocation that ended in the window, throttled ones included.
    pub invocations: u64,
    pub successes: u64,
    /// The handler raised or the runtime failed to initialise.
    pub function_errors: u64,
    pub timeouts: u64,
    /// The sandbox died or could not be started.
    pub crashes: u64,
    /// Refused by a limit before they started.
    pub throttles: u64,
    /// Function errors, timeouts and crashes by error type (`ValueError`,
    /// `Sandbox.Timedout`, `Runtime.ExitError`, …).
    pub errors_by_type: BTreeMap<String, u64>,
    pub cold_starts: u64,
    /// Run time of the invocations that reached a sandbox, milliseconds.
    pub duration_ms: Option<Percentiles>,
    /// Cold starts: getting the sandbox ready, milliseconds.
    pub init_duration_ms: Option<Percentiles>,
    /// The highest peak memory of one invocation, MiB.
    pub max_memory_used_mb: Option<u64>,
    /// Invocations running now.
    pub concurrent_executions: u64,
    /// Idle sandboxes of the function now, ready for a warm start.
    pub warm_sandboxes: u64,
}

/// Exact percentiles (nearest rank) of a set of durations, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many durations.
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}
