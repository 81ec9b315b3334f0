//! Configuration from the environment, validated once into typed values. A bad value stops
//! the process with a message that names the variable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use std::num::NonZeroU32;

use anyhow::{bail, Context};
use skyscale_sandbox::{Failpoint, UidRange, DEFAULT_CPU_MB_PER_VCPU, DEFAULT_UID_RANGE};
use skyscale_types::ApiKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    Gvisor,
    Runc,
    /// Plain child processes, no isolation: trusted code only.
    Process,
}

#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub db_path: PathBuf,
    /// `SKYSCALE_DATABASE_URL`: a PostgreSQL database shared by the nodes of a cluster,
    /// instead of the SQLite file at `db_path`.
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
    pub warm_pool_size: u32,
    pub driver: DriverKind,
    pub runsc_platform: String,
    pub admin_key: Option<ApiKey>,
    pub agent_path: PathBuf,
    pub keep_alive: Duration,
    pub memory_budget_mb: u64,
    pub max_sandboxes: usize,
    pub shutdown_grace: Duration,
    /// Invocation records and logs older than this are deleted.
    pub log_retention: Duration,
    /// Most bytes of invocation logs kept, all functions together.
    pub log_max_bytes: u64,
    /// Most invocation records kept.
    pub max_records: u64,
    pub server: ServerConfig,
    /// boto3 and botocore for the sandboxes' Python (`scripts/install-python-sdk`).
    pub python_sdk_dir: PathBuf,
    /// Most bytes all code packages may take together (Lambda's `TotalCodeSize`).
    pub code_storage_bytes: u64,
    /// `SKYSCALE_BYTECODE`: compile the Python sources of code packages when they are stored.
    pub bytecode: bool,
    /// CPU quota ratio: MiB of function memory per vCPU; `None`: no quota.
    pub cpu_mb_per_vcpu: Option<NonZeroU32>,
    /// The uids handed to sandboxes, one each.
    pub sandbox_uids: UidRange,
    /// The neutral root under which everything a sandbox sees of the host lives (bundles,
    /// `/var/task`, `/var/runtime`): `<sandbox_root>/<instance>/...`.
    pub sandbox_root: PathBuf,
    /// Test hook: crash at this point of a sandbox create.
    pub failpoint: Option<Failpoint>,
    /// The asynchronous invocation queue (`SKYSCALE_ASYNC_*`).
    pub events: skyscale_core::EventSettings,
    /// This node's role and, for `api` and `worker`, its cluster settings.
    pub cluster: ClusterConfig,
}

/// `SKYSCALE_ROLE` and the settings of a cluster node.
#[derive(Debug, Clone)]
pub enum ClusterConfig {
    /// One node does everything (the default).
    All,
    Api(ClusterNode),
    Worker {
        node: ClusterNode,
        /// `SKYSCALE_WORKER_LISTEN`: the internal server binds exactly this and registers
        /// it as the worker's address.
        listen: SocketAddr,
    },
}

/// What `api` and `worker` nodes share.
#[derive(Clone)]
pub struct ClusterNode {
    /// `SKYSCALE_CLUSTER_SECRET` (at least 32 characters).
    pub secret: String,
    /// `SKYSCALE_NODE_NAME` (default: the host name).
    pub name: String,
    /// `SKYSCALE_WORKER_LEASE` (default 3 s; a worker's setting).
    pub lease: Duration,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("secret", &"…")
            .field("name", &self.name)
            .field("lease", &self.lease)
            .finish()
    }
}

/// The shortest cluster secret accepted.
const MIN_SECRET_LEN: usize = 32;

/// The shortest worker lease: it must leave room for renewals every third of it and for
/// the worker to fence itself half a second before it ends.
const MIN_LEASE: Duration = Duration::from_secs(1);

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl ClusterConfig {
    fn from_env() -> anyhow::Result<Self> {
        let role = var("SKYSCALE_ROLE")?;
        let role = match role.as_deref() {
            None | Some("all") => "all",
            Some("api") => "api",
            Some("worker") => "worker",
            Some(other) => {
                bail!("SKYSCALE_ROLE={other:?} is invalid: expected all, api or worker")
            }
        };
        let listen = var("SKYSCALE_WORKER_LISTEN")?;
        let secret = var("SKYSCALE_CLUSTER_SECRET")?;
        if role != "worker" {
            if let Some(l) = &listen {
                bail!(
                    "SKYSCALE_WORKER_LISTEN={l:?} is set but SKYSCALE_ROLE={role}: only a worker listens for API nodes"
                );
            }
        }
        if role == "all" {
            if secret.is_some() {
                bail!(
                    "SKYSCALE_CLUSTER_SECRET is set but SKYSCALE_ROLE=all: a single node has no cluster traffic (set SKYSCALE_ROLE=api or worker)"
                );
            }
            for name in ["SKYSCALE_WORKER_LEASE", "SKYSCALE_NODE_NAME"] {
                if var(name)?.is_some() {
                    bail!(
                        "{name} is set but SKYSCALE_ROLE=all: it applies to api and worker nodes"
                    );
                }
            }
            return Ok(ClusterConfig::All);
        }
        let Some(secret) = secret else {
            bail!(
                "SKYSCALE_CLUSTER_SECRET is required with SKYSCALE_ROLE={role}: API nodes and workers authenticate each other with it (at least {MIN_SECRET_LEN} characters)"
            );
        };
        if secret.chars().count() < MIN_SECRET_LEN {
            bail!(
                "SKYSCALE_CLUSTER_SECRET is invalid: it has {} characters, at least {MIN_SECRET_LEN} are required",
                secret.chars().count()
            );
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            bail!(
                "SKYSCALE_CLUSTER_SECRET is invalid: only printable ASCII characters without spaces are allowed"
            );
        }
        if role == "api" {
            if let Some(v) = var("SKYSCALE_WORKER_LEASE")? {
                bail!(
                    "SKYSCALE_WORKER_LEASE={v:?} is set but SKYSCALE_ROLE=api: it is a worker's \
                     setting (API nodes read the workers' leases from the database)"
                );
            }
        }
        let lease = duration_var("SKYSCALE_WORKER_LEASE", Duration::from_secs(3))?;
        if lease < MIN_LEASE {
            bail!(
                "SKYSCALE_WORKER_LEASE={lease:?} is invalid: at least 1s (a worker renews every third of it and fences itself 0.5s before it ends)"
            );
        }
        let node = ClusterNode {
            secret,
            name: var("SKYSCALE_NODE_NAME")?.unwrap_or_else(host_name),
            lease,
        };
        if role == "api" {
            return Ok(ClusterConfig::Api(node));
        }
        let Some(listen) = listen else {
            bail!(
                "SKYSCALE_WORKER_LISTEN is required with SKYSCALE_ROLE=worker: the ip:port its internal server binds and API nodes reach it at"
            );
        };
        let addr: SocketAddr = listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "SKYSCALE_WORKER_LISTEN={listen:?} is invalid: expected ip:port such as 10.0.0.5:7070"
            )
        })?;
        if addr.ip().is_unspecified() {
            bail!(
                "SKYSCALE_WORKER_LISTEN={listen:?} is invalid: a worker listens on the address API nodes reach it at, not on every interface ({})",
                addr.ip()
            );
        }
        if addr.port() == 0 {
            bail!(
                "SKYSCALE_WORKER_LISTEN={listen:?} is invalid: port 0 is not an address API nodes can reach; give a fixed port"
            );
        }
        Ok(ClusterConfig::Worker { node, listen: addr })
    }
}

/// How the control plane writes its own log (stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event, prefixed with its spans (`invoke{function=…
    /// request_id=…}:`).
    Text,
    /// One JSON object per line, with the current span's fields and the span list.
    Json,
}

/// Parses `500ms`, `30s`, `10m`, `1h`, `7d` (or a bare number of seconds).
fn parse_duration(v: &str) -> Option<Duration> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().ok().map(Duration::from_secs);
    }
    skyscale_core::parse_duration(v)
}

fn duration_var(name: &str, default: Duration) -> anyhow::Result<Duration> {
    match var(name)? {
        None => Ok(default),
        Some(v) => parse_duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
            anyhow::anyhow!(
                "{name}={v:?} is invalid: expected a duration such as 500ms, 30s, 10m, 1h or 7d"
            )
        }),
    }
}

/// Three quarters of the machine's memory, for sandboxes.
fn default_memory_budget_mb() -> u64 {
    let total_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(4 * 1024 * 1024);
    total_kb / 1024 * 3 / 4
}

fn var(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{name} is not valid UTF-8"),
    }
}

fn parsed<T: std::str::FromStr>(name: &str, default: T, expected: &str) -> anyhow::Result<T> {
    match var(name)? {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is invalid: expected {expected}")),
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let port: u16 = parsed("PORT", 8080, "a port number 0-65535")?;
        let host: IpAddr = parsed(
            "SKYSCALE_HOST",
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "an IP address such as 127.0.0.1 or 0.0.0.0",
        )?;
        let database_url = var("SKYSCALE_DATABASE_URL")?;
        if database_url.is_some() && var("DB_PATH")?.is_some() {
            bail!(
                "SKYSCALE_DATABASE_URL and DB_PATH are both set: set SKYSCALE_DATABASE_URL for \
                 PostgreSQL or DB_PATH for SQLite, not both"
            );
        }
        if let Some(url) = &database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!(
                    "SKYSCALE_DATABASE_URL is invalid: expected postgres://user:password@host:port/database"
                );
            }
        }
        let db_path = PathBuf::from(var("DB_PATH")?.unwrap_or_else(|| "skyscale.db".into()));
        let data_dir = match var("SKYSCALE_DATA_DIR")? {
            Some(d) => PathBuf::from(d),
            None => {
                let parent = db_path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."));
                parent.join("skyscale-data")
            }
        };
        let log_level = match var("LOG_LEVEL")?
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("info") => tracing::Level::INFO,
            Some("trace") => tracing::Level::TRACE,
            Some("debug") => tracing::Level::DEBUG,
            Some("warn") => tracing::Level::WARN,
            Some("error") => tracing::Level::ERROR,
            Some(other) => {
                bail!("LOG_LEVEL={other:?} is invalid: expected trace, debug, info, warn or error")
            }
        };
        let log_format = match var("SKYSCALE_LOG_FORMAT")?
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("SKYSCALE_LOG_FORMAT={other:?} is invalid: expected text or json"),
        };
        let warm_pool_size: u32 = parsed("WARM_POOL_SIZE", 5, "a whole number of sandboxes")?;
        let driver = match var("SKYSCALE_DRIVER")?.as_deref() {
            None | Some("gvisor") => DriverKind::Gvisor,
            Some("runc") => DriverKind::Runc,
            Some("process") => DriverKind::Process,
            Some(other) => {
                bail!("SKYSCALE_DRIVER={other:?} is invalid: expected gvisor, runc or process")
            }
        };
        let runsc_platform = var("SKYSCALE_RUNSC_PLATFORM")?.unwrap_or_else(|| "ptrace".into());
        if !matches!(runsc_platform.as_str(), "ptrace" | "kvm" | "systrap") {
            bail!("SKYSCALE_RUNSC_PLATFORM={runsc_platform:?} is invalid: expected ptrace, kvm or systrap");
        }
        let admin_key = var("SKYSCALE_ADMIN_KEY")?
            .map(|k| {
                ApiKey::parse(&k).map_err(|e| anyhow::anyhow!("SKYSCALE_ADMIN_KEY is invalid: {e}"))
            })
            .transpose()?;
        let agent_path = match var("SKYSCALE_AGENT_PATH")? {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()
                .context("finding this executable to locate skyscale-agent beside it")?
                .with_file_name("skyscale-agent"),
        };
        if !agent_path.is_file() {
            bail!(
                "skyscale-agent not found at {}: build it (`cargo build --release --workspace`) or set SKYSCALE_AGENT_PATH",
                agent_path.display()
            );
        }
        let keep_alive = duration_var("SKYSCALE_KEEP_ALIVE", Duration::from_secs(600))?;
        let shutdown_grace = duration_var("SKYSCALE_SHUTDOWN_GRACE", Duration::from_secs(30))?;
        let memory_budget_mb: u64 = parsed(
            "SKYSCALE_MEMORY_BUDGET_MB",
            default_memory_budget_mb(),
            "a whole number of megabytes",
        )?;
        if memory_budget_mb < 128 {
            bail!("SKYSCALE_MEMORY_BUDGET_MB={memory_budget_mb} is invalid: at least 128 MB are needed for one sandbox");
        }
        let max_sandboxes: usize =
            parsed("SKYSCALE_MAX_SANDBOXES", 256, "a whole number of sandboxes")?;
        if max_sandboxes == 0 {
            bail!("SKYSCALE_MAX_SANDBOXES=0 is invalid: at least one sandbox is needed");
        }
        let log_retention =
            duration_var("SKYSCALE_LOG_RETENTION", Duration::from_secs(7 * 86_400))?;
        let log_max_mb: u64 = parsed("SKYSCALE_LOG_MAX_MB", 256, "a whole number of megabytes")?;
        // One invocation's logs are at most about half a MB: a smaller bound could not keep
        // even the newest.
        if log_max_mb == 0 {
            bail!(
                "SKYSCALE_LOG_MAX_MB=0 is invalid: at least 1 MB is needed to keep the newest logs"
            );
        }
        let max_records: u64 = parsed(
            "SKYSCALE_MAX_RECORDS",
            1_000_000,
            "a whole number of records",
        )?;
        if max_records == 0 {
            bail!("SKYSCALE_MAX_RECORDS=0 is invalid: at least one record must be kept");
        }
        // Lambda's default quota, 75 GB.
        let code_storage_mb: u64 = parsed(
            "SKYSCALE_CODE_STORAGE_MB",
            75 * 1024,
            "a whole number of megabytes",
        )?;
        if code_storage_mb == 0 {
            bail!(
                "SKYSCALE_CODE_STORAGE_MB=0 is invalid: at least 1 MB is needed to store any code"
            );
        }
        let bytecode = match var("SKYSCALE_BYTECODE")?
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => bail!("SKYSCALE_BYTECODE={other:?} is invalid: expected on or off"),
        };
        let server = ServerConfig::from_env()?;
        let python_sdk_dir = PathBuf::from(
            var("SKYSCALE_PYTHON_SDK_DIR")?
                .unwrap_or_else(|| "/usr/local/lib/skyscale/python-sdk".into()),
        );
        let cpu_mb_per_vcpu = match var("SKYSCALE_CPU_MB_PER_VCPU")?.as_deref() {
            None => NonZeroU32::new(DEFAULT_CPU_MB_PER_VCPU),
            Some("off") => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n @ 64..=1_000_000) => NonZeroU32::new(n),
                _ => bail!(
                    "SKYSCALE_CPU_MB_PER_VCPU={v:?} is invalid: expected megabytes of memory per \
                     vCPU between 64 and 1000000 (Lambda: 1769), or off for no CPU quota"
                ),
            },
        };
        let sandbox_uids = match var("SKYSCALE_SANDBOX_UIDS")? {
            None => DEFAULT_UID_RANGE,
            Some(v) => v
                .parse()
                .map_err(|e| anyhow::anyhow!("SKYSCALE_SANDBOX_UIDS={v:?} is invalid: {e}"))?,
        };
        let sandbox_root = PathBuf::from(
            var("SKYSCALE_SANDBOX_ROOT")?.unwrap_or_else(|| "/run/skyscale/sandboxes".into()),
        );
        if !sandbox_root.is_absolute() {
            bail!(
                "SKYSCALE_SANDBOX_ROOT={:?} is invalid: expected an absolute path",
                sandbox_root.display()
            );
        }
        let failpoint = var("SKYSCALE_FAILPOINT")?
            .map(|v| {
                v.parse()
                    .map_err(|e| anyhow::anyhow!("SKYSCALE_FAILPOINT={v:?} is invalid: {e}"))
            })
            .transpose()?;
        let defaults = skyscale_core::EventSettings::default();
        let async_concurrency: usize = parsed(
            "SKYSCALE_ASYNC_CONCURRENCY",
            defaults.max_in_flight,
            "a whole number of events",
        )?;
        if async_concurrency == 0 {
            bail!(
                "SKYSCALE_ASYNC_CONCURRENCY=0 is invalid: at least one event must be able to run"
            );
        }
        let events = skyscale_core::EventSettings {
            retry_backoff: duration_var("SKYSCALE_ASYNC_RETRY_BACKOFF", defaults.retry_backoff)?,
            throttle_backoff: duration_var(
                "SKYSCALE_ASYNC_THROTTLE_BACKOFF",
                defaults.throttle_backoff,
            )?,
            max_throttle_backoff: duration_var(
                "SKYSCALE_ASYNC_MAX_THROTTLE_BACKOFF",
                defaults.max_throttle_backoff,
            )?,
            lease: duration_var("SKYSCALE_ASYNC_LEASE", defaults.lease)?,
            idempotency_window: duration_var(
                "SKYSCALE_IDEMPOTENCY_WINDOW",
                defaults.idempotency_window,
            )?,
            max_in_flight: async_concurrency,
            ..defaults
        };
        let cluster = ClusterConfig::from_env()?;
        if database_url.is_none() {
            let role = match &cluster {
                ClusterConfig::All => None,
                ClusterConfig::Api(_) => Some("api"),
                ClusterConfig::Worker { .. } => Some("worker"),
            };
            if let Some(role) = role {
                bail!(
                    "SKYSCALE_ROLE={role} needs SKYSCALE_DATABASE_URL: the nodes of a cluster \
                     share a PostgreSQL database (SQLite is one machine's single node, \
                     SKYSCALE_ROLE=all)"
                );
            }
        }
        Ok(Self {
            cluster,
            events,
            server,
            python_sdk_dir,
            code_storage_bytes: code_storage_mb.saturating_mul(1024 * 1024),
            bytecode,
            cpu_mb_per_vcpu,
            sandbox_uids,
            sandbox_root,
            failpoint,
            log_retention,
            log_max_bytes: log_max_mb.saturating_mul(1024 * 1024),
            max_records,
            keep_alive,
            memory_budget_mb,
            max_sandboxes,
            shutdown_grace,
            listen: SocketAddr::new(host, port),
            db_path,
            database_url,
            data_dir,
            log_level,
            log_format,
            warm_pool_size,
            driver,
            runsc_platform,
            admin_key,
            agent_path,
        })
    }
}

/// How the HTTP server guards itself against idle, slow and unauthenticated clients.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Open connections at most (before the open-file limit lowers it).
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    /// Bytes that requests not yet authenticated may buffer together.
    pub unauthenticated_buffer_bytes: usize,
    /// The longest a streaming response (a log follow) lives.
    pub stream_max_lifetime: Duration,
}

/// The largest request body (a CreateFunction with a 50 MB zip in base64): the budget for
/// unauthenticated bytes must hold at least one.
const LARGEST_BODY_MB: usize = 70;

impl ServerConfig {
    fn from_env() -> anyhow::Result<Self> {
        let max_connections: usize = parsed(
            "SKYSCALE_MAX_CONNECTIONS",
            4096,
            "a whole number of connections",
        )?;
        if max_connections == 0 {
            bail!("SKYSCALE_MAX_CONNECTIONS=0 is invalid: at least one connection is needed");
        }
        let buffer_mb: usize = parsed(
            "SKYSCALE_UNAUTHENTICATED_BUFFER_MB",
            80,
            "a whole number of megabytes",
        )?;
        if buffer_mb < LARGEST_BODY_MB {
            bail!(
                "SKYSCALE_UNAUTHENTICATED_BUFFER_MB={buffer_mb} is invalid: at least \
                 {LARGEST_BODY_MB} MB are needed to read the largest request (a 50 MB zip in \
                 base64)"
            );
        }
        Ok(Self {
            max_connections,
            header_timeout: duration_var("SKYSCALE_HEADER_TIMEOUT", Duration::from_secs(10))?,
            idle_timeout: duration_var("SKYSCALE_IDLE_TIMEOUT", Duration::from_secs(60))?,
            body_timeout: duration_var("SKYSCALE_BODY_TIMEOUT", Duration::from_secs(60))?,
            unauthenticated_buffer_bytes: buffer_mb.saturating_mul(1024 * 1024),
            stream_max_lifetime: duration_var(
                "SKYSCALE_STREAM_MAX_LIFETIME",
                Duration::from_secs(3600),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("10 minutes"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
