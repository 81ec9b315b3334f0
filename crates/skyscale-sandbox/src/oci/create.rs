//! Creating a sandbox: write the bundle, `run --detach` with the agent channel as stdio.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::task::JoinHandle;

use super::{cpu_shares, OciDriver, UID_CLAIMS_DIR};
use crate::bundle::{write_bundle, BundleParams};
use crate::claims;
use crate::command::{forward_stderr, Capture};
use crate::config::Failpoint;
use crate::net;
use crate::reaper::spawn_tracked;
use crate::{DriverError, Sandbox, SandboxId, SandboxSpec};

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

impl Failed {
    /// The error to report, once the cleanup has run: a failed `run` carries what the runtime
    /// (or the sandbox) wrote on stderr.
    async fn into_error(self, id: &SandboxId) -> DriverError {
        match self {
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
        }
    }
}

/// How a sandbox starts: booted afresh (`run`), or resumed from a checkpoint image
/// (`restore`, runsc only).
#[derive(Debug, Clone, Copy)]
pub(super) enum Start<'a> {
    Run,
    Restore(&'a Path),
}

impl Start<'_> {
    fn step(&self) -> &'static str {
        match self {
            Start::Run => "run",
            Start::Restore(_) => "restore",
        }
    }
}

impl OciDriver {
    /// Registers the id, starts the sandbox and, if that fails, removes whatever it left.
    ///
    /// Not cancel-safe: if the caller drops this future, the `run` command is killed but a
    /// half-created sandbox may remain; `destroy(id)` (idempotent) removes it.
    pub(super) async fn create_inner(
        &self,
        spec: &SandboxSpec,
        how: Start<'_>,
    ) -> Result<Sandbox, DriverError> {
        let id = &spec.id;
        let fresh = self.live().insert(id.clone());
        if !fresh || self.has_state(id) {
            if fresh {
                self.live().remove(id);
            }
            return Err(DriverError::Command {
                id: id.clone(),
                command: self.step_name(how.step()),
                message: "sandbox id already in use (ids are never reused)".to_owned(),
            });
        }
        let started = Instant::now();
        match self.start(spec, how).await {
            Ok(sandbox) => {
                tracing::debug!(elapsed = ?started.elapsed(), step = how.step(), "created");
                Ok(sandbox)
            }
            Err(failed) => {
                if let Err(e) = self.destroy_inner(id).await {
                    tracing::warn!(error = %e, "cleaning up after a failed create");
                }
                Err(failed.into_error(id).await)
            }
        }
    }

    /// Starts a sandbox. Every host resource it creates is named or tagged by the sandbox id,
    /// and the bundle directory, created first and removed last by `destroy`, is the record
    /// of the id: a crash at any point leaves something the cleanup at the next start finds
    /// (`cleanup_leftovers` scans the bundle directory).
    async fn start(&self, spec: &SandboxSpec, how: Start<'_>) -> Result<Sandbox, Failed> {
        let id = &spec.id;
        let dir = self.bundle_dir(id);
        let bundle_err = |source: std::io::Error| {
            Failed::Error(DriverError::Bundle {
                id: id.clone(),
                source,
            })
        };
        let dirs = [
            ("code_dir", Some(&spec.code_dir)),
            ("opt_dir", spec.opt_dir.as_ref()),
            ("output_dir", spec.output_dir.as_ref()),
            ("runtime_dir", Some(&self.cfg.runtime_dir)),
        ];
        for (what, path) in dirs.into_iter().filter_map(|(w, p)| Some((w, p?))) {
            if !path.is_dir() {
                let msg = format!("{what} {} is not a directory", path.display());
                return Err(bundle_err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    msg,
                )));
            }
        }
        std::fs::create_dir_all(&self.cfg.bundles_dir)
            .and_then(|()| std::fs::create_dir(&dir))
            .map_err(bundle_err)?;
        let uid = claims::claim(
            Path::new(UID_CLAIMS_DIR),
            self.cfg.uids.first,
            self.cfg.uids.count,
            id,
        )
        .map_err(|message| {
            Failed::Error(DriverError::Command {
                id: id.clone(),
                command: "claim a sandbox uid".into(),
                message,
            })
        })?;
        if let Some(out) = &spec.output_dir {
            // The build writes as the sandbox's user: the directory is its own.
            std::os::unix::fs::chown(out, Some(uid), Some(uid)).map_err(bundle_err)?;
        }
        let lease = if spec.network {
            let setup = async {
                self.prepare_network().await?;
                net::setup(id).await
            };
            let lease = setup.await.map_err(|message| {
                Failed::Error(DriverError::Command {
                    id: id.clone(),
                    command: "network setup".into(),
                    message,
                })
            })?;
            if self.cfg.failpoint == Some(Failpoint::AfterNetns) {
                crash_at("after-netns");
            }
            Some(lease)
        } else {
            None
        };
        let mut env = vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_owned()];
        env.extend(self.cfg.env.iter().map(|(k, v)| format!("{k}={v}")));
        let params = BundleParams {
            code_dir: &spec.code_dir,
            opt_dir: spec.opt_dir.as_deref(),
            output_dir: spec.output_dir.as_deref(),
            runtime_dir: &self.cfg.runtime_dir,
            python_sdk_dir: self.cfg.python_sdk_dir.as_deref(),
            args: &self.cfg.init,
            env,
            uid,
            gid: uid,
            memory_limit_bytes: self.memory_limit(spec),
            tmp_mb: spec.tmp_mb,
            pids_limit: self.pids_limit(spec),
            cgroups_path: format!("/{}/{}", self.cfg.cgroup_parent, id),
            nproc: self.nproc(spec),
            cpu_shares: cpu_shares(spec.memory_mb),
            netns: lease.as_ref().map(|l| l.netns.as_path()),
            resolv_conf: lease.as_ref().map(|_| {
                net::resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
            }),
            seccomp: self.seccomp_enforcer(),
        };
        // A handful of small files: cheap enough to write inline.
        write_bundle(&dir, &self.layout, &params).map_err(bundle_err)?;

        let mut cmd = Command::new(&self.binary);
        cmd.args(self.global_args(spec.network));
        match how {
            Start::Run => cmd.args(["run", "--detach", "--bundle"]),
            // The image holds the whole sandbox; the new bundle gives it its new id, cgroups,
            // uid claim and mounts (the same destinations: the code is found again by path).
            Start::Restore(image) => cmd
                .args(["restore", "--detach", "--image-path"])
                .arg(image)
                .arg("--bundle"),
        };
        cmd.arg(&dir)
            .arg(id.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command = self.step_name(how.step());
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
}

/// The failpoint test hook: SIGKILL this process, as a crash at this point would.
fn crash_at(point: &str) -> ! {
    tracing::error!(
        failpoint = point,
        "failpoint reached: killing the process (test hook)"
    );
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    // SIGKILL cannot be caught; this is only reached if raising it failed.
    std::process::abort()
}
