//! The `key` and `audit` commands' arguments.

use clap::{Args, Subcommand, ValueEnum};

use super::EXIT_STATUS_HELP;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print it: its secret is shown this once (admin keys only).
    #[command(after_help = EXIT_STATUS_HELP)]
    Create(KeyCreateArgs),
    /// List API keys, revoked ones included; secrets are never shown.
    List,
    /// Revoke an API key: it is refused from the next request on. The last admin key
    /// cannot be revoked.
    #[command(after_help = EXIT_STATUS_HELP)]
    Revoke(KeyIdArg),
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyRole {
    /// Everything, including keys and the audit log.
    Admin,
    /// Create, deploy, configure, invoke and delete functions.
    Developer,
    /// Invoke functions, nothing else.
    Invoker,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Admin => "admin",
            KeyRole::Developer => "developer",
            KeyRole::Invoker => "invoker",
        }
    }
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// The key's role.
    #[arg(long, value_enum)]
    pub role: KeyRole,
    /// Limit the key to functions whose names match PATTERN ('*' matches any run of
    /// characters, e.g. 'team-a-*'); repeat for several. Without it: every function.
    /// Not for admin keys.
    #[arg(long = "functions", value_name = "PATTERN")]
    pub functions: Vec<String>,
    /// What the key is for.
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyIdArg {
    /// The key id (the part before the '.').
    pub id: String,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Show at most this many entries, newest first (default 100).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Show only entries at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
}
