//! The naive-sandbox reference: a fresh `runsc run` per invocation, from one OCI bundle built
//! by hand (read-only skeleton root, host `/usr` bound read-only, the handler at /var/task),
//! whose process imports the handler, calls it once with the payload and prints the JSON.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::json;

use crate::daemon::HELLO_HANDLER;
use crate::load::EXPECTED_MESSAGE;

const PROGRAM: &str = "import json, sys, uuid
sys.path.insert(0, '/var/task')
import handler
class Context: pass
c = Context()
c.aws_request_id = c.request_id = str(uuid.uuid4())
sys.stdout.write(json.dumps(handler.handler(json.loads(sys.argv[1]), c)) + '\\n')
";
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const SYSTEM_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// A bundle and a private runsc state root; deletes any container it started on drop.
pub struct Naive {
    dir: tempfile::TempDir,
    live: Option<String>,
    seq: u32,
}

fn ro_bind(dest: &str, source: &Path) -> serde_json::Value {
    json!({"destination": dest, "type": "bind", "source": source,
           "options": ["bind", "ro", "nosuid", "nodev"]})
}

impl Naive {
    pub fn new(payload: &[u8]) -> anyhow::Result<Naive> {
        let dir = tempfile::Builder::new()
            .prefix("skyscale-bench-naive-")
            .tempdir()
            .context("creating a temporary directory")?;
        let bundle = dir.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        let task = dir.path().join("task");
        for d in ["proc", "dev", "sys", "tmp", "etc", "var/task"] {
            std::fs::create_dir_all(rootfs.join(d))?;
        }
        std::fs::create_dir_all(&task)?;
        std::fs::write(task.join("handler.py"), HELLO_HANDLER)?;
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/false\n",
        )?;
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc"}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "mode=755"]}),
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                   "options": ["nosuid", "noexec", "nodev", "ro"]}),
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "size=64m"]}),
            ro_bind("/var/task", &task),
        ];
        for name in SYSTEM_DIRS {
            let host = Path::new("/").join(name);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&host)?, rootfs.join(name))?;
            } else if meta.is_dir() {
                std::fs::create_dir_all(rootfs.join(name))?;
                mounts.push(ro_bind(&format!("/{name}"), &host));
            }
        }
        let event = std::str::from_utf8(payload).context("payload is not UTF-8")?;
        let config = json!({
            "ociVersion": "1.0.0",
            "process": {
                "user": {"uid": 0, "gid": 0},
                "args": ["/usr/bin/python3", "-c", PROGRAM, event],
                "env": ["PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"],
                "cwd": "/var/task",
                "capabilities": {"bounding": [], "effective": [], "permitted": []},
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "naive",
            "mounts": mounts,
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ]}
        });
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        Ok(Naive {
            dir,
            live: None,
            seq: 0,
        })
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn delete(&mut self) {
        if let Some(id) = self.live.take() {
            let _ = std::process::Command::new("runsc")
                .arg("--root")
                .arg(self.state())
                .args(["delete", "-force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// One invocation: `runsc run` in the foreground (reaped when it exits), then
    /// `delete -force`. Returns the time from spawn to exit with the answer read.
    pub async fn invoke_once(&mut self) -> anyhow::Result<Duration> {
        self.seq += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Fixed width: runsc matches container ids by prefix.
        let id = format!("skybench{nanos:016x}{:08x}", self.seq);
        self.live = Some(id.clone());
        let t = Instant::now();
        let child = tokio::process::Command::new("runsc")
            .arg("--root")
            .arg(self.state())
            .args(["--network=none", "--platform=ptrace", "run", "--bundle"])
            .arg(self.dir.path().join("bundle"))
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting runsc")?;
        let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("runsc run did not finish within {RUN_TIMEOUT:?}"))?
            .context("waiting for runsc")?;
        let elapsed = t.elapsed();
        self.delete();
        if !out.status.success() {
            bail!(
                "runsc run exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "runsc output is not JSON: {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        if body.get("message").and_then(|m| m.as_str()) != Some(EXPECTED_MESSAGE) {
            bail!("unexpected answer from the naive sandbox: {body}");
        }
        Ok(elapsed)
    }
}

impl Drop for Naive {
    fn drop(&mut self) {
        self.delete();
    }
}
