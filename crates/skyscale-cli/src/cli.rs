//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod access;
mod events;
mod invocations;
mod layers;
mod metrics;
mod provisioned;
mod schedules;

pub use access::{AuditArgs, KeyCommand, KeyCreateArgs, KeyIdArg};
pub use events::{
    EventArgs, EventConfigCommand, EventConfigPutArgs, EventConfigTarget, EventsArgs, RedriveArgs,
};
pub use invocations::{InvocationArgs, InvocationsArgs, LogsArgs};
pub use layers::LayerCommand;
pub use metrics::MetricsArgs;
pub use provisioned::ProvisionedCommand;
pub use schedules::ScheduleCommand;

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
    /// Name versions of a function, optionally splitting invocations between two.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// The runtimes functions may use, and the packages they bring (boto3 for Python).
    #[command(subcommand)]
    Runtime(RuntimeCommand),
    /// Publish, list and delete layers: code shared by functions, merged at /opt.
    #[command(subcommand)]
    Layer(LayerCommand),
    /// Create, list and revoke API keys (admin keys only).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Show the audit log of management actions, newest first (admin keys only).
    #[command(after_help = EXIT_STATUS_HELP)]
    Audit(AuditArgs),
    /// Invoke functions on cron, rate or at expressions (EventBridge's syntax).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// The cluster: workers and API nodes (admin keys only).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the workers (generation, lease age, sandboxes, load) and the API nodes.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// List the runtimes and the versions of the packages each brings.
    List,
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
    /// Publish the function's current code and configuration as an immutable version.
    #[command(after_help = EXIT_STATUS_HELP)]
    Publish(PublishArgs),
    /// List a function's versions: $LATEST, then the published ones.
    Versions(NameArg),
    /// Give a function an HTTP address (a function URL), public or SigV4-signed.
    #[command(subcommand)]
    Url(UrlCommand),
    /// List a function's invocations, newest first: status, error type, cold start, init
    /// and run time, memory.
    #[command(after_help = EXIT_STATUS_HELP)]
    Invocations(InvocationsArgs),
    /// Show one invocation's record by its request id.
    #[command(after_help = EXIT_STATUS_HELP)]
    Invocation(InvocationArgs),
    /// Print a function's logs (START … END … REPORT per invocation); --follow keeps
    /// printing new ones.
    #[command(after_help = EXIT_STATUS_HELP)]
    Logs(LogsArgs),
    /// Show a function's invocations, errors, throttles, cold starts and duration
    /// percentiles over a window, and how many sandboxes it has now.
    #[command(after_help = EXIT_STATUS_HELP)]
    Metrics(MetricsArgs),
    /// List a function's asynchronous events (queued, retrying, dead letters): id, age,
    /// attempts, next attempt, last error.
    #[command(after_help = EXIT_STATUS_HELP)]
    Events(EventsArgs),
    /// Show one asynchronous event (a dead letter with its invocation record).
    #[command(after_help = EXIT_STATUS_HELP)]
    Event(EventArgs),
    /// Send a function's dead letters (one, or all) back to the queue.
    #[command(after_help = EXIT_STATUS_HELP)]
    Redrive(RedriveArgs),
    /// Asynchronous invocation settings: retries, maximum event age, destinations.
    #[command(subcommand)]
    EventConfig(EventConfigCommand),
    /// Provisioned concurrency: initialised sandboxes kept ready for a version or alias.
    #[command(subcommand, after_help = EXIT_STATUS_HELP)]
    Provisioned(ProvisionedCommand),
}

#[derive(Debug, Subcommand)]
pub enum UrlCommand {
    /// Create the function URL of $LATEST or an alias and print its address.
    #[command(after_help = EXIT_STATUS_HELP)]
    Create(UrlCreateArgs),
    /// Change a function URL; only the options given change, and --cors-* options replace
    /// the whole CORS configuration.
    #[command(after_help = EXIT_STATUS_HELP)]
    Update(UrlUpdateArgs),
    /// Show one function URL.
    Get(UrlArg),
    /// Delete a function URL: its address answers 404 from then on.
    Delete(UrlArg),
    /// List a function's URLs ($LATEST's and its aliases').
    List(NameArg),
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Create an alias for $LATEST or a published version.
    #[command(after_help = EXIT_STATUS_HELP)]
    Create(AliasCreateArgs),
    /// Change an alias; only the options given change.
    #[command(after_help = EXIT_STATUS_HELP)]
    Update(AliasUpdateArgs),
    /// List a function's aliases.
    List(FunctionArg),
    /// Show one alias.
    Get(AliasArg),
    /// Delete an alias (the version it names stays).
    Delete(AliasArg),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Description of the version.
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct FunctionArg {
    /// Function name.
    #[arg(long)]
    pub function: String,
}

#[derive(Debug, Args)]
pub struct AliasArg {
    /// Function name.
    #[arg(long)]
    pub function: String,
    /// Alias name.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AliasCreateArgs {
    /// Function name.
    #[arg(long)]
    pub function: String,
    /// Alias name: 1-128 letters, digits, '-' and '_', not only digits.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub name: String,
    /// The version the alias names: $LATEST or a published version's number.
    #[arg(long)]
    pub version: String,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Send a share of the invocations to another version, e.g. 2=0.1 (10% to version 2).
    #[arg(long, value_name = "VERSION=WEIGHT", value_parser = parse_routing)]
    pub routing: Option<(String, f64)>,
}

#[derive(Debug, Args)]
pub struct AliasUpdateArgs {
    /// Function name.
    #[arg(long)]
    pub function: String,
    /// Alias name.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub name: String,
    /// The version the alias names from now on.
    #[arg(long)]
    pub version: Option<String>,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// Send a share of the invocations to another version, e.g. 2=0.1 (10% to version 2).
    #[arg(
        long,
        value_name = "VERSION=WEIGHT",
        value_parser = parse_routing,
        conflicts_with = "no_routing"
    )]
    pub routing: Option<(String, f64)>,
    /// Remove the routing: every invocation runs the alias's version.
    #[arg(long)]
    pub no_routing: bool,
}

#[derive(Debug, Args)]
pub struct UrlArg {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// The alias whose URL this is; without it, $LATEST's.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub qualifier: Option<String>,
}

/// Who may call a function URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UrlAuth {
    /// Public: anyone who can reach the control plane.
    None,
    /// Only requests SigV4-signed with an API key (service `lambda`).
    AwsIam,
}

/// CORS settings; any of them turns CORS on.
#[derive(Debug, Args)]
#[group(id = "cors", multiple = true)]
pub struct CorsArgs {
    /// Origin that browsers may call the URL from, e.g. https://example.com, or *; repeat
    /// for several.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub origins: Vec<String>,
    /// Method allowed cross-origin: GET, PUT, HEAD, POST, PATCH, DELETE or *; repeat for
    /// several.
    #[arg(long = "cors-method", value_name = "METHOD")]
    pub methods: Vec<String>,
    /// Request header allowed cross-origin, or *; repeat for several.
    #[arg(long = "cors-header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Response header that browsers may show to scripts; repeat for several.
    #[arg(long = "cors-expose-header", value_name = "HEADER")]
    pub expose_headers: Vec<String>,
    /// How long browsers may cache a preflight answer (at most 86400).
    #[arg(long = "cors-max-age", value_name = "SECONDS")]
    pub max_age: Option<u32>,
    /// Allow cookies and other credentials on cross-origin requests.
    #[arg(long = "cors-credentials")]
    pub credentials: bool,
}

#[derive(Debug, Args)]
pub struct UrlCreateArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// The alias the URL invokes; without it, $LATEST.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub qualifier: Option<String>,
    /// Who may call the URL.
    #[arg(long, value_enum, default_value_t = UrlAuth::None)]
    pub auth: UrlAuth,
    #[command(flatten)]
    pub cors: CorsArgs,
}

#[derive(Debug, Args)]
pub struct UrlUpdateArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// The alias whose URL this is; without it, $LATEST's.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub qualifier: Option<String>,
    /// Who may call the URL from now on.
    #[arg(long, value_enum)]
    pub auth: Option<UrlAuth>,
    #[command(flatten)]
    pub cors: CorsArgs,
    /// Turn CORS off.
    #[arg(long, conflicts_with = "cors")]
    pub no_cors: bool,
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
    /// Give the function's sandboxes outbound network access (never to the host itself).
    #[arg(long)]
    pub network: bool,
    /// Size of /tmp in MB (512-10240; default 512).
    #[arg(long, value_name = "MB", allow_negative_numbers = true)]
    pub ephemeral_storage: Option<i64>,
    /// A layer version ARN (see `skyscale layer list`); repeat for several (at most 5), in
    /// order: a later layer wins on the same path.
    #[arg(long = "layer", value_name = "ARN")]
    pub layers: Vec<String>,
    /// SnapStart: `PublishedVersions` starts sandboxes from a snapshot taken after init
    /// (published versions, and $LATEST too); `None` (the default) does not.
    #[arg(long, value_name = "APPLY_ON")]
    pub snap_start: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Code: a directory (zipped) or a .zip file.
    #[arg(long, value_name = "DIR|ZIP", default_value = ".")]
    pub path: PathBuf,
    /// A requirements.txt, installed by the server with the function's runtime into a
    /// layer (reused when the same requirements were built before) that goes first in the
    /// function's layers, in the same update as the code. Default: the requirements.txt in
    /// the --path directory, if there is one.
    #[arg(long, value_name = "FILE")]
    pub requirements: Option<PathBuf>,
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
    /// The version to run: $LATEST (the default), a published version's number or an alias.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub qualifier: Option<String>,
    /// Queue the event and print its id (202) instead of waiting for the result: it runs
    /// at least once, with retries, and lands in the dead letters if it keeps failing.
    #[arg(long = "async")]
    pub is_async: bool,
    /// With --async: the same key for the same function within 24 hours queues nothing
    /// and prints the first event's id.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub idempotency_key: Option<String>,
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
    /// Give the function's sandboxes outbound network access.
    #[arg(long, conflicts_with = "no_network")]
    pub network: bool,
    /// Take outbound network access away.
    #[arg(long)]
    pub no_network: bool,
    /// SnapStart: `PublishedVersions` or `None`.
    #[arg(long, value_name = "APPLY_ON")]
    pub snap_start: Option<String>,
    /// New size of /tmp in MB (512-10240).
    #[arg(long, value_name = "MB", allow_negative_numbers = true)]
    pub ephemeral_storage: Option<i64>,
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
    /// A layer version ARN; when any is given, they replace the function's layers, in
    /// order (at most 5).
    #[arg(long = "layer", value_name = "ARN", conflicts_with = "clear_layers")]
    pub layers: Vec<String>,
    /// Remove every layer.
    #[arg(long)]
    pub clear_layers: bool,
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

/// Parses `VERSION=WEIGHT` (`2=0.1`). The server checks that the version exists and the
/// weight is between 0 and 1; this only checks the shape.
pub fn parse_routing(s: &str) -> Result<(String, f64), String> {
    let Some((version, weight)) = s.split_once('=') else {
        return Err("expected VERSION=WEIGHT, such as 2=0.1, but there is no '='".to_owned());
    };
    let version = version.trim();
    if version.is_empty() {
        return Err("expected VERSION=WEIGHT, such as 2=0.1, but the version is empty".to_owned());
    }
    match weight.trim().parse::<f64>() {
        Ok(w) if w.is_finite() => Ok((version.to_owned(), w)),
        _ => Err(format!(
            "expected VERSION=WEIGHT, such as 2=0.1, but the weight {weight:?} is not a number"
        )),
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

    #[test]
    fn routing_pairs() {
        assert_eq!(parse_routing("2=0.5"), Ok(("2".into(), 0.5)));
        assert_eq!(parse_routing(" 3 = 1 "), Ok(("3".into(), 1.0)));
        assert_eq!(
            parse_routing("nope").unwrap_err(),
            "expected VERSION=WEIGHT, such as 2=0.1, but there is no '='"
        );
        assert_eq!(
            parse_routing("=0.5").unwrap_err(),
            "expected VERSION=WEIGHT, such as 2=0.1, but the version is empty"
        );
        for bad in ["2=", "2=half", "2=NaN", "2=inf"] {
            let err = parse_routing(bad).unwrap_err();
            assert!(err.ends_with("is not a number"), "{bad}: {err}");
        }
    }

    #[test]
    fn url_commands_parse() {
        let cli = Cli::try_parse_from([
            "skyscale",
            "function",
            "url",
            "create",
            "--name",
            "f",
            "--cors-origin",
            "https://a.example",
            "--cors-origin",
            "*",
            "--cors-method",
            "get",
            "--cors-credentials",
        ])
        .unwrap();
        let Command::Function(FunctionCommand::Url(UrlCommand::Create(args))) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(args.auth, UrlAuth::None);
        assert_eq!(args.qualifier, None);
        assert_eq!(args.cors.origins, ["https://a.example", "*"]);
        assert_eq!(args.cors.methods, ["get"]);
        assert!(args.cors.credentials);

        let parse = |extra: &[&str]| {
            let base = ["skyscale", "function", "url", "update", "--name", "f"];
            Cli::try_parse_from(base.iter().chain(extra))
        };
        let cli = parse(&["--auth", "aws-iam", "--qualifier", "live"]).unwrap();
        let Command::Function(FunctionCommand::Url(UrlCommand::Update(args))) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(args.auth, Some(UrlAuth::AwsIam));
        assert_eq!(args.qualifier.as_deref(), Some("live"));
        assert!(!args.no_cors);
        for extra in [
            &["--no-cors", "--cors-origin", "*"][..],
            &["--no-cors", "--cors-credentials"],
            &["--no-cors", "--cors-max-age", "5"],
        ] {
            let err = parse(extra).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{extra:?}"
            );
        }
        let err = parse(&["--auth", "iam"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn alias_commands_parse() {
        let cli = Cli::try_parse_from([
            "skyscale",
            "alias",
            "update",
            "--function",
            "f",
            "--name",
            "live",
            "--routing",
            "2=0.25",
        ])
        .unwrap();
        let Command::Alias(AliasCommand::Update(args)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(args.routing, Some(("2".into(), 0.25)));
        assert!(args.version.is_none() && !args.no_routing);

        let err = Cli::try_parse_from([
            "skyscale",
            "alias",
            "update",
            "--function",
            "f",
            "--name",
            "live",
            "--routing",
            "2=0.25",
            "--no-routing",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);

        let err = Cli::try_parse_from([
            "skyscale",
            "function",
            "invoke",
            "--name",
            "f",
            "--qualifier",
            "",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    }
}
