//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  failure: bad input, API or network error, or the invoked function returned an error
  2  invalid command line";

/// Manage and invoke functions on a Skyscale control plane.
#[derive(Debug, Parser)]
#[command(name = "skyscale", version, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// URL of the Skyscale control plane.
    #[arg(
        long,
        global = true,
        env = "SKYSCALE_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    pub endpoint: String,

    /// API key, `<id>.<secret>`.
    #[arg(long, global = true, env = "SKYSCALE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// The API's JSON.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that the control plane is up (needs no API key).
    Health,
    /// Create, deploy, invoke and manage functions.
    #[command(subcommand)]
    Function(FunctionCommand),
}

#[derive(Debug, Subcommand)]
pub enum FunctionCommand {
    /// Create a function, with its code when --path is given.
    #[command(after_help = EXIT_STATUS_HELP)]
    Create(CreateArgs),
    /// Upload new code for a function.
    #[command(after_help = EXIT_STATUS_HELP)]
    Deploy(DeployArgs),
    /// Invoke a function and print its result.
    #[command(after_help = EXIT_STATUS_HELP)]
    Invoke(InvokeArgs),
    /// List functions.
    List,
    /// Show one function.
    Get(NameArg),
    /// Change a function's configuration; only the options given change.
    #[command(after_help = EXIT_STATUS_HELP)]
    Update(UpdateArgs),
    /// Delete a function.
    Delete(NameArg),
    /// Set or clear a function's reserved concurrency (0 disables the function).
    #[command(after_help = EXIT_STATUS_HELP)]
    Concurrency(ConcurrencyArgs),
}

#[derive(Debug, Args)]
pub struct ConcurrencyArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Most invocations running at once; 0 disables the function.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        required_unless_present = "clear",
        conflicts_with = "clear"
    )]
    pub reserved: Option<i64>,
    /// Remove the reservation (the host-wide limit still applies).
    #[arg(long)]
    pub clear: bool,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Function name.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Function name: 1-64 letters, digits, '-' and '_'.
    #[arg(long)]
    pub name: String,
    /// Runtime, e.g. python3.11.
    #[arg(long)]
    pub runtime: String,
    /// Handler, `module.function` (the server's default is handler.handler).
    #[arg(long)]
    pub handler: Option<String>,
    /// Memory size in MB.
    #[arg(long, value_name = "MB", allow_negative_numbers = true)]
    pub memory: Option<i64>,
    /// Timeout in seconds.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub timeout: Option<i64>,
    /// Environment variable; repeat for several.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Code: a directory (zipped) or a .zip file. Without it the function has no code yet.
    #[arg(long, value_name = "DIR|ZIP")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Code: a directory (zipped) or a .zip file.
    #[arg(long, value_name = "DIR|ZIP", default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Event JSON (default `{}`).
    #[arg(long, value_name = "JSON", conflicts_with = "payload_file")]
    pub payload: Option<String>,
    /// File holding the event JSON; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub payload_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// New runtime.
    #[arg(long)]
    pub runtime: Option<String>,
    /// New handler, `module.function`.
    #[arg(long)]
    pub handler: Option<String>,
    /// New memory size in MB.
    #[arg(long, value_name = "MB", allow_negative_numbers = true)]
    pub memory: Option<i64>,
    /// New timeout in seconds.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub timeout: Option<i64>,
    /// Environment variable; when any is given, they replace the whole environment.
    #[arg(
        long = "env",
        value_name = "KEY=VALUE",
        value_parser = parse_env_pair,
        conflicts_with = "clear_env"
    )]
    pub env: Vec<(String, String)>,
    /// Remove every environment variable.
    #[arg(long)]
    pub clear_env: bool,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
}

/// Parses `KEY=VALUE`; the value may itself contain `=` and may be empty.
pub fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        Some(_) => Err("expected KEY=VALUE, but the key is empty".to_owned()),
        None => Err("expected KEY=VALUE, but there is no '='".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env_pair("A=1"), Ok(("A".into(), "1".into())));
        assert_eq!(
            parse_env_pair("URL=postgres://h/db?x=1"),
            Ok(("URL".into(), "postgres://h/db?x=1".into()))
        );
        assert_eq!(
            parse_env_pair("EMPTY="),
            Ok(("EMPTY".into(), String::new()))
        );
        assert_eq!(
            parse_env_pair("NOEQUALS").unwrap_err(),
            "expected KEY=VALUE, but there is no '='"
        );
        assert_eq!(
            parse_env_pair("=v").unwrap_err(),
            "expected KEY=VALUE, but the key is empty"
        );
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = Cli::try_parse_from([
            "skyscale",
            "function",
            "list",
            "--output",
            "json",
            "--endpoint",
            "http://h:1",
        ])
        .unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.endpoint, "http://h:1");
    }

    #[test]
    fn repeated_env_and_clear_env_conflict() {
        let cli = Cli::try_parse_from([
            "skyscale",
            "function",
            "create",
            "--name",
            "f",
            "--runtime",
            "python3.11",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
        ])
        .unwrap();
        let Command::Function(FunctionCommand::Create(args)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(
            args.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );

        let err = Cli::try_parse_from([
            "skyscale",
            "function",
            "update",
            "--name",
            "f",
            "--env",
            "A=1",
            "--clear-env",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn payload_and_payload_file_conflict() {
        let err = Cli::try_parse_from([
            "skyscale",
            "function",
            "invoke",
            "--name",
            "f",
            "--payload",
            "{}",
            "--payload-file",
            "x.json",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
