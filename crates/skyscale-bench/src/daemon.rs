//! A real `skyscale-control-plane` in a temporary directory, and the few API calls the
//! benchmark makes on it. Dropping a `Daemon` stops it with SIGTERM (and waits), so the
//! sandboxes it started are destroyed also when the benchmark fails or is interrupted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use bytes::Bytes;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::http::Conn;

/// The admin key every benchmark daemon is started with.
pub const ADMIN_KEY: &str = "SKYBENCHADMIN001.bench-secret-bench-secret-bench-secret-01";
/// The hello-world example, compiled in so the benchmark runs the product's own example.
pub const HELLO_HANDLER: &str = include_str!("../../../examples/hello-world/handler.py");
const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Daemon {
    pub driver: String,
    /// What it is called in messages: the driver, or its role in a cluster.
    pub label: String,
    /// Its public API, or a worker's internal address.
    pub addr: SocketAddr,
    pub pid: u32,
    child: Option<tokio::process::Child>,
    dir: tempfile::TempDir,
}

/// How to start a daemon other than the single node of [`Daemon::start`].
pub struct Launch<'a> {
    /// For messages: `API node`, `worker`.
    pub label: &'a str,
    /// `SKYSCALE_ROLE`: `all`, `api` or `worker`.
    pub role: &'a str,
    /// `SKYSCALE_DRIVER` (an API node runs no sandboxes: none).
    pub driver: Option<&'a str>,
    /// An SQLite database in the daemon's directory; else `env` names the database.
    pub sqlite: bool,
    /// Run it in this network namespace (`/run/netns/<name>`) with `nsenter`, which (like
    /// `setpriv`) execs the daemon: its pid is the daemon's.
    pub netns: Option<PathBuf>,
    pub env: Vec<(&'a str, String)>,
}

impl Daemon {
    /// Starts the control plane from `bin_dir` with the given extra environment and waits
    /// for its "listening on" line.
    pub async fn start(
        bin_dir: &Path,
        driver: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::launch(
            bin_dir,
            Launch {
                label: driver,
                role: "all",
                driver: Some(driver),
                sqlite: true,
                netns: None,
                env: env.to_vec(),
            },
        )
        .await
    }

    /// Starts the control plane as `how` says and waits until it listens.
    pub async fn launch(bin_dir: &Path, how: Launch<'_>) -> anyhow::Result<Self> {
        let label = how.label;
        let dir = tempfile::Builder::new()
            .prefix("skyscale-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let log = std::fs::File::create(dir.path().join("control-plane.log"))
            .context("creating the control-plane log")?;
        let daemon = bin_dir.join("skyscale-control-plane");
        let mut cmd = match &how.netns {
            // The parent-death signal: should the benchmark die, the worker still shuts
            // down (and destroys its sandboxes) instead of living on in a namespace that
            // the next run removes.
            Some(netns) => {
                let mut c = tokio::process::Command::new("setpriv");
                c.args(["--pdeathsig", "TERM", "--", "nsenter"])
                    .arg(format!("--net={}", netns.display()))
                    .arg("--")
                    .arg(&daemon);
                c
            }
            None => tokio::process::Command::new(&daemon),
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SKYSCALE_ROLE", how.role)
            .env("SKYSCALE_DATA_DIR", dir.path().join("data"))
            .env("SKYSCALE_ADMIN_KEY", ADMIN_KEY)
            .env("SKYSCALE_AGENT_PATH", bin_dir.join("skyscale-agent"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if how.role != "worker" {
            cmd.env("PORT", "0");
        }
        if how.sqlite {
            cmd.env("DB_PATH", dir.path().join("skyscale.db"));
        }
        if let Some(d) = how.driver {
            cmd.env("SKYSCALE_DRIVER", d);
        }
        for (k, v) in &how.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting skyscale-control-plane ({label})"))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("control plane ({label}) exited at once"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let mut daemon = Daemon {
            driver: how.driver.unwrap_or("none").to_owned(),
            label: label.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
            child: Some(child),
            dir,
        };
        let ready = if how.role == "worker" {
            "skyscale-control-plane worker listening on "
        } else {
            "skyscale-control-plane listening on "
        };
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix(ready) {
                    return Ok::<_, std::io::Error>(Some(url.trim().to_owned()));
                }
            }
            Ok(None)
        })
        .await;
        let url = match found {
            Ok(Ok(Some(url))) => url,
            other => bail!(
                "the control plane ({label}) did not start ({other:?}); log:\n{}",
                daemon.log_tail(30)
            ),
        };
        // Keep draining stdout so the daemon never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        daemon.addr = url
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("parsing the daemon address {url:?}"))?;
        Ok(daemon)
    }

    /// The memory cgroup directory holding this instance's sandboxes (`skyscale/<instance>`,
    /// the instance being derived from the data directory as the daemon does).
    pub fn memory_cgroup(&self) -> PathBuf {
        let data = self.dir.path().join("data");
        let data = data.canonicalize().unwrap_or(data);
        let digest = hex::encode(Sha256::digest(data.as_os_str().as_encoded_bytes()));
        PathBuf::from("/sys/fs/cgroup/memory/skyscale").join(&digest[..12])
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("control-plane.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub async fn conn(&self) -> anyhow::Result<Conn> {
        Conn::connect(self.addr, Some(ADMIN_KEY)).await
    }

    /// Creates a python3.11 function from the hello-world handler, with one full vCPU
    /// (1,769 MB at Lambda's ratio): the warm and cold figures measure the platform, and at
    /// 128 MB the CPU quota (7 % of a CPU) would bound a closed loop of invocations instead.
    pub async fn create_hello(&self, conn: &mut Conn, name: &str) -> anyhow::Result<()> {
        let memory = serde_json::json!({ "memory_mb": 1769 });
        self.create_function(conn, name, HELLO_HANDLER, memory)
            .await
    }

    /// Creates a python3.11 function with `source` as `handler.py` and `extra` settings
    /// (`memory_mb`, `timeout_s`, ...).
    pub async fn create_function(
        &self,
        conn: &mut Conn,
        name: &str,
        source: &str,
        extra: serde_json::Value,
    ) -> anyhow::Result<()> {
        let zip = handler_zip(source).context("zipping the handler")?;
        let mut body = serde_json::json!({
            "name": name,
            "runtime": "python3.11",
            "handler": "handler.handler",
            "description": "skyscale-bench",
            "code_zip_base64": base64::engine::general_purpose::STANDARD.encode(zip),
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = conn
            .post("/v1/functions", Bytes::from(serde_json::to_vec(&body)?))
            .await?;
        if r.status != 201 {
            bail!("creating {name}: HTTP {} {}", r.status, r.body_excerpt());
        }
        Ok(())
    }

    /// Changes the function's description, which retires its warm sandboxes.
    pub async fn touch(
        &self,
        conn: &mut Conn,
        name: &str,
        description: &str,
    ) -> anyhow::Result<()> {
        let body = serde_json::json!({ "description": description });
        let r = conn
            .patch(
                &format!("/v1/functions/{name}"),
                Bytes::from(serde_json::to_vec(&body)?),
            )
            .await?;
        if r.status != 200 {
            bail!("updating {name}: HTTP {} {}", r.status, r.body_excerpt());
        }
        Ok(())
    }

    /// `GET /v1/health` as JSON.
    pub async fn health(&self, conn: &mut Conn) -> anyhow::Result<serde_json::Value> {
        let r = conn.get("/v1/health").await?;
        if r.status != 200 {
            bail!("health: HTTP {} {}", r.status, r.body_excerpt());
        }
        serde_json::from_slice(&r.body).context("health is not JSON")
    }

    /// SIGTERM, then wait for the daemon to destroy its sandboxes and exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(self.pid).context("pid out of range")?);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => bail!("control plane exited with {status}"),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = child.try_wait();
                    bail!("control plane did not stop within {STOP_TIMEOUT:?}; killed it");
                }
                Err(e) => bail!("waiting for the control plane: {e}"),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "skyscale-bench: stopping the {} control plane: {e:#}",
                self.label
            );
        }
    }
}

fn handler_zip(source: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("handler.py", zip::write::SimpleFileOptions::default())?;
    w.write_all(source.as_bytes())?;
    Ok(w.finish()?.into_inner())
}
