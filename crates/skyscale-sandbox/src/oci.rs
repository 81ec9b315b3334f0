//! The OCI driver: one implementation for runsc (gVisor) and runc, which take the same bundle.
//!
//! # Concurrency
//!
//! Creates and destroys of different sandboxes run concurrently; the runtime CLIs lock their
//! own state per container. The driver keeps one small set, `live`, behind a `std` mutex that
//! is never held across an `.await`: the ids created through this driver and not destroyed yet.
//! It serves three purposes: an id is never used twice (runsc deletes a live container's state
//! when `run` reuses its id: trap 2); `cleanup_leftovers` never touches a sandbox of this run;
//! and the instance's cgroup parent directory is removed when the last sandbox goes, with no
//! race against a concurrent create (the create registers its id under the same lock before the
//! runtime can create the parent again).

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::bundle::{write_bundle, BundleParams, HostLayout};
use crate::cgroup;
use crate::command::{forward_stderr, run_cli, Capture, CliOutput};
use crate::config::{OciConfig, Runtime};
use crate::reaper::{install_reaper, reap_orphans, spawn_tracked};
use crate::{Driver, DriverError, Sandbox, SandboxId, SandboxSpec};

const MIB: i64 = 1 << 20;
/// How long `destroy` waits for a killed sandbox's processes to be reaped, and for its cgroups
/// to empty, before going on.
const GONE_WAIT: Duration = Duration::from_secs(3);

/// Sandboxes under runsc or runc; see the module docs.
#[derive(Debug)]
pub struct OciDriver {
    cfg: OciConfig,
    binary: PathBuf,
    layout: HostLayout,
    cgroup_roots: Vec<PathBuf>,
    live: Mutex<HashSet<SandboxId>>,
}

/// Why a create failed, before cleaning up. `Run` still owns the stderr forwarder, whose
/// capture completes only once the cleanup has closed every copy of the pipe.
enum Failed {
    Error(DriverError),
    Run {
        command: String,
        message: String,
        capture: Capture,
        stderr: Option<JoinHandle<()>>,
    },
}

impl OciDriver {
    /// Checks the configuration and the runtime binary (`NotInstalled` with an install hint if
    /// it is missing), creates the state and bundle directories, and installs the process-wide
    /// reaper (see [`crate::reaper`]).
    pub fn new(cfg: OciConfig) -> Result<Self, DriverError> {
        let binary = cfg.validate()?;
        install_reaper()?;
        for dir in [&cfg.state_root, &cfg.bundles_dir] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            cfg,
            binary,
            layout: HostLayout::detect(),
            cgroup_roots: cgroup::hierarchy_roots(),
            live: Mutex::new(HashSet::new()),
        })
    }

    pub fn config(&self) -> &OciConfig {
        &self.cfg
    }

    /// The runtime binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The cgroup directories a sandbox has (or had) in every hierarchy.
    pub fn cgroup_dirs(&self, id: &SandboxId) -> Vec<PathBuf> {
        cgroup::sandbox_dirs(&self.cgroup_roots, &self.cfg.cgroup_parent, id)
    }

    /// The bundle directory of a sandbox.
    pub fn bundle_dir(&self, id: &SandboxId) -> PathBuf {
        self.cfg.bundles_dir.join(id.as_str())
    }

    /// Whether the runtime still has state for `id` in this instance's state root.
    pub fn has_state(&self, id: &SandboxId) -> bool {
        state_ids(&self.cfg.state_root).contains(id)
    }

    fn live(&self) -> MutexGuard<'_, HashSet<SandboxId>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn global_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--root".into(), self.cfg.state_root.clone().into()];
        if let Runtime::Runsc { platform } = &self.cfg.runtime {
            args.push(format!("--platform={platform}").into());
            args.push("--network=none".into());
            if let Some(log) = &self.cfg.debug_log {
                args.push("--debug".into());
                let mut flag = OsString::from("--debug-log=");
                flag.push(log);
                args.push(flag);
            }
        }
        args
    }

    fn step_name(&self, step: &str) -> String {
        format!("{} {step}", self.cfg.runtime.binary_name())
    }

    /// Runs one runtime subcommand, bounded by `command_timeout`.
    async fn cli(
        &self,
        id: &SandboxId,
        step: &str,
        args: &[&str],
    ) -> Result<CliOutput, DriverError> {
        let mut all = self.global_args();
        all.extend(args.iter().map(OsString::from));
        run_cli(&self.binary, &all, self.cfg.command_timeout)
            .await
            .map_err(|message| DriverError::Command {
                id: id.clone(),
                command: self.step_name(step),
                message,
            })
    }

    fn memory_limit(&self, spec: &SandboxSpec) -> i64 {
        let overhead = match self.cfg.runtime {
            Runtime::Runsc { .. } => i64::from(self.cfg.runsc_overhead_mb),
            Runtime::Runc => 0,
        };
        (i64::from(spec.memory_mb) + overhead) * MIB
    }

    fn pids_limit(&self, spec: &SandboxSpec) -> i64 {
        match self.cfg.runtime {
            Runtime::Runsc { .. } => spec.pids_limit + 10000,
            Runtime::Runc => spec.pids_limit,
        }
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<Sandbox, Failed> {
        let id = &spec.id;
        let dir = self.bundle_dir(id);
        let mut env = vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_owned()];
        env.extend(self.cfg.env.iter().map(|(k, v)| format!("{k}={v}")));
        let params = BundleParams {
            code_dir: &spec.code_dir,
            runtime_dir: &self.cfg.runtime_dir,
            args: &self.cfg.init,
            env,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            memory_limit_bytes: self.memory_limit(spec),
            tmp_mb: spec.tmp_mb,
            pids_limit: self.pids_limit(spec),
            cgroups_path: format!("/{}/{}", self.cfg.cgroup_parent, id),
            nproc: match self.cfg.runtime {
                Runtime::Runsc { .. } => u64::try_from(spec.pids_limit).ok(),
                Runtime::Runc => None,
            },
        };
        for (what, path) in [
            ("code_dir", &spec.code_dir),
            ("runtime_dir", &self.cfg.runtime_dir),
        ] {
            if !path.is_dir() {
                let msg = format!("{what} {} is not a directory", path.display());
                return Err(Failed::Error(DriverError::Bundle {
                    id: id.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, msg),
                }));
            }
        }
        // A handful of small files: cheap enough to write inline.
        write_bundle(&dir, &self.layout, &params).map_err(|source| {
            Failed::Error(DriverError::Bundle {
                id: id.clone(),
                source,
            })
        })?;

        let mut cmd = Command::new(&self.binary);
        cmd.args(self.global_args())
            .args(["run", "--detach", "--bundle"])
            .arg(&dir)
            .arg(id.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command = self.step_name("run");
        let mut child = spawn_tracked(&mut cmd).map_err(|e| {
            Failed::Error(DriverError::Command {
                id: id.clone(),
                command: command.clone(),
                message: format!("spawning: {e}"),
            })
        })?;
        let stdin = child.child_mut().stdin.take();
        let stdout = child.child_mut().stdout.take();
        let capture = Capture::new();
        let stderr = child
            .child_mut()
            .stderr
            .take()
            .map(|e| tokio::spawn(forward_stderr(id.clone(), e, capture.clone())));

        let message = match tokio::time::timeout(self.cfg.create_timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => match (stdin, stdout) {
                (Some(to_agent), Some(from_agent)) => {
                    capture.take();
                    return Ok(Sandbox {
                        id: id.clone(),
                        to_agent: Box::new(to_agent),
                        from_agent: Box::new(from_agent),
                    });
                }
                _ => "stdio pipes missing".to_owned(),
            },
            Ok(Ok(status)) => format!("exited with {status}"),
            Ok(Err(e)) => format!("waiting: {e}"),
            Err(_) => {
                let _ = child.kill().await;
                format!("timed out after {:?}", self.cfg.create_timeout)
            }
        };
        Err(Failed::Run {
            command,
            message,
            capture,
            stderr,
        })
    }

    /// The pid the runtime reports for the sandbox (runc: the container's init; runsc: the
    /// sandbox process), if it has one.
    async fn state_pid(&self, id: &SandboxId) -> Option<i32> {
        let out = self.cli(id, "state", &["state", id.as_str()]).await.ok()?;
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        state["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0)
    }

    /// Kills, reaps and deletes one sandbox and removes its bundle and cgroups. Every step
    /// runs even if an earlier one failed; the first failure is returned.
    async fn destroy_inner(&self, id: &SandboxId) -> Result<(), DriverError> {
        let started = Instant::now();
        let mut first_err: Option<DriverError> = None;
        if self.has_state(id) {
            let pid = self.state_pid(id).await;
            match self.cli(id, "kill", &["kill", id.as_str(), "KILL"]).await {
                Ok(out) if !out.success() => {
                    tracing::debug!(sandbox = %id, "kill: {}", out.message())
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(sandbox = %id, error = %e, "kill"),
            }
            if let Some(pid) = pid {
                wait_reaped(pid, GONE_WAIT).await;
            }
            let deleted = self
                .cli(id, "delete", &["delete", "--force", id.as_str()])
                .await;
            let failure = match deleted {
                Ok(out) if !out.success() => Some(out.message()),
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(message) = failure.filter(|_| self.has_state(id)) {
                first_err.get_or_insert(DriverError::Command {
                    id: id.clone(),
                    command: self.step_name("delete"),
                    message,
                });
            }
        }
        match std::fs::remove_dir_all(self.bundle_dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                first_err.get_or_insert(DriverError::Bundle {
                    id: id.clone(),
                    source: e,
                });
            }
            _ => {}
        }
        if let Err((dir, e)) = cgroup::remove_dirs(&self.cgroup_dirs(id), GONE_WAIT).await {
            first_err.get_or_insert(DriverError::Command {
                id: id.clone(),
                command: format!("rmdir {}", dir.display()),
                message: e.to_string(),
            });
        }
        {
            let mut live = self.live();
            live.remove(id);
            if live.is_empty() {
                cgroup::remove_parent(&self.cgroup_roots, &self.cfg.cgroup_parent);
            }
        }
        tracing::debug!(sandbox = %id, elapsed = ?started.elapsed(), ok = first_err.is_none(), "destroyed");
        first_err.map_or(Ok(()), Err)
    }

    /// Ids the runtime lists in the state root (`list` output, plus a scan of the directory in
    /// case `list` fails on a damaged entry).
    async fn listed_ids(&self) -> BTreeSet<SandboxId> {
        let mut ids = state_ids(&self.cfg.state_root);
        let probe = SandboxId::generate();
        let format = match self.cfg.runtime {
            Runtime::Runsc { .. } => "-format=json",
            Runtime::Runc => "--format=json",
        };
        match self.cli(&probe, "list", &["list", format]).await {
            Ok(out) if out.success() => {
                let entries: Option<Vec<serde_json::Value>> =
                    serde_json::from_slice(&out.stdout).unwrap_or_default();
                ids.extend(
                    entries
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|e| e["id"].as_str().and_then(SandboxId::parse)),
                );
            }
            Ok(out) => tracing::warn!("listing leftovers: {}", out.message()),
            Err(e) => tracing::warn!(error = %e, "listing leftovers"),
        }
        ids
    }
}

/// Ids with an entry in a state root. runc keeps a directory `<id>`; runsc keeps files named
/// `<container id>_sandbox:<sandbox id>.state` (and `.lock`).
fn state_ids(root: &Path) -> BTreeSet<SandboxId> {
    let mut ids = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return ids;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let head = name.get(..SandboxId::PREFIX.len() + 32).unwrap_or(name);
        if let Some(id) = SandboxId::parse(head) {
            ids.insert(id);
        }
    }
    ids
}

/// Waits until `pid` is gone, reaping it (and any other orphan) as it exits. Returns early if
/// `pid` is a zombie that is not our child (left by a previous control-plane process: nobody
/// here can reap it).
async fn wait_reaped(pid: i32, wait: Duration) {
    let deadline = Instant::now() + wait;
    let me = std::process::id();
    loop {
        reap_orphans();
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return;
        };
        // `pid (comm) S ppid ...`: comm may contain spaces, so parse after the last ')'.
        let mut rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .unwrap_or("")
            .split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state == "Z" && ppid != me {
            tracing::warn!(pid, ppid, "sandbox process is a zombie of another parent");
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(pid, "sandbox process still present after {wait:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[async_trait::async_trait]
impl Driver for OciDriver {
    fn name(&self) -> &'static str {
        self.cfg.runtime.driver_name()
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox, DriverError> {
        let id = spec.id.clone();
        let span = tracing::info_span!("sandbox_create", sandbox = %id, driver = self.name());
        async {
            let reused = !self.live().insert(id.clone());
            if reused || self.has_state(&id) {
                if !reused {
                    self.live().remove(&id);
                }
                return Err(DriverError::Command {
                    id: id.clone(),
                    command: self.step_name("run"),
                    message: "sandbox id already in use (ids are never reused)".to_owned(),
                });
            }
            let started = Instant::now();
            let failed = match self.start(spec).await {
                Ok(sandbox) => {
                    tracing::debug!(elapsed = ?started.elapsed(), "created");
                    return Ok(sandbox);
                }
                Err(failed) => failed,
            };
            if let Err(e) = self.destroy_inner(&id).await {
                tracing::warn!(error = %e, "cleaning up after a failed create");
            }
            Err(match failed {
                Failed::Error(e) => e,
                Failed::Run {
                    command,
                    message,
                    capture,
                    stderr,
                } => {
                    if let Some(task) = stderr {
                        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
                    }
                    let captured = capture.take();
                    let captured = captured.trim();
                    DriverError::Command {
                        id: id.clone(),
                        command,
                        message: if captured.is_empty() {
                            message
                        } else {
                            format!("{message}: {captured}")
                        },
                    }
                }
            })
        }
        .instrument(span)
        .await
    }

    async fn destroy(&self, id: &SandboxId) -> Result<(), DriverError> {
        let span = tracing::info_span!("sandbox_destroy", sandbox = %id, driver = self.name());
        self.destroy_inner(id).instrument(span).await
    }

    async fn cleanup_leftovers(&self) -> Result<usize, DriverError> {
        let mut ids = self.listed_ids().await;
        if let Ok(entries) = std::fs::read_dir(&self.cfg.bundles_dir) {
            ids.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(SandboxId::parse)),
            );
        }
        ids.extend(cgroup::leftover_ids(
            &self.cgroup_roots,
            &self.cfg.cgroup_parent,
        ));
        let live = self.live().clone();
        ids.retain(|id| !live.contains(id));
        let mut removed = 0;
        for id in &ids {
            let span = tracing::info_span!("sandbox_cleanup", sandbox = %id, driver = self.name());
            match self.destroy_inner(id).instrument(span).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(error = %e, "removing leftover sandbox"),
            }
        }
        if !ids.is_empty() {
            tracing::info!(found = ids.len(), removed, "removed leftover sandboxes");
        }
        Ok(removed)
    }
}
