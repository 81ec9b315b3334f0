//! What the control plane learns from every invocation, in one place: each finished (or
//! refused) invocation becomes one [`Invocation`], handed to [`ControlPlane::observe`],
//! which feeds the invocation records, the stored logs and the metrics.

use std::time::{Duration, SystemTime};

use skyscale_protocol::{ExitStatus, InitDone, InitFailure, InvokeStatus, EXIT_ERROR, TIMED_OUT};

use crate::{ControlPlane, CoreError, InvokeOutput};

/// How an invocation that ran ended, typed from the agent's report to the record. Lambda's
/// error type for it is [`Outcome::error_type`]; nothing maps error-type strings back to
/// an outcome, so a function's own `Sandbox.Timedout` stays a function error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The handler raised, or the runtime reported a failed init: its own error type.
    FunctionError {
        error_type: String,
    },
    /// The function (or its init) ran past its timeout.
    Timeout,
    /// The runtime or its sandbox died without answering.
    Crashed(Crash),
}

/// Why a sandbox's runtime died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// The runtime exited with a code or was killed by a signal, as the agent saw it.
    Exited(ExitStatus),
    /// The agent itself vanished (the sandbox was killed or died).
    Vanished,
    /// The sandbox's memory cgroup counted an OOM kill: the runtime (or, under gVisor, the
    /// whole sandbox) was killed for the function's memory limit.
    OutOfMemory,
}

/// The error type an out-of-memory crash is *recorded* with (records, logs, metrics). The
/// caller gets Lambda's `Runtime.ExitError` for it, as Lambda answers.
pub const OUT_OF_MEMORY: &str = "Runtime.OutOfMemory";

impl Outcome {
    /// The outcome the agent reported in a `Result` frame.
    pub(crate) fn of_result(status: InvokeStatus) -> Self {
        match status {
            InvokeStatus::Ok => Self::Success,
            InvokeStatus::Error { error_type } => Self::FunctionError {
                // The agent resolves it; fall back as it would.
                error_type: error_type
                    .unwrap_or_else(|| skyscale_protocol::UNKNOWN_ERROR.to_owned()),
            },
            InvokeStatus::Timeout => Self::Timeout,
            InvokeStatus::Crashed { exit } => Self::Crashed(Crash::Exited(exit)),
        }
    }

    /// The outcome of an invocation whose sandbox's init failed as `done` says.
    pub(crate) fn of_failed_init(done: &InitDone) -> Self {
        match done.failure {
            Some(InitFailure::Timeout) => Self::Timeout,
            Some(InitFailure::Crashed(exit)) => Self::Crashed(Crash::Exited(exit)),
            None => Self::FunctionError {
                error_type: done
                    .failure_type()
                    .unwrap_or(skyscale_protocol::UNKNOWN_ERROR)
                    .to_owned(),
            },
        }
    }

    /// Lambda's error type: the function's own, or the platform's for a timeout or crash.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Self::Success => None,
            Self::FunctionError { error_type } => Some(error_type),
            Self::Timeout => Some(TIMED_OUT),
            Self::Crashed(_) => Some(EXIT_ERROR),
        }
    }

    /// The error type its record gets: Lambda's, except that an out-of-memory crash says so.
    pub fn recorded_error_type(&self) -> Option<&str> {
        match self {
            Self::Crashed(Crash::OutOfMemory) => Some(OUT_OF_MEMORY),
            other => other.error_type(),
        }
    }

    /// Lambda's `X-Amz-Function-Error`: every failure is `Unhandled`.
    pub fn function_error(&self) -> Option<&'static str> {
        match self {
            Self::Success => None,
            _ => Some("Unhandled"),
        }
    }

    /// The status its record gets.
    pub fn status(&self) -> InvocationStatus {
        match self {
            Self::Success => InvocationStatus::Success,
            Self::FunctionError { .. } => InvocationStatus::FunctionError,
            Self::Timeout => InvocationStatus::Timeout,
            Self::Crashed(_) => InvocationStatus::Crashed,
        }
    }
}

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
    /// The asynchronous event it was an attempt of.
    pub event: Option<crate::EventAttempt>,
}

impl Invocation {
    /// A finished invocation.
    pub(crate) fn finished(head: InvocationHead, out: &InvokeOutput, ended_at: SystemTime) -> Self {
        Self {
            request_id: out.request_id.clone(),
            version: out.executed_version.clone(),
            status: out.outcome.status(),
            error_type: out.outcome.recorded_error_type().map(str::to_owned),
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
    pub event: Option<crate::EventAttempt>,
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
            event: self.event,
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

    fn failed_init(error_type: Option<&str>, failure: Option<InitFailure>) -> InitDone {
        InitDone {
            ok: false,
            error_type: error_type.map(str::to_owned),
            failure,
            duration_us: 0,
            logs: String::new(),
        }
    }

    /// The record's status comes from the typed outcome, never from the error type's
    /// spelling: a function's own `Sandbox.Timedout` is a function error.
    #[test]
    fn outcomes_are_not_read_from_error_type_strings() {
        for own in ["Sandbox.Timedout", "Runtime.ExitError"] {
            let o = Outcome::of_result(InvokeStatus::Error {
                error_type: Some(own.into()),
            });
            assert_eq!(o.status(), InvocationStatus::FunctionError);
            assert_eq!(o.error_type(), Some(own));
            assert_eq!(
                Outcome::of_failed_init(&failed_init(Some(own), None)).status(),
                InvocationStatus::FunctionError
            );
        }
        let timeout = Outcome::of_result(InvokeStatus::Timeout);
        assert_eq!(
            (timeout.status(), timeout.error_type()),
            (InvocationStatus::Timeout, Some(TIMED_OUT))
        );
        let killed = Outcome::of_result(InvokeStatus::Crashed {
            exit: ExitStatus::Signal(9),
        });
        assert_eq!(
            (killed.status(), killed.error_type()),
            (InvocationStatus::Crashed, Some(EXIT_ERROR))
        );
        let init_timeout = failed_init(None, Some(InitFailure::Timeout));
        assert_eq!(
            Outcome::of_failed_init(&init_timeout).status(),
            InvocationStatus::Timeout
        );
        let oom = Outcome::Crashed(Crash::OutOfMemory);
        assert_eq!(
            (oom.status(), oom.error_type(), oom.recorded_error_type()),
            (
                InvocationStatus::Crashed,
                Some(EXIT_ERROR),
                Some(OUT_OF_MEMORY)
            )
        );
        assert_eq!(killed.recorded_error_type(), Some(EXIT_ERROR));
        assert_eq!(Outcome::Success.function_error(), None);
        assert_eq!(
            Outcome::Crashed(Crash::Vanished).function_error(),
            Some("Unhandled")
        );
    }
}
