//! The arguments of `skyscale schedule …`.

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand, ValueEnum};

/// What a schedule does with the slots missed while the control plane was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MissedArg {
    /// Fire once, for the latest missed slot (the default).
    RunOnce,
    /// Fire none of them.
    Skip,
}

impl MissedArg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunOnce => "run-once",
            Self::Skip => "skip",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Invoke a function asynchronously on a cron, rate or at expression.
    Create(ScheduleCreateArgs),
    /// List the schedules of the functions the key may read.
    List,
    /// Show a schedule, with its last and next fire.
    Get(ScheduleNameArg),
    /// Change a schedule: the options given change.
    Update(ScheduleUpdateArgs),
    /// Stop firing (the slots that pass while paused are not caught up).
    Pause(ScheduleNameArg),
    /// Fire again, from the next slot on.
    Resume(ScheduleNameArg),
    /// Delete a schedule.
    Delete(ScheduleNameArg),
}

#[derive(Debug, Args)]
pub struct ScheduleNameArg {
    /// Schedule name.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ScheduleCreateArgs {
    /// Schedule name (letters, digits, '-', '_', '.'; at most 64).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub name: String,
    /// The function to invoke.
    #[arg(long)]
    pub function: String,
    /// A version's number or an alias ($LATEST when not given).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub qualifier: Option<String>,
    /// "cron(0 3 * * ? *)", "rate(5 minutes)" (also seconds, a Skyscale extension) or
    /// "at(2027-01-31T09:30:00)".
    #[arg(long)]
    pub expression: String,
    /// IANA time zone of cron and at times, e.g. Europe/Paris (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// The JSON event each fire sends (default: EventBridge's Scheduled Event document).
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// What to do with slots missed while the control plane was down.
    #[arg(long, value_enum)]
    pub missed: Option<MissedArg>,
}

#[derive(Debug, Args)]
pub struct ScheduleUpdateArgs {
    /// Schedule name.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub name: String,
    #[arg(long)]
    pub function: Option<String>,
    /// A version's number or an alias; "" for $LATEST.
    #[arg(long)]
    pub qualifier: Option<String>,
    /// A new expression (the schedule starts afresh from now).
    #[arg(long)]
    pub expression: Option<String>,
    #[arg(long)]
    pub timezone: Option<String>,
    /// The JSON event each fire sends.
    #[arg(long, value_name = "JSON", conflicts_with = "default_payload")]
    pub payload: Option<String>,
    /// Send EventBridge's Scheduled Event document again.
    #[arg(long)]
    pub default_payload: bool,
    #[arg(long, value_enum)]
    pub missed: Option<MissedArg>,
}
