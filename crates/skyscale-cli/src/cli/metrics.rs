//! The `function metrics` command's arguments.

use clap::builder::NonEmptyStringValueParser;
use clap::Args;

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Start of the window: a duration before now (30s, 10m, 2h, 1d) or an RFC 3339 time;
    /// the server's default is the last hour.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub since: Option<String>,
}
