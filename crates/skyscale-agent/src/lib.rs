//! skyscale-agent: PID 1 inside a sandbox.
//!
//! It speaks agent frames ([`skyscale_protocol`]) with the control plane on its own stdin and
//! stdout, starts the function runtime on `Init`, serves the Lambda Runtime API to it on
//! loopback, hands it one `Invoke` at a time, enforces the deadline, captures its output and
//! reports a `Result` per invocation.
//!
//! Threads (no async runtime, on purpose: the agent must stay small and start fast):
//! - main: start-up ([`agent`]), then the state machine ([`machine`]); the only writer of stdout;
//! - control-in: reads frames from stdin;
//! - api-accept and one api-conn per connection: the Runtime API transport ([`http`]);
//! - reaper: `waitpid(-1)`, reports the runtime's exit ([`process`]);
//! - log-pump: drains the runtime's stdout and stderr ([`logs`]).
//!
//! Every helper thread reports to the main thread through one channel of [`Event`]s, so all
//! decisions happen in one place and in one order.

pub mod agent;
pub mod error;
pub mod http;
pub mod logs;
pub mod machine;
pub mod process;
pub mod report;

use std::net::SocketAddr;

use skyscale_protocol::{Frame, ProtocolError};

pub use agent::run;
pub use error::AgentError;

/// Default address of the Runtime API inside a sandbox.
pub const DEFAULT_RUNTIME_API_ADDR: &str = "127.0.0.1:9001";
/// Environment variable that overrides [`DEFAULT_RUNTIME_API_ADDR`] (tests use `127.0.0.1:0`).
pub const RUNTIME_API_ADDR_ENV: &str = "SKYSCALE_AGENT_RUNTIME_API_ADDR";

/// Something the main thread must react to.
#[derive(Debug)]
pub enum Event {
    /// A frame from the control plane.
    Frame(Frame),
    /// The control channel reached end of file (`None`) or failed.
    ControlClosed(Option<ProtocolError>),
    /// A Runtime API request waiting for an answer.
    Api(http::ApiRequest),
    /// The runtime process ended.
    RuntimeExited(process::ExitStatus),
    /// The runtime printed something since the last cut of its output.
    Output,
}

/// The agent's settings, read once from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the Runtime API listens.
    pub runtime_api_addr: SocketAddr,
}

impl Config {
    /// Reads [`RUNTIME_API_ADDR_ENV`], defaulting to [`DEFAULT_RUNTIME_API_ADDR`].
    pub fn from_env() -> Result<Config, AgentError> {
        let raw = std::env::var(RUNTIME_API_ADDR_ENV)
            .unwrap_or_else(|_| DEFAULT_RUNTIME_API_ADDR.to_string());
        let runtime_api_addr = raw.parse().map_err(|_| AgentError::BadAddr(raw))?;
        Ok(Config { runtime_api_addr })
    }
}
