//! What the control plane learns from every invocation, in one place: each finished (or
//! refused) invocation becomes one [`Invocation`], handed to [`ControlPlane::observe`],
//! which feeds the invocation records, the stored logs and the metrics.

use std::time::{Duration, SystemTime};

use crate::{ControlPlane, CoreError, InvokeOutput};

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvocationStatus {
    Success,
    /// The handler raised, or the runtime failed to initialise.
    FunctionError,
    /// The function ran past its timeout.
    Timeout,
    /// Refused before it started: a concurrency, host or rate limit.
    Throttled,
    /// The sandbox died (memory limit, the runtime exiting) or could not be started.
    Crashed,
}

impl InvocationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::FunctionError => "function_error",
            Self::Timeout => "timeout",
            Self::Throttled => "throttled",
            Self::Crashed => "crashed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Success,
            Self::FunctionError,
            Self::Timeout,
            Self::Throttled,
            Self::Crashed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// The status of a finished invocation, from its error type.
    pub fn of(out: &InvokeOutput) -> Self {
        match (out.function_error, out.error_type.as_deref()) {
            (None, _) => Self::Success,
            (Some(_), Some("Sandbox.Timedout")) => Self::Timeout,
            (Some(_), Some("Runtime.ExitError")) => Self::Crashed,
            (Some(_), _) => Self::FunctionError,
        }
    }
}

/// How the invocation reached the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// A synchronous call on `/v1` or the Lambda API.
    #[default]
    Sync,
    /// Lambda's `Event` invocation type, run in the background.
    Event,
    /// A request to a function URL.
    Url,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Event => "event",
            Self::Url => "url",
        }
    }
}

/// One invocation, as recorded.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub function: String,
    /// `$LATEST` or a published version's number.
    pub version: String,
    /// The key that invoked it; `None` for a public function URL.
    pub caller: Option<String>,
    pub trigger: Trigger,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
    pub status: InvocationStatus,
    /// e.g. `ValueError`, `Sandbox.Timedout`, `Runtime.ExitError`, or the throttle's reason.
    pub error_type: Option<String>,
    pub cold_start: bool,
    /// From the request's acceptance until the control plane asked for a sandbox (an
    /// `Event` invocation's time in the background queue; a lookup for a synchronous one).
    pub queue_wait: Duration,
    /// Cold starts: getting a sandbox ready.
    pub init_duration: Option<Duration>,
    /// Running the handler.
    pub duration: Duration,
    /// Peak memory of the sandbox's processes during the invocation, MiB.
    pub max_memory_used_mb: u64,
    pub memory_size_mb: u32,
    pub response_bytes: u64,
    /// The invocation's framed log (`START` … `REPORT`); empty when it never started.
    pub logs: String,
}

impl Invocation {
    /// A finished invocation.
    pub(crate) fn finished(head: InvocationHead, out: &InvokeOutput, ended_at: SystemTime) -> Self {
        Self {
            request_id: out.request_id.clone(),
            version: out.executed_version.clone(),
            status: InvocationStatus::of(out),
            error_type: out.error_type.clone(),
            cold_start: out.cold_start,
            init_duration: out.init_duration,
            duration: out.duration,
            max_memory_used_mb: out.max_memory_used_mb,
            response_bytes: out.body.len() as u64,
            logs: out.logs.clone(),
            ended_at,
            ..head.into_invocation()
        }
    }

    /// An invocation that never ran: throttled, or its sandbox could not be started.
    pub(crate) fn refused(head: InvocationHead, error: &CoreError, ended_at: SystemTime) -> Self {
        let (status, error_type) = match error {
            CoreError::TooManyRequests { limit, .. } => {
                (InvocationStatus::Throttled, limit.reason().to_owned())
            }
            other => (InvocationStatus::Crashed, other.code().to_owned()),
        };
        Self {
            status,
            error_type: Some(error_type),
            ended_at,
            ..head.into_invocation()
        }
    }
}

/// What is known about an invocation before it runs.
#[derive(Debug, Clone)]
pub(crate) struct InvocationHead {
    pub request_id: String,
    pub function: String,
    pub version: String,
    pub caller: Option<String>,
    pub trigger: Trigger,
    pub started_at: SystemTime,
    pub queue_wait: Duration,
    pub memory_size_mb: u32,
}

impl InvocationHead {
    fn into_invocation(self) -> Invocation {
        Invocation {
            request_id: self.request_id,
            function: self.function,
            version: self.version,
            caller: self.caller,
            trigger: self.trigger,
            started_at: self.started_at,
            ended_at: self.started_at,
            status: InvocationStatus::Success,
            error_type: None,
            cold_start: false,
            queue_wait: self.queue_wait,
            init_duration: None,
            duration: Duration::ZERO,
            max_memory_used_mb: 0,
            memory_size_mb: self.memory_size_mb,
            response_bytes: 0,
            logs: String::new(),
        }
    }
}

impl ControlPlane {
    /// Takes note of one invocation. Never fails and never blocks the caller: whatever
    /// is slow happens in the background.
    pub(crate) fn observe(&self, inv: Invocation) {
        // Metrics first: they only borrow it (a short lock, no allocation).
        self.metrics.record(&inv);
        tracing::debug!(
            request_id = %inv.request_id,
            function = %inv.function,
            status = inv.status.as_str(),
            "invocation observed"
        );
        // Then the record and its logs, to the background writer: never waits.
        self.records.submit(inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in [
            InvocationStatus::Success,
            InvocationStatus::FunctionError,
            InvocationStatus::Timeout,
            InvocationStatus::Throttled,
            InvocationStatus::Crashed,
        ] {
            assert_eq!(InvocationStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(InvocationStatus::parse("nope"), None);
    }
}
