//! Fixtures for the driver tests: a driver with its own state root, bundle directory and cgroup
//! parent, and a tiny Python "probe" as the sandbox's init that executes snippets sent over
//! the agent channel and answers with one JSON line each.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use skyscale_sandbox::{Driver, OciConfig, OciDriver, Runtime, Sandbox, SandboxId, SandboxSpec};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Host Python (Debian's); the pyenv shim on `PATH` does not work inside a sandbox.
pub const PYTHON: &str = "/usr/bin/python3";

/// Reads one JSON request per line, `exec`s it with `out` (a write that loops until every
/// byte is written: trap 4) in scope, and answers `{"ok": result}` or `{"err": "..."}`.
pub const PROBE: &str = r#"
import json, os, sys
def out(data):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
def reply(obj):
    out((json.dumps(obj) + "\n").encode())
for line in sys.stdin:
    scope = {"os": os, "out": out}
    try:
        exec(json.loads(line), scope)
        reply({"ok": scope.get("result")})
    except BaseException as e:
        reply({"err": type(e).__name__ + ": " + str(e)})
"#;

/// Bound on any single read from a sandbox.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "skyscale_sandbox=info".into()),
        )
        .with_test_writer()
        .try_init();
}

pub struct Fixture {
    pub driver: OciDriver,
    pub code_dir: PathBuf,
    pub cgroup_parent: String,
    pub tmp: tempfile::TempDir,
}

pub fn config(runtime: Runtime, tmp: &Path, cgroup_parent: &str) -> OciConfig {
    let mut cfg = OciConfig::new(
        runtime,
        tmp.join("state"),
        tmp.join("bundles"),
        tmp.join("runtime"),
        cgroup_parent,
    );
    cfg.init = vec![PYTHON.into(), "-u".into(), "-c".into(), PROBE.into()];
    cfg
}

/// A driver in a fresh temporary directory, failing loudly if the runtime is not installed.
pub fn fixture(runtime: Runtime) -> Fixture {
    init_tracing();
    let tmp = tempfile::tempdir().expect("tempdir");
    let code_dir = tmp.path().join("code");
    std::fs::create_dir(&code_dir).unwrap();
    std::fs::write(
        code_dir.join("handler.py"),
        "def handler(e, c):\n    return e\n",
    )
    .unwrap();
    // Writable by every user (each sandbox has a uid of its own), so that only the
    // read-only mount can refuse a write.
    std::fs::set_permissions(
        &code_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::create_dir(tmp.path().join("runtime")).unwrap();
    let cgroup_parent = format!("skyscale-test/{}", uuid::Uuid::new_v4().simple());
    let cfg = config(runtime, tmp.path(), &cgroup_parent);
    let driver = match OciDriver::new(cfg) {
        Ok(d) => d,
        Err(e) => panic!("the sandbox runtime is required for these tests (CI installs it): {e}"),
    };
    Fixture {
        driver,
        code_dir,
        cgroup_parent,
        tmp,
    }
}

impl Fixture {
    pub fn spec(&self, memory_mb: u32, pids_limit: i64) -> SandboxSpec {
        SandboxSpec {
            id: SandboxId::generate(),
            code_dir: self.code_dir.clone(),
            opt_dir: None,
            output_dir: None,
            memory_mb,
            tmp_mb: 16,
            pids_limit,
            network: false,
        }
    }

    pub async fn start(&self, memory_mb: u32, pids_limit: i64) -> Probe {
        let spec = self.spec(memory_mb, pids_limit);
        let sandbox = self.driver.create(&spec).await.expect("create sandbox");
        Probe::new(sandbox)
    }

    /// Host pids of a running sandbox's processes (from its cgroup).
    pub fn pids_of(&self, id: &SandboxId) -> Vec<u32> {
        let mut pids = Vec::new();
        for dir in self.driver.cgroup_dirs(id) {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(
                    procs
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Reads one cgroup file of a sandbox (e.g. `memory`, `memory.limit_in_bytes`).
    pub fn cgroup_value(&self, id: &SandboxId, controller: &str, file: &str) -> String {
        let dir = self
            .driver
            .cgroup_dirs(id)
            .into_iter()
            .find(|d| d.components().any(|c| c.as_os_str() == controller))
            .unwrap_or_else(|| panic!("no {controller} hierarchy"));
        std::fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Checks that nothing of a sandbox is left on the host.
    pub fn assert_gone(&self, id: &SandboxId) {
        assert!(!self.driver.has_state(id), "state entry of {id} left");
        assert!(!self.driver.bundle_dir(id).exists(), "bundle of {id} left");
        assert_eq!(self.driver.uid_of(id), None, "uid claim of {id} left");
        for dir in self.driver.cgroup_dirs(id) {
            assert!(!dir.exists(), "cgroup {} left", dir.display());
        }
        assert!(
            processes_mentioning(id.as_str()).is_empty(),
            "processes of {id} left"
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Best effort: the tests remove their sandboxes; this only tidies the shared
        // `skyscale-test` directory in each hierarchy.
        for root in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(root.path().join(&self.cgroup_parent));
        }
    }
}

/// Pids whose command line mentions `needle` (the runtime processes carry the id).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// The test's side of the agent channel.
pub struct Probe {
    pub id: SandboxId,
    to: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    from: BufReader<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
}

impl Probe {
    pub fn new(sandbox: Sandbox) -> Self {
        Self {
            id: sandbox.id,
            to: sandbox.to_agent,
            from: BufReader::new(sandbox.from_agent),
        }
    }

    pub async fn send(&mut self, code: &str) {
        let mut line = serde_json::to_string(code).unwrap();
        line.push('\n');
        self.to
            .write_all(line.as_bytes())
            .await
            .expect("write to sandbox");
        self.to.flush().await.unwrap();
    }

    /// Reads one line; `None` on EOF (the sandbox died).
    pub async fn recv_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(READ_TIMEOUT, self.from.read_line(&mut line))
            .await
            .expect("timed out reading from the sandbox")
            .ok()?;
        (n > 0).then_some(line)
    }

    /// Runs `code` inside; returns `Ok(result)` or `Err(python error)`.
    pub async fn exec(&mut self, code: &str) -> Result<Value, String> {
        self.send(code).await;
        let line = self.recv_line().await.expect("sandbox closed the channel");
        let reply: Value = serde_json::from_str(&line).expect("reply is JSON");
        match reply.get("err") {
            Some(e) => Err(e.as_str().unwrap_or_default().to_owned()),
            None => Ok(reply["ok"].clone()),
        }
    }

    /// Reads exactly `n` bytes (bounded by [`READ_TIMEOUT`]).
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(READ_TIMEOUT, self.from.read_exact(&mut buf))
            .await
            .expect("timed out reading from the sandbox")
            .expect("reading from the sandbox");
        buf
    }

    /// True once the sandbox closed the channel (EOF), false if it is still open at the deadline.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.from.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}
