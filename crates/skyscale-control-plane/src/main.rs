//! `skyscale-control-plane`: parse configuration, start tracing, open state, start the
//! sandbox driver, serve the API until SIGINT/SIGTERM, then destroy every sandbox.

mod config;

use std::sync::Arc;

use anyhow::Context;
use config::{ClusterConfig, ClusterNode, Config, DriverKind, LogFormat};
use sha2::{Digest, Sha256};
use skyscale_core::{
    AdminKeySource, ClusterSettings, ControlPlane, Limits, Node, RecordSettings, Runtimes,
    ServerKey, Settings,
};
use skyscale_sandbox::{
    Driver, OciConfig, OciDriver, ProcessConfig, ProcessDriver, Runtime as OciRuntime,
};
use skyscale_store::{CodeLimits, Store};

fn main() {
    if let Err(e) = run() {
        eprintln!("skyscale-control-plane: error: {e:#}");
        std::process::exit(1);
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let log = tracing_subscriber::fmt()
        .with_max_level(config.log_level)
        // Colours only for a terminal: escape codes make log files hard to search.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format {
        // Every line inside an invocation carries its span: function and request id.
        LogFormat::Text => log.init(),
        LogFormat::Json => log
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }

    let open_files = raise_open_file_limit();

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let data_dir = config
        .data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", config.data_dir.display()))?;
    // The store is blocking (PostgreSQL's client even refuses to run on an async thread):
    // everything that touches it at startup runs on a blocking thread.
    let store = {
        let (url, path) = (config.database_url.clone(), config.db_path.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || match url {
                // The URL holds a password: it is not repeated in the message.
                Some(url) => Store::connect(&url)
                    .context("connecting to the PostgreSQL database of SKYSCALE_DATABASE_URL"),
                None => Store::open(&path)
                    .with_context(|| format!("opening database {}", path.display())),
            })
            .await??,
        )
    };
    // The key that seals API key secrets: a cluster's API nodes share one, derived from
    // the cluster secret; a single node keeps its own in the data directory.
    let server_key = match &config.cluster {
        ClusterConfig::Api(node) => ServerKey::derive(&node.secret),
        _ => ServerKey::load_or_create(&data_dir)?,
    };
    // A worker serves no public API: the API nodes hold the keys.
    if !matches!(config.cluster, ClusterConfig::Worker { .. }) {
        let admin = {
            let (store, dir, key) = (store.clone(), data_dir.clone(), config.admin_key.clone());
            let server_key = server_key.clone();
            tokio::task::spawn_blocking(move || {
                skyscale_core::ensure_admin_key(&store, &dir, key.as_ref(), &server_key)
            })
            .await??
        };
        match admin {
            AdminKeySource::Generated { key, path } => {
                println!(
                    "generated the first admin API key (shown once, also saved to {}):",
                    path.display()
                );
                println!("  SKYSCALE_API_KEY={}", key.token());
            }
            AdminKeySource::Environment => tracing::info!("admin key from SKYSCALE_ADMIN_KEY"),
            AdminKeySource::Existing => {}
        }
    }
    if let ClusterConfig::Api(node) = &config.cluster {
        // No sandboxes, driver or warm pool on an API node.
        return run_api(&config, node, store, &data_dir, open_files).await;
    }

    // Everything a sandbox sees of the host (its bundle's root, `/var/task`, `/var/runtime`)
    // lives under a neutral root, not the data directory: a sandbox reads these paths in
    // `/proc/self/mountinfo`. One directory per data directory, so a restarted control plane
    // finds exactly its own leftovers and two instances never touch each other's sandboxes.
    // Workers sharing a data directory (one machine) are an instance each, by address.
    let mut instance_key = data_dir.as_os_str().as_encoded_bytes().to_vec();
    if let ClusterConfig::Worker { listen, .. } = &config.cluster {
        instance_key.extend_from_slice(format!("\0worker\0{listen}").as_bytes());
    }
    let instance = hex::encode(Sha256::digest(&instance_key))[..12].to_owned();
    let sandboxes_dir = match &config.cluster {
        ClusterConfig::Worker { .. } => data_dir
            .join("sandboxes")
            .join(format!("worker-{instance}")),
        _ => data_dir.join("sandboxes"),
    };
    let visible = config.sandbox_root.join(&instance);
    let runtime_dir =
        skyscale_core::install_runtime_dir(&visible.join("runtime"), &config.agent_path)
            .with_context(|| {
                format!(
                    "installing the agent and runtime into {}",
                    visible.display()
                )
            })?;
    warn_if_code_is_copied(&data_dir, &visible);
    // Found once: the driver pre-starts the default one, the core resolves functions' names.
    let runtimes = discover_runtimes(&config);
    let driver = build_driver(
        &config,
        &sandboxes_dir,
        &instance,
        &visible,
        runtime_dir,
        &runtimes,
    )?;
    let removed = driver
        .cleanup_leftovers()
        .await
        .context("removing sandboxes left by a previous run")?;
    if removed > 0 {
        tracing::warn!(removed, "removed sandboxes left behind by a previous run");
    }
    let settings = core_settings(&config, Some(visible.join("task")));
    let served = match &config.cluster {
        ClusterConfig::Worker { node, listen } => {
            run_worker(
                &config, node, *listen, store, &data_dir, driver, runtimes, settings, open_files,
            )
            .await
        }
        _ => {
            run_all(
                &config, store, &data_dir, driver, runtimes, settings, open_files,
            )
            .await
        }
    };
    remove_sandbox_dirs(&visible);
    served?;
    tracing::info!("stopped");
    Ok(())
}

fn discover_runtimes(config: &Config) -> Runtimes {
    let mut runtimes = Runtimes::discover(std::path::Path::new("/usr/bin"));
    if let Some(sdk) = python_sdk(config) {
        runtimes = runtimes.with_python_sdk(&sdk);
    }
    tracing::info!(installed = ?runtimes.installed(), "runtimes");
    runtimes
}

/// The core's settings from the configuration.
fn core_settings(config: &Config, task_root: Option<std::path::PathBuf>) -> Settings {
    Settings {
        limits: Limits {
            warm_pool_size: config.warm_pool_size as usize,
            max_sandboxes: config.max_sandboxes,
            memory_budget_mb: config.memory_budget_mb,
            keep_alive: config.keep_alive,
            ..Limits::default()
        },
        records: RecordSettings {
            retention: config.log_retention,
            max_log_bytes: config.log_max_bytes,
            max_records: config.max_records,
            follow_max_lifetime: config.server.stream_max_lifetime,
            ..RecordSettings::default()
        },
        code: CodeLimits {
            max_total_bytes: config.code_storage_bytes,
            ..CodeLimits::default()
        },
        task_root,
        events: config.events.clone(),
        bytecode: config.bytecode,
        ..Settings::default()
    }
}

/// The runtime copy, and the directories if they are empty: a bundle still there is the
/// record of a sandbox that could not be destroyed, for the cleanup at the next start.
fn remove_sandbox_dirs(visible: &std::path::Path) {
    let _ = std::fs::remove_dir_all(visible.join("runtime"));
    for dir in [
        visible.join("bundles"),
        visible.join("task"),
        visible.to_path_buf(),
    ] {
        if let Err(e) = std::fs::remove_dir(&dir) {
            tracing::debug!(error = %e, dir = %dir.display(), "keeping a sandbox directory");
        }
    }
}

/// Role `all`: today's single node.
async fn run_all(
    config: &Config,
    store: Arc<Store>,
    data_dir: &std::path::Path,
    driver: Arc<dyn Driver>,
    runtimes: Runtimes,
    settings: Settings,
    open_files: Option<u64>,
) -> anyhow::Result<()> {
    let cp = {
        let dir = data_dir.to_path_buf();
        // On a blocking thread (it reads the keys); the tasks it starts run on the runtime.
        Arc::new(
            tokio::task::spawn_blocking(move || {
                ControlPlane::start(store, &dir, driver, runtimes, settings)
            })
            .await??,
        )
    };
    cp.start_cache_coherence();
    // Resumes what a previous run left queued.
    cp.start_dispatcher().await?;
    // Fires what schedules missed while the control plane was down, then each slot.
    cp.start_schedules();
    // Provisions the stored provisioned concurrency configurations again, then keeps them.
    cp.start_provisioned();

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {} (set PORT or SKYSCALE_HOST)", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        driver = cp.driver_name(),
        warm_pool_size = config.warm_pool_size,
        max_sandboxes = config.max_sandboxes,
        memory_budget_mb = config.memory_budget_mb,
        keep_alive = ?config.keep_alive,
        "control plane started"
    );
    let server_settings = server_settings(&config.server, open_files);
    // Scripts and tests read the address from this line: everything logged at start comes
    // before it.
    println!("skyscale-control-plane listening on http://{addr}");
    serve_public(config, cp, listener, server_settings).await;
    Ok(())
}

/// Role `api`: the public APIs, auth, routing and async dispatch; invocations run on
/// workers.
async fn run_api(
    config: &Config,
    node: &ClusterNode,
    store: Arc<Store>,
    data_dir: &std::path::Path,
    open_files: Option<u64>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {} (set PORT or SKYSCALE_HOST)", config.listen))?;
    let addr = listener.local_addr()?;
    let secret = skyscale_http::ClusterSecret::new(&node.secret);
    let link = skyscale_http::HttpWorkerLink::new(&secret)
        .map_err(|e| anyhow::anyhow!("SKYSCALE_CLUSTER_SECRET: {e}"))?;
    let runtimes = discover_runtimes(config);
    let settings = Settings {
        server_key: Some(ServerKey::derive(&node.secret)),
        ..core_settings(config, None)
    };
    let dir = data_dir.to_path_buf();
    let role = Node::Api {
        settings: ClusterSettings {
            node_name: node.name.clone(),
            address: addr.to_string(),
            lease: node.lease,
            refresh: ClusterSettings::DEFAULT_REFRESH,
        },
        link: Arc::new(link),
    };
    // On a blocking thread (it reads the keys); the tasks it starts run on the runtime.
    let cp = Arc::new(
        tokio::task::spawn_blocking(move || {
            ControlPlane::start_node(store, &dir, None, runtimes, settings, role)
        })
        .await??,
    );
    cp.start_cluster();
    cp.start_cache_coherence();
    cp.start_dispatcher().await?;
    cp.start_schedules();
    tracing::info!(%addr, name = %node.name, "API node started");
    let server_settings = server_settings(&config.server, open_files);
    println!("skyscale-control-plane listening on http://{addr}");
    serve_public(config, cp, listener, server_settings).await;
    tracing::info!("stopped");
    Ok(())
}

/// Role `worker`: sandboxes and the limits of this host, reached by API nodes on its
/// internal address only; no public API, dispatcher or schedules.
#[allow(clippy::too_many_arguments)]
async fn run_worker(
    config: &Config,
    node: &ClusterNode,
    listen: std::net::SocketAddr,
    store: Arc<Store>,
    data_dir: &std::path::Path,
    driver: Arc<dyn Driver>,
    runtimes: Runtimes,
    settings: Settings,
    open_files: Option<u64>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding SKYSCALE_WORKER_LISTEN={listen}"))?;
    let role = Node::Worker {
        settings: ClusterSettings {
            node_name: node.name.clone(),
            address: listen.to_string(),
            lease: node.lease,
            refresh: ClusterSettings::DEFAULT_REFRESH,
        },
    };
    let dir = data_dir.to_path_buf();
    // On a blocking thread (it reads the keys); the tasks it starts run on the runtime.
    let cp = Arc::new(
        tokio::task::spawn_blocking(move || {
            ControlPlane::start_node(store, &dir, Some(driver), runtimes, settings, role)
        })
        .await??,
    );
    cp.start_cluster();
    tracing::info!(
        %listen,
        name = %node.name,
        driver = cp.driver_name(),
        max_sandboxes = config.max_sandboxes,
        lease = ?node.lease,
        "worker started"
    );
    let limits = server_settings(&config.server, open_files).connections;
    println!("skyscale-control-plane worker listening on http://{listen}");
    let secret = skyscale_http::ClusterSecret::new(&node.secret);
    serve_until_signal(
        &cp,
        config.shutdown_grace,
        "shutting down: giving up the lease, finishing in-flight invocations, then destroying sandboxes",
        |stop| skyscale_http::serve_worker(listener, cp.clone(), secret, limits, stop),
    )
    .await;
    Ok(())
}

type Served =
    Result<Result<std::io::Result<()>, tokio::task::JoinError>, tokio::time::error::Elapsed>;

fn log_served(served: Served) {
    match served {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("requests still open after the grace period were dropped"),
    }
}

/// Serves the public API until SIGINT/SIGTERM, then shuts the control plane down.
async fn serve_public(
    config: &Config,
    cp: Arc<ControlPlane>,
    listener: tokio::net::TcpListener,
    server_settings: skyscale_http::ServerSettings,
) {
    serve_until_signal(
        &cp,
        config.shutdown_grace,
        "shutting down: finishing in-flight invocations, then destroying sandboxes",
        |stop| skyscale_http::serve(listener, cp.clone(), server_settings, stop),
    )
    .await;
}

/// Runs the server `serve` starts until SIGINT/SIGTERM; then the server stops accepting
/// and lets in-flight requests finish while the control plane shuts down, the grace
/// bounding how long that may take before the sandboxes are destroyed regardless.
async fn serve_until_signal<S>(
    cp: &ControlPlane,
    grace: std::time::Duration,
    stopping: &str,
    serve: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> S,
) where
    S: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(Box::pin(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    })));
    shutdown_signal().await;
    tracing::info!(grace = ?grace, "{stopping}");
    let _ = stop_tx.send(true);
    let (served, ()) = tokio::join!(tokio::time::timeout(grace, server), cp.shutdown(grace));
    log_served(served);
}

/// Code is hard-linked from the data directory into each sandbox's `/var/task`; across
/// filesystems it has to be copied, which costs time and space per cold start.
fn warn_if_code_is_copied(data_dir: &std::path::Path, visible: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    if dev(data_dir) != dev(visible) {
        tracing::warn!(
            data_dir = %data_dir.display(),
            sandbox_root = %visible.display(),
            "the sandbox root is on another filesystem than the data directory: code packages \
             are copied into each sandbox instead of hard-linked (set SKYSCALE_SANDBOX_ROOT to a \
             directory on the data directory's filesystem)"
        );
    }
}

fn build_driver(
    config: &Config,
    sandboxes_dir: &std::path::Path,
    instance: &str,
    visible: &std::path::Path,
    runtime_dir: std::path::PathBuf,
    runtimes: &Runtimes,
) -> anyhow::Result<Arc<dyn Driver>> {
    // Every sandbox boots generic: its agent pre-starts the default runtime (the newest
    // python3.N) right away, and a cold start of a function on that runtime hands it the
    // function instead of starting an interpreter (skyscale-protocol, "The pre-started
    // runtime"). It lives under the generic memory limit until then.
    let prewarm = runtimes.prewarm_env();
    let runtime = match config.driver {
        DriverKind::Gvisor => OciRuntime::Runsc {
            platform: config.runsc_platform.clone(),
        },
        DriverKind::Runc => OciRuntime::Runc,
        DriverKind::Process => {
            tracing::warn!(
                "WARNING: SKYSCALE_DRIVER=process: no isolation: trusted code only. Functions \
                 run as this user with its files and network, without memory limits"
            );
            // No bind mounts: the runtime directory's `sdk` becomes a link to the SDK.
            if let Some(sdk) = python_sdk(config) {
                let at = runtime_dir.join("sdk");
                std::fs::remove_dir(&at)?;
                std::os::unix::fs::symlink(&sdk, &at)?;
            }
            let mut cfg = ProcessConfig::new(sandboxes_dir.join("process"), runtime_dir);
            cfg.env.extend(prewarm);
            return Ok(Arc::new(ProcessDriver::new(cfg)?));
        }
    };
    // One cgroup parent per data directory, like the sandbox root.
    let mut oci = OciConfig::new(
        runtime,
        sandboxes_dir.join("state"),
        visible.join("bundles"),
        runtime_dir,
        format!("skyscale/{instance}"),
    );
    oci.cpu_mb_per_vcpu = config.cpu_mb_per_vcpu;
    oci.python_sdk_dir = python_sdk(config);
    oci.uids = config.sandbox_uids;
    oci.failpoint = config.failpoint;
    oci.env.extend(prewarm);
    Ok(Arc::new(OciDriver::new(oci)?))
}

/// The Python SDK (boto3, botocore) the sandboxes get, if it is installed.
fn python_sdk(config: &Config) -> Option<std::path::PathBuf> {
    let dir = &config.python_sdk_dir;
    if dir.join("boto3/__init__.py").is_file() {
        return Some(dir.clone());
    }
    tracing::warn!(
        dir = %dir.display(),
        "boto3 is not installed there: Python functions cannot import it unless they bundle \
         it (run scripts/install-python-sdk)"
    );
    None
}

/// Raises the soft limit on open files to the hard limit: every connection, sandbox channel
/// and database file is a descriptor, and the common default of 1,024 is reached by a
/// thousand idle connections. Returns the soft limit now in force.
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit.current, limit.maximum);
    if soft.is_none() || soft == hard {
        tracing::info!(open_files = ?soft, "open-file limit");
        return soft;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: hard,
            maximum: hard,
        },
    ) {
        Ok(()) => {
            tracing::info!(from = ?soft, to = ?hard, "raised the open-file limit to its hard limit");
            hard.or(soft)
        }
        Err(e) => {
            tracing::warn!(error = %e, open_files = ?soft, "could not raise the open-file limit");
            soft
        }
    }
}

/// The server's limits: the configured connection limit, lowered so that connections can
/// never take the descriptors the sandboxes and the database need (a quarter of the
/// open-file limit, at least 128, stays free for them).
fn server_settings(
    config: &config::ServerConfig,
    open_files: Option<u64>,
) -> skyscale_http::ServerSettings {
    let mut max_connections = config.max_connections;
    if let Some(files) = open_files.and_then(|f| usize::try_from(f).ok()) {
        let reserve = (files / 4).max(128);
        let allowed = files.saturating_sub(reserve).max(1);
        if allowed < max_connections {
            tracing::warn!(
                configured = max_connections,
                allowed,
                open_files = files,
                "the open-file limit lowers the connection limit"
            );
            max_connections = allowed;
        }
    }
    tracing::info!(max_connections, "connection limit");
    skyscale_http::ServerSettings {
        connections: skyscale_http::ConnectionLimits {
            max_connections,
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
        },
        bodies: skyscale_http::BodyLimits::new(
            config.body_timeout,
            config.unauthenticated_buffer_bytes,
        ),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
