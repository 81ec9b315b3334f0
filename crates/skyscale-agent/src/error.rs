//! The one error type of the agent.

use std::io;

use skyscale_protocol::ProtocolError;

/// Everything that stops the agent. Failures of the *runtime* (bad command, crash, timeout)
/// are not errors here: they are reported to the control plane as frames.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Reading or writing the control channel (stdin/stdout) failed.
    #[error("control channel: {0}")]
    Protocol(#[from] ProtocolError),
    /// The control plane sent a frame that makes no sense in the current state.
    #[error("unexpected {frame} frame while {state}")]
    UnexpectedFrame {
        frame: &'static str,
        state: &'static str,
    },
    /// `SKYSCALE_AGENT_RUNTIME_API_ADDR` is not a socket address.
    #[error("invalid SKYSCALE_AGENT_RUNTIME_API_ADDR {0:?}: expected host:port")]
    BadAddr(String),
    /// `SKYSCALE_PREWARM` is not a JSON `Prewarm` with a command.
    #[error("invalid SKYSCALE_PREWARM: {0}")]
    BadPrewarm(String),
    /// The Runtime API listener could not be bound.
    #[error("bind runtime api on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    /// A helper thread could not be started.
    #[error("start {name} thread: {source}")]
    Thread {
        name: &'static str,
        source: io::Error,
    },
    /// Other local I/O failed (duplicating stdout, setting up pipes).
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

impl AgentError {
    /// Wraps an I/O error with a short description of what was being done.
    pub fn io(what: &'static str) -> impl FnOnce(io::Error) -> AgentError {
        move |source| AgentError::Io { what, source }
    }
}

/// Starts a named thread, turning a failure into [`AgentError::Thread`].
pub fn spawn_thread<F>(name: &'static str, f: F) -> Result<(), AgentError>
where
    F: FnOnce() + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(drop)
        .map_err(|source| AgentError::Thread { name, source })
}
