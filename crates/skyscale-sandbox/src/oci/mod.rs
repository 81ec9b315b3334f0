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
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tracing::Instrument;

use crate::bundle::HostLayout;
use crate::cgroup;
use crate::command::{run_cli, CliOutput};
use crate::config::{OciConfig, Runtime};
use crate::reaper::install_reaper;
use crate::{Driver, DriverError, Sandbox, SandboxId, SandboxSpec};

mod create;
mod destroy;

const MIB: i64 = 1 << 20;
/// runsc host `pids.max` = base + per-task × the sandbox's pids limit (see `pids_limit`).
const RUNSC_HOST_PIDS_BASE: i64 = 128;
const RUNSC_HOST_PIDS_PER_TASK: i64 = 10;
/// Where sandbox uids are claimed host-wide (see `claims`).
const UID_CLAIMS_DIR: &str = "/run/skyscale/uid";
/// CFS period of the CPU quota. Short, so that a sandbox that used up its quota waits at most
/// this long (minus its quota) rather than the kernel's default 100 ms; long enough that the
/// smallest function (128 MB: 1.4 ms per period at Lambda's ratio) stays above the kernel's
/// 1 ms minimum quota.
const CPU_PERIOD_US: u64 = 20_000;
/// The kernel refuses a quota under 1 ms.
const CPU_MIN_QUOTA_US: u64 = 1_000;
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
    /// The host side of sandbox networking (forwarding, firewall), prepared on first use.
    network_ready: tokio::sync::OnceCell<()>,
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
            network_ready: tokio::sync::OnceCell::new(),
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

    /// The uid (and gid) claimed for a sandbox, while it exists.
    pub fn uid_of(&self, id: &SandboxId) -> Option<u32> {
        crate::claims::held(Path::new(UID_CLAIMS_DIR), id)
            .into_iter()
            .next()
    }

    /// Whether the runtime still has state for `id` in this instance's state root.
    pub fn has_state(&self, id: &SandboxId) -> bool {
        state_ids(&self.cfg.state_root).contains(id)
    }

    fn live(&self) -> MutexGuard<'_, HashSet<SandboxId>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The runtime's global flags. runsc enforces the spec's seccomp profile inside the Sentry
    /// only with `--oci-seccomp`. `network`: the sandbox joins a prepared network namespace.
    /// runsc then runs with `--network=host`, which passes socket calls to the host kernel
    /// *inside that namespace*: `--network=sandbox` (gVisor's own netstack) would be the
    /// tighter choice, but Debian's runsc (2022-12) refuses it on Linux 6 ("cannot run with
    /// network enabled in root network namespace": its check for the root namespace,
    /// `/proc/sys/net/core/rmem_default`, exists in every namespace on new kernels). Without
    /// network, runsc has none at all.
    fn global_args(&self, network: bool) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--root".into(), self.cfg.state_root.clone().into()];
        if let Runtime::Runsc { platform } = &self.cfg.runtime {
            args.push(format!("--platform={platform}").into());
            args.push("--oci-seccomp".into());
            args.push(
                if network {
                    "--network=host"
                } else {
                    "--network=none"
                }
                .into(),
            );
            if let Some(log) = &self.cfg.debug_log {
                args.push("--debug".into());
                let mut flag = OsString::from("--debug-log=");
                flag.push(log);
                args.push(flag);
            }
        }
        args
    }

    /// Prepares the host for networked sandboxes once (a failure is retried next time).
    async fn prepare_network(&self) -> Result<(), String> {
        self.network_ready
            .get_or_try_init(crate::net::prepare_host)
            .await
            .map(|_| ())
    }

    fn step_name(&self, step: &str) -> String {
        format!("{} {step}", self.cfg.runtime.binary_name())
    }

    /// Runs one runtime subcommand (after the global flags), bounded by `command_timeout`.
    async fn run(&self, args: &[&str]) -> Result<CliOutput, String> {
        let mut all = self.global_args(false);
        all.extend(args.iter().map(OsString::from));
        run_cli(&self.binary, &all, self.cfg.command_timeout).await
    }

    /// [`Self::run`] for one sandbox: a failure to run names the sandbox and the step.
    async fn cli(
        &self,
        id: &SandboxId,
        step: &str,
        args: &[&str],
    ) -> Result<CliOutput, DriverError> {
        self.run(args)
            .await
            .map_err(|message| DriverError::Command {
                id: id.clone(),
                command: self.step_name(step),
                message,
            })
    }

    /// Who enforces the seccomp profile.
    fn seccomp_enforcer(&self) -> crate::seccomp::Enforcer {
        match self.cfg.runtime {
            Runtime::Runsc { .. } => crate::seccomp::Enforcer::Sentry,
            Runtime::Runc => crate::seccomp::Enforcer::Kernel,
        }
    }

    fn memory_limit(&self, spec: &SandboxSpec) -> i64 {
        self.memory_limit_bytes(spec.memory_mb)
    }

    /// The cgroup limit for a function memory size: runsc's Sentry is charged to the same
    /// cgroup, so it gets its allowance on top.
    fn memory_limit_bytes(&self, memory_mb: u32) -> i64 {
        let overhead = match self.cfg.runtime {
            Runtime::Runsc { .. } => i64::from(self.cfg.runsc_overhead_mb),
            Runtime::Runc => 0,
        };
        (i64::from(memory_mb) + overhead) * MIB
    }

    /// The host `pids.max`. runc: the sandbox's limit itself. runsc: the sandbox's tasks are
    /// not host tasks, so the limit is enforced inside gVisor through `RLIMIT_NPROC` (see
    /// [`Self::nproc`]); the host cgroup only holds a backstop sized for the Sentry (~40 host
    /// threads idle) and its ptrace stubs (measured ~6-10 host tasks per sandbox process).
    fn pids_limit(&self, spec: &SandboxSpec) -> i64 {
        match self.cfg.runtime {
            Runtime::Runsc { .. } => {
                RUNSC_HOST_PIDS_BASE + RUNSC_HOST_PIDS_PER_TASK * spec.pids_limit
            }
            Runtime::Runc => spec.pids_limit,
        }
    }

    /// `RLIMIT_NPROC` of the init process. gVisor counts tasks (threads included) per sandbox
    /// kernel, so it is the sandbox's own pids limit. Not for runc: there the limit would count
    /// every process of the sandbox uid on the host, across sandboxes.
    fn nproc(&self, spec: &SandboxSpec) -> Option<u64> {
        match self.cfg.runtime {
            Runtime::Runsc { .. } => u64::try_from(spec.pids_limit).ok(),
            Runtime::Runc => None,
        }
    }
}

/// `cpu.shares` for a memory size: proportional, as Lambda gives CPU in proportion to memory
/// (1,769 MB = one vCPU = the kernel's default weight of 1024). A weight, not a cap: it
/// decides who gets the CPUs when sandboxes compete, and costs nothing when they do not.
pub(crate) fn cpu_shares(memory_mb: u32) -> u64 {
    (u64::from(memory_mb) * 1024 / 1769).max(2)
}

/// The CFS quota for a memory size at `mb_per_vcpu` MiB per vCPU, plus `allowance_pct`
/// hundredths of a vCPU (the Sentry's, on runsc), per [`CPU_PERIOD_US`].
pub(crate) fn cpu_quota_us(memory_mb: u32, mb_per_vcpu: u32, allowance_pct: u32) -> u64 {
    let share = CPU_PERIOD_US * u64::from(memory_mb) / u64::from(mb_per_vcpu.max(1));
    share.max(CPU_MIN_QUOTA_US) + CPU_PERIOD_US * u64::from(allowance_pct) / 100
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

#[async_trait::async_trait]
impl Driver for OciDriver {
    fn name(&self) -> &'static str {
        self.cfg.runtime.driver_name()
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox, DriverError> {
        let span = tracing::info_span!("sandbox_create", sandbox = %spec.id, driver = self.name());
        self.create_inner(spec, create::Start::Run)
            .instrument(span)
            .await
    }

    fn snapshots(&self, network: bool) -> Result<(), String> {
        match self.cfg.runtime {
            // A sandbox with network runs with `--network=host` (see `global_args`), and
            // runsc refuses to checkpoint those ("checkpoint not supported when using
            // hostinet").
            Runtime::Runsc { .. } if network => Err("snapshots are not available for \
                sandboxes with network on the gvisor driver (runsc cannot checkpoint its \
                host network stack)"
                .to_owned()),
            Runtime::Runsc { .. } => Ok(()),
            // runc checkpoints through CRIU; CRIU 3.17 (Debian 12) cannot even start on the
            // development hosts' kernel (`criu check`: "vdso: Unexpected rt vDSO area
            // bounds"), so there is nothing honest to build on (docs/lambda-compatibility.md).
            Runtime::Runc => Err(
                "snapshots are not available on the runc driver (runc needs \
                                  CRIU, which cannot checkpoint on this host's kernel)"
                    .to_owned(),
            ),
        }
    }

    async fn checkpoint(&self, id: &SandboxId, image_dir: &Path) -> Result<(), DriverError> {
        self.snapshots(false)
            .map_err(|message| DriverError::Unsupported {
                id: id.clone(),
                message,
            })?;
        let span = tracing::info_span!("sandbox_checkpoint", sandbox = %id, driver = self.name());
        async {
            let image = image_dir.to_string_lossy().into_owned();
            let out = self
                .cli(
                    id,
                    "checkpoint",
                    &["checkpoint", "--image-path", &image, id.as_str()],
                )
                .await?;
            if !out.success() {
                return Err(DriverError::Command {
                    id: id.clone(),
                    command: self.step_name("checkpoint"),
                    message: out.message(),
                });
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn restore(&self, spec: &SandboxSpec, image_dir: &Path) -> Result<Sandbox, DriverError> {
        self.snapshots(spec.network)
            .map_err(|message| DriverError::Unsupported {
                id: spec.id.clone(),
                message,
            })?;
        let span = tracing::info_span!("sandbox_restore", sandbox = %spec.id, driver = self.name());
        self.create_inner(spec, create::Start::Restore(image_dir))
            .instrument(span)
            .await
    }

    async fn set_memory_limit(&self, id: &SandboxId, memory_mb: u32) -> Result<(), DriverError> {
        let bytes = self.memory_limit_bytes(memory_mb);
        // The CPU weight follows the memory size.
        if let Some(dir) = self
            .cgroup_dirs(id)
            .into_iter()
            .find(|d| d.join("cpu.shares").exists())
        {
            let shares = cpu_shares(memory_mb).to_string();
            if let Err(e) = std::fs::write(dir.join("cpu.shares"), shares) {
                tracing::warn!(sandbox = %id, error = %e, "setting cpu.shares");
            }
        }
        let dir = self
            .cgroup_dirs(id)
            .into_iter()
            .find(|d| d.join("memory.limit_in_bytes").exists())
            .ok_or_else(|| DriverError::Command {
                id: id.clone(),
                command: "set memory limit".into(),
                message: "the sandbox has no memory cgroup".into(),
            })?;
        cgroup::set_memory_limit(&dir, bytes).map_err(|e| DriverError::Command {
            id: id.clone(),
            command: "set memory limit".into(),
            message: e.to_string(),
        })
    }

    async fn limit_cpu(&self, id: &SandboxId, memory_mb: u32) -> Result<(), DriverError> {
        let Some(ratio) = self.cfg.cpu_mb_per_vcpu else {
            return Ok(());
        };
        let allowance_pct = match self.cfg.runtime {
            Runtime::Runsc { .. } => self.cfg.runsc_cpu_allowance_pct,
            Runtime::Runc => 0,
        };
        let quota = cpu_quota_us(memory_mb, ratio.get(), allowance_pct);
        let failed = |message: String| DriverError::Command {
            id: id.clone(),
            command: "set cpu quota".into(),
            message,
        };
        let dir = self
            .cgroup_dirs(id)
            .into_iter()
            .find(|d| d.join("cpu.cfs_quota_us").exists() || d.join("cpu.max").exists())
            .ok_or_else(|| failed("the sandbox has no cpu cgroup".into()))?;
        cgroup::set_cpu_quota(&dir, quota, CPU_PERIOD_US).map_err(|e| failed(e.to_string()))
    }

    async fn destroy(&self, id: &SandboxId) -> Result<(), DriverError> {
        let span = tracing::info_span!("sandbox_destroy", sandbox = %id, driver = self.name());
        self.destroy_inner(id).instrument(span).await
    }

    async fn oom_kills(&self, id: &SandboxId) -> Option<u64> {
        // gVisor too: its Sentry is charged to the same host cgroup, and the host's OOM
        // killer is what enforces the limit.
        self.cgroup_dirs(id)
            .into_iter()
            .find_map(|dir| cgroup::oom_kills(&dir))
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
        let removed = crate::remove_leftovers(
            ids,
            |id| self.live().contains(id),
            |id| async move {
                let span =
                    tracing::info_span!("sandbox_cleanup", sandbox = %id, driver = self.name());
                self.destroy_inner(&id).instrument(span).await
            },
        )
        .await;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quota_is_proportional_with_a_floor() {
        assert_eq!(cpu_quota_us(1769, 1769, 0), CPU_PERIOD_US);
        assert_eq!(cpu_quota_us(3538, 1769, 0), 2 * CPU_PERIOD_US);
        assert_eq!(cpu_quota_us(128, 1769, 0), 1_447);
        assert_eq!(cpu_quota_us(64, 1769, 0), CPU_MIN_QUOTA_US);
        // runsc: a tenth of a vCPU on top, for the Sentry.
        assert_eq!(cpu_quota_us(128, 1769, 10), 1_447 + 2_000);
    }
}
