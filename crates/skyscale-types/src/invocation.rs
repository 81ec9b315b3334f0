//! How an invocation reached the control plane and how it ended: the two enums every
//! record, metric and API answer about an invocation is keyed by.

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

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Sync, Self::Event, Self::Url]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// How the sandbox that ran an invocation was initialised (Lambda's `InitializationType`,
/// also its `AWS_LAMBDA_INITIALIZATION_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InitType {
    /// Started for an invocation that found no warm sandbox.
    #[default]
    OnDemand,
    /// Initialised ahead of any invocation and kept ready by a provisioned concurrency
    /// configuration.
    ProvisionedConcurrency,
    /// Restored from a snapshot taken after the function's init (SnapStart).
    SnapStart,
}

impl InitType {
    /// Lambda's words: `on-demand`, `provisioned-concurrency`, `snap-start`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::ProvisionedConcurrency => "provisioned-concurrency",
            Self::SnapStart => "snap-start",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::OnDemand,
            Self::ProvisionedConcurrency,
            Self::SnapStart,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_triggers_round_trip() {
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
        for t in [Trigger::Sync, Trigger::Event, Trigger::Url] {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
        }
        assert_eq!(Trigger::parse("nope"), None);
        for t in [
            InitType::OnDemand,
            InitType::ProvisionedConcurrency,
            InitType::SnapStart,
        ] {
            assert_eq!(InitType::parse(t.as_str()), Some(t));
        }
        assert_eq!(InitType::parse("nope"), None);
    }
}
