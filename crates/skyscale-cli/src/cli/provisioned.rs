//! The arguments of `skyscale function provisioned …`.

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ProvisionedCommand {
    /// Keep N initialised sandboxes ready for a published version or an alias (replaces
    /// its configuration); its invocations then start warm.
    Put(ProvisionedPutArgs),
    /// Show a version's or alias's configuration: requested, ready, status.
    Get(ProvisionedArg),
    /// List a function's configurations.
    List(ProvisionedFunctionArg),
    /// Delete a configuration: its sandboxes are destroyed.
    Delete(ProvisionedArg),
}

#[derive(Debug, Args)]
pub struct ProvisionedFunctionArg {
    /// Function name.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ProvisionedArg {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// A published version's number or an alias ($LATEST cannot be provisioned).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub qualifier: String,
}

#[derive(Debug, Args)]
pub struct ProvisionedPutArgs {
    #[command(flatten)]
    pub target: ProvisionedArg,
    /// Initialised sandboxes to keep ready (at least 1).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub count: i64,
}
