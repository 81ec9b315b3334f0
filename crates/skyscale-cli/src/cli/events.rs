//! The arguments of the asynchronous invocation commands: `function events`, `function
//! event`, `function redrive` and `function event-config`.

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand, ValueEnum};

/// Which events to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventStatusArg {
    Queued,
    Retrying,
    Dead,
}

impl EventStatusArg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
        }
    }
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Only events in this state (all when not given).
    #[arg(long, value_enum)]
    pub status: Option<EventStatusArg>,
    /// At most this many (server default 100, at most 1000).
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct EventArgs {
    /// The event's id (the id an asynchronous invoke answered).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub id: String,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["id", "all"]))]
pub struct RedriveArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// The dead letter to send back to the queue.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub id: Option<String>,
    /// Every dead letter of the function.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum EventConfigCommand {
    /// Show the asynchronous invocation settings of a function (or version, or alias).
    Get(EventConfigTarget),
    /// Set the asynchronous invocation settings, replacing what was set.
    Put(EventConfigPutArgs),
    /// Remove the settings (the defaults apply again).
    Delete(EventConfigTarget),
}

#[derive(Debug, Args)]
pub struct EventConfigTarget {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// A version's number or an alias ($LATEST when not given).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub qualifier: Option<String>,
}

#[derive(Debug, Args)]
pub struct EventConfigPutArgs {
    #[command(flatten)]
    pub target: EventConfigTarget,
    /// Retries after a failed attempt, 0 to 2 (default 2).
    #[arg(long, allow_negative_numbers = true)]
    pub max_retries: Option<i64>,
    /// The oldest an event may get before it is given up on, 60 to 21600 seconds (default
    /// 21600).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub max_age: Option<i64>,
    /// The function (name or ARN) that receives the record of each successful event.
    #[arg(long, value_name = "FUNCTION")]
    pub on_success: Option<String>,
    /// The function (name or ARN) that receives the record of each failed event (else it
    /// becomes a dead letter).
    #[arg(long, value_name = "FUNCTION")]
    pub on_failure: Option<String>,
}
