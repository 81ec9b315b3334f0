//! The `function invocations`, `function invocation` and `function logs` arguments.

use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct InvocationsArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Only invocations that ended this way.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Only invocations that started since: a duration before now (30s, 10m, 2h, 7d) or an
    /// RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Show at most this many, newest first (default 100).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Success,
    /// The handler raised, or the runtime failed to initialise.
    FunctionError,
    Timeout,
    /// Refused by a concurrency or host limit before it started.
    Throttled,
    /// The sandbox died or could not be started.
    Crashed,
}

impl StatusArg {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusArg::Success => "success",
            StatusArg::FunctionError => "function_error",
            StatusArg::Timeout => "timeout",
            StatusArg::Throttled => "throttled",
            StatusArg::Crashed => "crashed",
        }
    }
}

#[derive(Debug, Args)]
pub struct InvocationArgs {
    /// The request id an invocation answered with (x-skyscale-request-id).
    #[arg(long)]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Keep printing new logs as invocations finish, until interrupted (Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    /// Only invocations that started since: a duration before now (30s, 10m, 2h, 7d) or an
    /// RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only this invocation's logs.
    #[arg(long)]
    pub request_id: Option<String>,
    /// The logs of at most this many invocations, the newest (default 100).
    #[arg(long)]
    pub limit: Option<usize>,
}
