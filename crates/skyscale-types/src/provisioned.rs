//! Provisioned concurrency: the state of a configuration (Lambda's
//! `ProvisionedConcurrencyStatusEnum`), shared by the core, `/v1` and the CLI.

use serde::{Deserialize, Serialize};

/// How far the sandboxes a provisioned concurrency configuration asks for are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProvisionedStatus {
    /// Fewer initialised sandboxes than requested, and none failed to initialise since.
    InProgress,
    /// As many initialised sandboxes as requested.
    Ready,
    /// Initialising failed (the reason says how); the keeper tries again with a backoff.
    Failed,
}

impl ProvisionedStatus {
    /// Lambda's words: `IN_PROGRESS`, `READY`, `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Ready => "READY",
            Self::Failed => "FAILED",
        }
    }
}

impl std::fmt::Display for ProvisionedStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_lambdas_words_on_the_wire() {
        for s in [
            ProvisionedStatus::InProgress,
            ProvisionedStatus::Ready,
            ProvisionedStatus::Failed,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<ProvisionedStatus>(&json).unwrap(), s);
        }
    }
}
