//! What the control plane learns from every invocation, in one place: each finished (or
//! refused) invocation becomes one [`Invocation`], handed to [`ControlPlane::observe`],
//! which feeds the invocation records, the stored logs and the metrics.

use std::time::{Duration, SystemTime};

use skyscale_protocol::{ExitStatus, InitDone, InitFailure, InvokeStatus, EXIT_ERROR, TIMED_OUT};
use skyscale_store::InvocationRecord;
use skyscale_types::invocation::{InvocationStatus, Trigger};

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

/// One invocation as observed: its record and its framed log (`START` … `REPORT`; empty
/// when it never started).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub record: InvocationRecord,
    pub logs: String,
}

impl Invocation {
    /// A finished invocation.
    pub(crate) fn finished(head: InvocationHead, out: &InvokeOutput, ended_at: SystemTime) -> Self {
        Self {
            record: InvocationRecord {
                request_id: out.request_id.clone(),
                version: out.executed_version.clone(),
                status: out.outcome.status(),
                error_type: out.outcome.recorded_error_type().map(str::to_owned),
                cold_start: out.cold_start,
                init_type: out.init_type,
                init_duration: out.init_duration,
                duration: out.duration,
                max_memory_used_mb: out.max_memory_used_mb,
                response_bytes: out.body.len() as u64,
                ended_at,
                ..head.into_record()
            },
            logs: out.logs.clone(),
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
            record: InvocationRecord {
                status,
                error_type: Some(error_type),
                ended_at,
                ..head.into_record()
            },
            logs: String::new(),
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
    fn into_record(self) -> InvocationRecord {
        InvocationRecord {
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
            init_type: Default::default(),
            queue_wait: self.queue_wait,
            init_duration: None,
            duration: Duration::ZERO,
            max_memory_used_mb: 0,
            memory_size_mb: self.memory_size_mb,
            response_bytes: 0,
            event: self.event.map(|e| (e.id, e.attempt)),
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
            request_id = %inv.record.request_id,
            function = %inv.record.function,
            status = inv.record.status.as_str(),
            "invocation observed"
        );
        // Then the record and its logs, to the background writer: never waits.
        self.records.submit(inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
