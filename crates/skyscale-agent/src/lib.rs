//! skyscale-agent: PID 1 inside a sandbox.
//!
//! It speaks agent frames ([`skyscale_protocol`]) with the control plane on its own stdin and
//! stdout, starts the function runtime on `Init`, hands it one `Invoke` at a time — over an
//! inherited pipe pair with the same frames ([`pipe`], used by the built-in Python runtime) or
//! over the Lambda Runtime API on loopback HTTP ([`http`], for any other runtime) — enforces
//! the deadline, captures its output and reports a `Result` per invocation.
//!
//! Threads (no async runtime, on purpose: the agent must stay small and start fast):
//! - main: start-up ([`agent`]), then one `poll(2)` loop and the state machine ([`machine`]):
//!   stdin, stdout, the runtime pipe and the runtime's stdout/stderr belong to it alone, so a
//!   warm invocation on the pipe never changes threads;
//! - reaper: `waitpid(-1)`, reports the runtime's exit ([`process`]);
//! - api-accept and one api-conn per connection: the Runtime API transport ([`http`]).
//!
//! Helper threads report to the main thread with [`Event`]s through [`wake`] (a channel plus a
//! wake-up pipe the main thread polls), so all decisions happen in one place and in one order.
//!
//! In a generic sandbox the control plane may name a runtime to pre-start ([`Config::prewarm`],
//! from `SKYSCALE_PREWARM`): the agent starts it right after `Hello` and hands it the `Init`
//! if the function's runtime would be indistinguishable from it ([`zygote`]).

pub mod agent;
pub mod control;
pub mod error;
pub mod frames;
pub mod http;
pub mod logs;
pub mod machine;
pub mod pipe;
pub mod process;
pub mod report;
pub mod wake;
pub mod zygote;

use std::net::SocketAddr;

use skyscale_protocol::{Prewarm, PREWARM_ENV};

pub use agent::run;
pub use error::AgentError;

/// Default address of the Runtime API inside a sandbox.
pub const DEFAULT_RUNTIME_API_ADDR: &str = "127.0.0.1:9001";
/// Environment variable that overrides [`DEFAULT_RUNTIME_API_ADDR`] (tests use `127.0.0.1:0`).
pub const RUNTIME_API_ADDR_ENV: &str = "SKYSCALE_AGENT_RUNTIME_API_ADDR";

/// Something a helper thread tells the main thread.
#[derive(Debug)]
pub enum Event {
    /// A Runtime API request waiting for an answer.
    Api(http::ApiRequest),
    /// The runtime process ended.
    RuntimeExited(process::ExitStatus),
}

/// The agent's settings, read once from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the Runtime API listens.
    pub runtime_api_addr: SocketAddr,
    /// The runtime to pre-start before `Init`, from [`PREWARM_ENV`] (JSON, see
    /// [`Prewarm`]); unset or empty: none.
    pub prewarm: Option<Prewarm>,
}

impl Config {
    /// Reads [`RUNTIME_API_ADDR_ENV`], defaulting to [`DEFAULT_RUNTIME_API_ADDR`], and
    /// [`PREWARM_ENV`].
    pub fn from_env() -> Result<Config, AgentError> {
        let raw = std::env::var(RUNTIME_API_ADDR_ENV)
            .unwrap_or_else(|_| DEFAULT_RUNTIME_API_ADDR.to_string());
        let runtime_api_addr = raw.parse().map_err(|_| AgentError::BadAddr(raw))?;
        let prewarm = match std::env::var(PREWARM_ENV) {
            Ok(raw) if !raw.is_empty() => Some(parse_prewarm(&raw)?),
            _ => None,
        };
        Ok(Config {
            runtime_api_addr,
            prewarm,
        })
    }
}

/// A [`Prewarm`] from its JSON; the command must name a program.
fn parse_prewarm(raw: &str) -> Result<Prewarm, AgentError> {
    let prewarm: Prewarm =
        serde_json::from_str(raw).map_err(|e| AgentError::BadPrewarm(e.to_string()))?;
    if prewarm.command.first().is_none_or(|p| p.is_empty()) {
        return Err(AgentError::BadPrewarm("the command is empty".to_string()));
    }
    Ok(prewarm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prewarm_parses_or_says_why_not() {
        let p = parse_prewarm(r#"{"command":["/usr/bin/python3","/b.py"],"env":[["LANG","C"]]}"#)
            .unwrap();
        assert_eq!(p.command, ["/usr/bin/python3", "/b.py"]);
        assert_eq!(p.env, [("LANG".to_string(), "C".to_string())]);
        assert!(parse_prewarm(r#"{"command":["/x"]}"#)
            .unwrap()
            .env
            .is_empty());
        for bad in ["[", r#"{"command":[]}"#, r#"{"command":[""]}"#, r#"["/x"]"#] {
            assert!(parse_prewarm(bad).is_err(), "{bad}");
        }
    }
}
