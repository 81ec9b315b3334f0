//! One function per command: call the API through `skyscale-client`, print the answer.

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use skyscale_client::{package, Client};
use skyscale_types::api::{
    AliasInfo, AliasRouting, CreateAlias, CreateFunction, CreateFunctionUrl, FunctionInfo,
    FunctionUrlInfo, UpdateAlias, UpdateFunction, UpdateFunctionUrl,
};
use skyscale_types::{Cors, UrlAuthType};

use crate::cli::{
    AliasArg, AliasCommand, AliasCreateArgs, AliasUpdateArgs, Cli, ClusterCommand, Command,
    ConcurrencyArgs, CorsArgs, CreateArgs, DeployArgs, FunctionArg, FunctionCommand, Global,
    InvokeArgs, KeyCommand, NameArg, OutputFormat, PublishArgs, RuntimeCommand, UpdateArgs, UrlArg,
    UrlAuth, UrlCommand, UrlCreateArgs, UrlUpdateArgs,
};
use crate::input::{env_map, read_payload};
use crate::output::{self, AlreadyReported, NO_KEY};

mod access;
mod events;
mod invocations;
mod layers;
mod metrics;
mod provisioned;
mod schedules;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { global, command } = cli;
    match command {
        Command::Health => health(&global),
        Command::Runtime(RuntimeCommand::List) => runtimes(&global),
        Command::Function(FunctionCommand::Create(args)) => create(&global, &args),
        Command::Function(FunctionCommand::Deploy(args)) => deploy(&global, &args),
        Command::Function(FunctionCommand::Invoke(args)) => invoke(&global, &args),
        Command::Function(FunctionCommand::List) => list(&global),
        Command::Function(FunctionCommand::Get(args)) => get(&global, &args),
        Command::Function(FunctionCommand::Update(args)) => update(&global, &args),
        Command::Function(FunctionCommand::Delete(args)) => delete(&global, &args),
        Command::Function(FunctionCommand::Concurrency(args)) => concurrency(&global, &args),
        Command::Function(FunctionCommand::Publish(args)) => publish(&global, &args),
        Command::Function(FunctionCommand::Versions(args)) => versions(&global, &args),
        Command::Function(FunctionCommand::Url(UrlCommand::Create(args))) => {
            url_create(&global, &args)
        }
        Command::Function(FunctionCommand::Url(UrlCommand::Update(args))) => {
            url_update(&global, &args)
        }
        Command::Function(FunctionCommand::Url(UrlCommand::Get(args))) => url_get(&global, &args),
        Command::Function(FunctionCommand::Url(UrlCommand::Delete(args))) => {
            url_delete(&global, &args)
        }
        Command::Function(FunctionCommand::Url(UrlCommand::List(args))) => url_list(&global, &args),
        Command::Function(FunctionCommand::Invocations(args)) => {
            invocations::invocations(&global, &args)
        }
        Command::Function(FunctionCommand::Invocation(args)) => {
            invocations::invocation(&global, &args)
        }
        Command::Function(FunctionCommand::Logs(args)) => invocations::logs(&global, &args),
        Command::Function(FunctionCommand::Metrics(args)) => {
            metrics::function_metrics(&global, &args)
        }
        Command::Function(FunctionCommand::Events(args)) => events::events(&global, &args),
        Command::Function(FunctionCommand::Event(args)) => events::event(&global, &args),
        Command::Function(FunctionCommand::Redrive(args)) => events::redrive(&global, &args),
        Command::Function(FunctionCommand::EventConfig(cmd)) => events::event_config(&global, &cmd),
        Command::Function(FunctionCommand::Provisioned(cmd)) => provisioned::run(&global, &cmd),
        Command::Alias(AliasCommand::Create(args)) => alias_create(&global, &args),
        Command::Alias(AliasCommand::Update(args)) => alias_update(&global, &args),
        Command::Alias(AliasCommand::List(args)) => alias_list(&global, &args),
        Command::Alias(AliasCommand::Get(args)) => alias_get(&global, &args),
        Command::Alias(AliasCommand::Delete(args)) => alias_delete(&global, &args),
        Command::Key(KeyCommand::Create(args)) => access::key_create(&global, &args),
        Command::Key(KeyCommand::List) => access::key_list(&global),
        Command::Key(KeyCommand::Revoke(args)) => access::key_revoke(&global, &args),
        Command::Audit(args) => access::audit(&global, &args),
        Command::Schedule(c) => schedules::run(&global, &c),
        Command::Layer(c) => layers::run(&global, &c),
        Command::Cluster(ClusterCommand::Status) => cluster_status(&global),
    }
}

fn cluster_status(global: &Global) -> anyhow::Result<()> {
    let status = connect(global, true)?.cluster_status()?;
    match global.output {
        OutputFormat::Json => output::json(&status),
        OutputFormat::Text => Ok(output::stdout(output::cluster_status(&status).as_bytes())?),
    }
}

/// A client for the configured endpoint. Checks for a key first when the call needs one, so
/// that the user hears about it before any work (like zipping) is done.
fn connect(global: &Global, needs_key: bool) -> anyhow::Result<Client> {
    let key = global.api_key.clone().filter(|k| !k.trim().is_empty());
    if needs_key && key.is_none() {
        bail!(NO_KEY);
    }
    let key = if needs_key { key } else { None };
    Ok(Client::new(&global.endpoint, key)?)
}

fn health(global: &Global) -> anyhow::Result<()> {
    // The key, when there is one, makes the answer include the host's details.
    let key = global.api_key.is_some();
    let health = connect(global, key)?.health()?;
    match global.output {
        OutputFormat::Json => output::json(&health),
        OutputFormat::Text => Ok(output::line(&match (&health.version, &health.driver) {
            (Some(version), Some(driver)) => format!(
                "{}: skyscale {version} at {}, driver {driver}",
                health.status, global.endpoint
            ),
            _ => format!("{}: skyscale at {}", health.status, global.endpoint),
        })?),
    }
}

fn runtimes(global: &Global) -> anyhow::Result<()> {
    let list = connect(global, true)?.runtimes()?;
    match global.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Text => {
            output::line("RUNTIME          PACKAGES")?;
            for r in &list.runtimes {
                let packages: Vec<String> = r
                    .packages
                    .iter()
                    .filter(|(name, _)| matches!(name.as_str(), "boto3" | "botocore"))
                    .map(|(name, version)| format!("{name} {version}"))
                    .collect();
                let packages = if packages.is_empty() {
                    "-".to_owned()
                } else {
                    packages.join(", ")
                };
                output::line(&format!("{:<16} {packages}", r.name))?;
            }
            Ok(())
        }
    }
}

fn create(global: &Global, args: &CreateArgs) -> anyhow::Result<()> {
    let client = connect(global, true)?;
    let environment = env_map(&args.env)?;
    let code_zip_base64 = match &args.path {
        Some(path) => Some(base64::engine::general_purpose::STANDARD.encode(package_code(path)?)),
        None => None,
    };
    let request = CreateFunction {
        name: args.name.clone(),
        runtime: args.runtime.clone(),
        handler: args.handler.clone(),
        memory_mb: args.memory,
        timeout_s: args.timeout,
        environment,
        description: args.description.clone(),
        code_zip_base64,
        network: args.network.then_some(true),
        ephemeral_storage_mb: args.ephemeral_storage,
        layers: args.layers.clone(),
        snap_start: args.snap_start.clone(),
    };
    let info = client.create_function(&request)?;
    print_info(global, &format!("created function {}", info.name), &info)
}

fn deploy(global: &Global, args: &DeployArgs) -> anyhow::Result<()> {
    let client = connect(global, true)?;
    let requirements = match &args.requirements {
        Some(file) => Some(file.clone()),
        None => {
            Some(args.path.join("requirements.txt")).filter(|f| args.path.is_dir() && f.is_file())
        }
    };
    let zip = package_code(&args.path)?;
    let size = zip.len();
    let info = match requirements {
        None => client.deploy_code(&args.name, zip)?,
        Some(file) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let current = client.get_function(&args.name)?;
            progress(&format!(
                "installing {} for {} (on the server)...",
                file.display(),
                current.runtime
            ));
            // A failed build is an error here: the function is not touched.
            let deps = client.requirements_layer(&current.runtime, &text, |line| {
                progress(&format!("  {line}"))
            })?;
            if deps.built {
                progress(&format!("published layer {}", deps.layer.arn));
            } else {
                progress(&format!(
                    "requirements unchanged: reusing layer {} (nothing installed)",
                    deps.layer.arn
                ));
            }
            // The new requirements layer replaces an earlier one, first; the function's
            // other layers keep their order after it.
            let mut layers = vec![deps.layer.arn.clone()];
            layers.extend(
                current
                    .layers
                    .iter()
                    .filter(|l| !l.layer.starts_with(DEPS_LAYER_PREFIX))
                    .map(|l| l.arn.clone()),
            );
            client.deploy_code_with_layers(&args.name, zip, &layers)?
        }
    };
    match global.output {
        OutputFormat::Json => output::json(&info),
        OutputFormat::Text => {
            let sha = info.code_sha256.as_deref().unwrap_or("-");
            Ok(output::line(&format!(
                "deployed {} bytes to function {}: code_sha256 {}, revision {}",
                info.code_size.unwrap_or(size as u64),
                info.name,
                sha.get(..12).unwrap_or(sha),
                info.revision
            ))?)
        }
    }
}

fn invoke(global: &Global, args: &InvokeArgs) -> anyhow::Result<()> {
    events::check_async_flags(args.is_async, args.idempotency_key.as_deref())?;
    let client = connect(global, true)?;
    let payload = read_payload(args.payload.as_deref(), args.payload_file.as_deref())?;
    if args.is_async {
        return events::invoke_async(
            global,
            &args.name,
            args.qualifier.as_deref(),
            args.idempotency_key.as_deref(),
            payload,
        );
    }
    let outcome = client.invoke_qualified(&args.name, args.qualifier.as_deref(), payload)?;
    let pretty = global.output == OutputFormat::Text;
    if outcome.function_error.is_none() {
        output::stdout(&output::invoke_result(&outcome.body, pretty))?;
        return Ok(());
    }
    if !pretty {
        // Scripts asked for JSON: they get the error document on stdout too.
        output::stdout(&output::invoke_result(&outcome.body, false))?;
    }
    let mut stderr = std::io::stderr().lock();
    for (i, line) in output::function_error_lines(&outcome).iter().enumerate() {
        let prefix = if i == 0 { "error: " } else { "" };
        // Nothing useful can be done if stderr itself is gone.
        let _ = writeln!(stderr, "{prefix}{line}");
    }
    Err(AlreadyReported.into())
}

fn list(global: &Global) -> anyhow::Result<()> {
    let list = connect(global, true)?.list_functions()?;
    match global.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Text => Ok(output::stdout(
            output::function_table(&list.functions).as_bytes(),
        )?),
    }
}

fn get(global: &Global, args: &NameArg) -> anyhow::Result<()> {
    let info = connect(global, true)?.get_function(&args.name)?;
    match global.output {
        OutputFormat::Json => output::json(&info),
        OutputFormat::Text => Ok(output::stdout(output::function_details(&info).as_bytes())?),
    }
}

fn update(global: &Global, args: &UpdateArgs) -> anyhow::Result<()> {
    let environment = if args.clear_env {
        Some(Default::default())
    } else if args.env.is_empty() {
        None
    } else {
        Some(env_map(&args.env)?)
    };
    let update = UpdateFunction {
        runtime: args.runtime.clone(),
        handler: args.handler.clone(),
        memory_mb: args.memory,
        timeout_s: args.timeout,
        environment,
        description: args.description.clone(),
        network: match (args.network, args.no_network) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        ephemeral_storage_mb: args.ephemeral_storage,
        layers: if args.clear_layers {
            Some(Vec::new())
        } else if args.layers.is_empty() {
            None
        } else {
            Some(args.layers.clone())
        },
        snap_start: args.snap_start.clone(),
    };
    let nothing = update.runtime.is_none()
        && update.handler.is_none()
        && update.memory_mb.is_none()
        && update.timeout_s.is_none()
        && update.environment.is_none()
        && update.description.is_none()
        && update.network.is_none()
        && update.ephemeral_storage_mb.is_none()
        && update.layers.is_none()
        && update.snap_start.is_none();
    if nothing {
        bail!(
            "nothing to update: give at least one of --runtime, --handler, --memory, --timeout, \
             --env, --clear-env, --description, --network, --no-network, --ephemeral-storage, \
             --layer, --clear-layers, --snap-start"
        );
    }
    let info = connect(global, true)?.update_function(&args.name, &update)?;
    print_info(global, &format!("updated function {}", info.name), &info)
}

fn delete(global: &Global, args: &NameArg) -> anyhow::Result<()> {
    connect(global, true)?.delete_function(&args.name)?;
    match global.output {
        // The API answers 204 with no body; JSON mode prints nothing rather than invent one.
        OutputFormat::Json => Ok(()),
        OutputFormat::Text => Ok(output::line(&format!("deleted function {}", args.name))?),
    }
}

fn concurrency(global: &Global, args: &ConcurrencyArgs) -> anyhow::Result<()> {
    let reserved = if args.clear { None } else { args.reserved };
    let info = connect(global, true)?.set_reserved_concurrency(&args.name, reserved)?;
    let headline = match info.reserved_concurrency {
        Some(0) => format!(
            "function {} is disabled (reserved concurrency 0)",
            info.name
        ),
        Some(n) => format!("function {} may run {n} invocations at once", info.name),
        None => format!("function {} has no reserved concurrency", info.name),
    };
    print_info(global, &headline, &info)
}

fn publish(global: &Global, args: &PublishArgs) -> anyhow::Result<()> {
    let info = connect(global, true)?.publish_version(&args.name, args.description.clone())?;
    let headline = match info.version {
        Some(n) => format!("published version {n} of function {}", info.name),
        // The API always answers with a published version; say what came back regardless.
        None => format!("published function {}", info.name),
    };
    print_info(global, &headline, &info)
}

fn versions(global: &Global, args: &NameArg) -> anyhow::Result<()> {
    let list = connect(global, true)?.list_versions(&args.name)?;
    match global.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Text => Ok(output::stdout(
            output::version_table(&list.versions).as_bytes(),
        )?),
    }
}

/// `--routing VERSION=WEIGHT` as the API takes it.
fn routing((version, weight): &(String, f64)) -> AliasRouting {
    AliasRouting {
        version: version.clone(),
        weight: *weight,
    }
}

fn alias_create(global: &Global, args: &AliasCreateArgs) -> anyhow::Result<()> {
    let request = CreateAlias {
        name: args.name.clone(),
        version: args.version.clone(),
        description: args.description.clone(),
        routing: args.routing.as_ref().map(routing),
    };
    let alias = connect(global, true)?.create_alias(&args.function, &request)?;
    print_alias(global, "created", &alias)
}

fn alias_update(global: &Global, args: &AliasUpdateArgs) -> anyhow::Result<()> {
    let update = UpdateAlias {
        version: args.version.clone(),
        description: args.description.clone(),
        routing: if args.no_routing {
            Some(None)
        } else {
            args.routing.as_ref().map(|r| Some(routing(r)))
        },
    };
    if update.version.is_none() && update.description.is_none() && update.routing.is_none() {
        bail!(
            "nothing to update: give at least one of --version, --description, --routing, \
             --no-routing"
        );
    }
    let alias = connect(global, true)?.update_alias(&args.function, &args.name, &update)?;
    print_alias(global, "updated", &alias)
}

fn alias_list(global: &Global, args: &FunctionArg) -> anyhow::Result<()> {
    let list = connect(global, true)?.list_aliases(&args.function)?;
    match global.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Text => Ok(output::stdout(
            output::alias_table(&list.aliases).as_bytes(),
        )?),
    }
}

fn alias_get(global: &Global, args: &AliasArg) -> anyhow::Result<()> {
    let alias = connect(global, true)?.get_alias(&args.function, &args.name)?;
    match global.output {
        OutputFormat::Json => output::json(&alias),
        OutputFormat::Text => Ok(output::stdout(output::alias_details(&alias).as_bytes())?),
    }
}

fn alias_delete(global: &Global, args: &AliasArg) -> anyhow::Result<()> {
    connect(global, true)?.delete_alias(&args.function, &args.name)?;
    match global.output {
        // The API answers 204 with no body; JSON mode prints nothing rather than invent one.
        OutputFormat::Json => Ok(()),
        OutputFormat::Text => Ok(output::line(&format!(
            "deleted alias {} of function {}",
            args.name, args.function
        ))?),
    }
}

fn print_alias(global: &Global, verb: &str, alias: &AliasInfo) -> anyhow::Result<()> {
    match global.output {
        OutputFormat::Json => output::json(alias),
        OutputFormat::Text => Ok(output::stdout(
            format!(
                "{verb} alias {} of function {}\n{}",
                alias.name,
                alias.function,
                output::alias_details(alias)
            )
            .as_bytes(),
        )?),
    }
}

fn auth_type(auth: UrlAuth) -> UrlAuthType {
    match auth {
        UrlAuth::None => UrlAuthType::None,
        UrlAuth::AwsIam => UrlAuthType::AwsIam,
    }
}

/// The `--cors-*` options as the API takes them; `None` when none was given. Methods are
/// upper-cased (`get` → `GET`); the server checks every value.
fn cors(args: &CorsArgs) -> Option<Cors> {
    let cors = Cors {
        allow_credentials: args.credentials,
        allow_headers: args.headers.clone(),
        allow_methods: args
            .methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        allow_origins: args.origins.clone(),
        expose_headers: args.expose_headers.clone(),
        max_age: args.max_age,
    };
    (cors != Cors::default()).then_some(cors)
}

fn url_create(global: &Global, args: &UrlCreateArgs) -> anyhow::Result<()> {
    let request = CreateFunctionUrl {
        auth_type: auth_type(args.auth),
        cors: cors(&args.cors),
    };
    let url = connect(global, true)?.create_url(&args.name, args.qualifier.as_deref(), &request)?;
    print_url(global, &url)
}

fn url_update(global: &Global, args: &UrlUpdateArgs) -> anyhow::Result<()> {
    let update = UpdateFunctionUrl {
        auth_type: args.auth.map(auth_type),
        cors: if args.no_cors {
            Some(None)
        } else {
            cors(&args.cors).map(Some)
        },
    };
    if update.auth_type.is_none() && update.cors.is_none() {
        bail!("nothing to update: give at least one of --auth, --cors-*, --no-cors");
    }
    let url = connect(global, true)?.update_url(&args.name, args.qualifier.as_deref(), &update)?;
    print_url(global, &url)
}

fn url_get(global: &Global, args: &UrlArg) -> anyhow::Result<()> {
    let url = connect(global, true)?.get_url(&args.name, args.qualifier.as_deref())?;
    print_url(global, &url)
}

fn url_delete(global: &Global, args: &UrlArg) -> anyhow::Result<()> {
    connect(global, true)?.delete_url(&args.name, args.qualifier.as_deref())?;
    match global.output {
        // The API answers 204 with no body; JSON mode prints nothing rather than invent one.
        OutputFormat::Json => Ok(()),
        OutputFormat::Text => Ok(output::line(&format!(
            "deleted the function URL of {}",
            match &args.qualifier {
                Some(q) => format!("{}:{q}", args.name),
                None => args.name.clone(),
            }
        ))?),
    }
}

fn url_list(global: &Global, args: &NameArg) -> anyhow::Result<()> {
    let list = connect(global, true)?.list_urls(&args.name)?;
    match global.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Text => Ok(output::stdout(output::url_table(&list.urls).as_bytes())?),
    }
}

/// A function URL: its address is the first line of the text form.
fn print_url(global: &Global, url: &FunctionUrlInfo) -> anyhow::Result<()> {
    match global.output {
        OutputFormat::Json => output::json(url),
        OutputFormat::Text => Ok(output::stdout(output::url_details(url).as_bytes())?),
    }
}

/// The prefix of the server's requirements layers (`skyscale-deps-<key>`).
const DEPS_LAYER_PREFIX: &str = "skyscale-deps-";

/// A progress line on stderr (stdout keeps the command's result).
fn progress(text: &str) {
    let mut stderr = std::io::stderr().lock();
    // Nothing useful can be done if stderr itself is gone.
    let _ = writeln!(stderr, "{text}");
}

fn package_code(path: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(package::zip_path(path)?)
}

fn print_info(global: &Global, headline: &str, info: &FunctionInfo) -> anyhow::Result<()> {
    match global.output {
        OutputFormat::Json => output::json(info),
        OutputFormat::Text => Ok(output::stdout(
            format!("{headline}\n{}", output::function_details(info)).as_bytes(),
        )?),
    }
}
