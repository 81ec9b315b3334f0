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
    }
}
