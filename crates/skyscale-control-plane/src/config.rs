//! Configuration from the environment, validated once into typed values. A bad value stops
//! the process with a message that names the variable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use skyscale_types::ApiKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    Gvisor,
    Runc,
}

#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub db_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_level: tracing::Level,
    pub warm_pool_size: u32,
    pub driver: DriverKind,
    pub runsc_platform: String,
    pub admin_key: Option<ApiKey>,
    pub agent_path: PathBuf,
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
        let warm_pool_size: u32 = parsed("WARM_POOL_SIZE", 5, "a whole number of sandboxes")?;
        let driver = match var("SKYSCALE_DRIVER")?.as_deref() {
            None | Some("gvisor") => DriverKind::Gvisor,
            Some("runc") => DriverKind::Runc,
            Some(other) => bail!("SKYSCALE_DRIVER={other:?} is invalid: expected gvisor or runc"),
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
        Ok(Self {
            listen: SocketAddr::new(host, port),
            db_path,
            data_dir,
            log_level,
            warm_pool_size,
            driver,
            runsc_platform,
            admin_key,
            agent_path,
        })
    }
}
