//! Configuration of the OCI drivers (runsc and runc share one bundle format and one driver).

use std::num::NonZeroU32;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::DriverError;

/// Which OCI runtime runs the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// gVisor. `platform` is runsc's `--platform` (`ptrace` works everywhere; `kvm` hangs on
    /// nested-virtualisation hosts like our development machines).
    Runsc { platform: String },
    /// runc: namespaces and cgroups, no user-space kernel.
    Runc,
}

impl Runtime {
    /// runsc on the ptrace platform.
    pub fn runsc() -> Self {
        Self::Runsc {
            platform: "ptrace".to_owned(),
        }
    }

    /// The binary's name, looked up on `PATH` and in the usual system directories.
    pub fn binary_name(&self) -> &'static str {
        match self {
            Self::Runsc { .. } => "runsc",
            Self::Runc => "runc",
        }
    }

    /// The driver name the scheduler sees (`gvisor`, `runc`).
    pub fn driver_name(&self) -> &'static str {
        match self {
            Self::Runsc { .. } => "gvisor",
            Self::Runc => "runc",
        }
    }

    fn install_hint(&self) -> String {
        format!("install it with `apt-get install {}`", self.binary_name())
    }
}

/// Everything an [`OciDriver`](crate::OciDriver) needs. Build it with [`OciConfig::new`] and
/// adjust the public fields.
#[derive(Debug, Clone)]
pub struct OciConfig {
    pub runtime: Runtime,
    /// Explicit path of the runtime binary; `None` looks it up.
    pub binary: Option<PathBuf>,
    /// This control-plane instance's own `--root` state directory (never shared: trap 6).
    pub state_root: PathBuf,
    /// Where the per-sandbox bundles `<bundles_dir>/<id>` are written.
    pub bundles_dir: PathBuf,
    /// Host directory bound read-only at `/var/runtime` (the agent and `bootstrap.py`). Must be
    /// readable by `uid`.
    pub runtime_dir: PathBuf,
    /// Host directory bound read-only at `/var/runtime/sdk` (boto3 and botocore, as Lambda's
    /// Python runtimes have them); `runtime_dir` must hold an empty `sdk` directory for it.
    pub python_sdk_dir: Option<PathBuf>,
    /// The sandbox's PID 1 and its arguments.
    pub init: Vec<String>,
    /// Relative cgroup path shared by this instance's sandboxes, e.g. `skyscale/<instance>`;
    /// a sandbox's `cgroupsPath` is `/<cgroup_parent>/<id>`.
    pub cgroup_parent: String,
    /// Extra environment of the init process (after `PATH`).
    pub env: Vec<(String, String)>,
    /// The unprivileged uids handed to sandboxes, one per live sandbox (its gid has the same
    /// number), claimed host-wide (see `uids`): nothing scoped by uid (kernel keyrings, per-user
    /// limits, `/proc` access) is shared between sandboxes. The contents of `runtime_dir` and of
    /// every spec's `code_dir` must be readable by any user (their parents need not be: the
    /// runtime binds them as root).
    pub uids: UidRange,
    /// CPU quota: one vCPU per this many MiB of a function's memory, applied by
    /// [`Driver::limit_cpu`](crate::Driver::limit_cpu); `None`: no quota (only the
    /// proportional `cpu.shares` weight).
    pub cpu_mb_per_vcpu: Option<NonZeroU32>,
    /// A test hook: crash the process at this point of a create (see [`Failpoint`]).
    pub failpoint: Option<Failpoint>,
    /// Added to a runsc sandbox's memory limit for the Sentry itself, which is charged to the
    /// same cgroup.
    pub runsc_overhead_mb: u32,
    /// Added to a runsc sandbox's CPU quota for the Sentry, whose work for the function (every
    /// system call, trapped) is charged to the same cgroup: in hundredths of a vCPU.
    pub runsc_cpu_allowance_pct: u32,
    /// runsc `--debug --debug-log=<this>` when set.
    pub debug_log: Option<PathBuf>,
    /// Bound on `run --detach`.
    pub create_timeout: Duration,
    /// Bound on every other runtime command (`state`, `kill`, `delete`, `list`).
    pub command_timeout: Duration,
}

/// Default `init`: the agent shipped in the runtime directory.
pub const DEFAULT_INIT: &str = "/var/runtime/skyscale-agent";
/// Default sandbox uids: 65,536 from `0x70000000`, a block that systemd's uid ranges leave
/// unused (above the container ranges, below the 2^31 boundary), so no host user has one.
pub const DEFAULT_UID_RANGE: UidRange = UidRange {
    first: 0x7000_0000,
    count: 65_536,
};
/// Lambda's ratio: one vCPU per 1,769 MB of memory.
pub const DEFAULT_CPU_MB_PER_VCPU: u32 = 1769;

/// A block of uids: `first ..= first + count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub count: u32,
}

impl FromStr for UidRange {
    type Err = String;

    /// `FIRST-LAST`, inclusive; never uid 0 (root) nor `u32::MAX` (`-1`, "unchanged" to
    /// `chown`).
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a range FIRST-LAST"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{v:?} is not a uid"))
        };
        let (first, last) = (parse(a)?, parse(b)?);
        if first == 0 || last < first || last == u32::MAX {
            return Err(format!(
                "{s:?} must satisfy 0 < FIRST <= LAST < {}",
                u32::MAX
            ));
        }
        Ok(Self {
            first,
            count: last - first + 1,
        })
    }
}

/// Points in a create where a test can make the process kill itself with SIGKILL, to prove
/// that the cleanup at the next start finds what a crash there leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// After a networked sandbox's namespace and veth pair exist, before its bundle is written.
    AfterNetns,
}

impl FromStr for Failpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "after-netns" => Ok(Self::AfterNetns),
            other => Err(format!("unknown failpoint {other:?}: expected after-netns")),
        }
    }
}
/// The Sentry's CPU allowance on top of a function's quota: a tenth of a vCPU. Without it a
/// 128 MB function (7 % of a vCPU by Lambda's ratio) spends its whole quota on the Sentry's
/// work for a trivial invocation: its warm p50 in a closed loop was ~20 ms instead of ~0.7 ms.
/// With a tenth it is ~1.2 ms, and four spinning 128 MB neighbours still take at most 0.7 of
/// a vCPU (BENCHMARKS.md; a quarter gave ~1 ms but let them take 1.3). runc needs none: it has
/// no user-space kernel.
pub const DEFAULT_RUNSC_CPU_ALLOWANCE_PCT: u32 = 10;
/// Default allowance for the Sentry's own memory under runsc, MiB.
pub const DEFAULT_RUNSC_OVERHEAD_MB: u32 = 64;

impl OciConfig {
    pub fn new(
        runtime: Runtime,
        state_root: impl Into<PathBuf>,
        bundles_dir: impl Into<PathBuf>,
        runtime_dir: impl Into<PathBuf>,
        cgroup_parent: impl Into<String>,
    ) -> Self {
        Self {
            runtime,
            binary: None,
            state_root: state_root.into(),
            bundles_dir: bundles_dir.into(),
            runtime_dir: runtime_dir.into(),
            python_sdk_dir: None,
            init: vec![DEFAULT_INIT.to_owned()],
            cgroup_parent: cgroup_parent.into(),
            env: Vec::new(),
            uids: DEFAULT_UID_RANGE,
            cpu_mb_per_vcpu: NonZeroU32::new(DEFAULT_CPU_MB_PER_VCPU),
            failpoint: None,
            runsc_overhead_mb: DEFAULT_RUNSC_OVERHEAD_MB,
            runsc_cpu_allowance_pct: DEFAULT_RUNSC_CPU_ALLOWANCE_PCT,
            debug_log: None,
            create_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(10),
        }
    }

    /// Checks the configuration and finds the runtime binary.
    pub(crate) fn validate(&self) -> Result<PathBuf, DriverError> {
        let spec_err = |m: &str| Err(DriverError::Spec(m.to_owned()));
        let parent = Path::new(&self.cgroup_parent);
        if self.cgroup_parent.is_empty()
            || !parent
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return spec_err("cgroup_parent must be a non-empty relative path without `..`");
        }
        if self.init.is_empty() {
            return spec_err("init must name a program");
        }
        if self.uids.count == 0 || self.uids.first == 0 {
            return spec_err("uids must be a non-empty range without uid 0");
        }
        if !self.state_root.is_absolute() || !self.bundles_dir.is_absolute() {
            return spec_err("state_root and bundles_dir must be absolute paths");
        }
        self.find_binary()
    }

    fn find_binary(&self) -> Result<PathBuf, DriverError> {
        let name = self.runtime.binary_name();
        let not_installed = |what: String| DriverError::NotInstalled {
            binary: what,
            hint: self.runtime.install_hint(),
        };
        if let Some(path) = &self.binary {
            return is_executable(path)
                .then(|| path.clone())
                .ok_or_else(|| not_installed(path.display().to_string()));
        }
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        let fallback = [
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
            "/usr/local/sbin",
            "/usr/local/bin",
        ];
        std::env::split_paths(&path_var)
            .chain(fallback.iter().map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
            .ok_or_else(|| not_installed(name.to_owned()))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_ranges_and_failpoints_parse() {
        assert_eq!(
            "1000-1999".parse::<UidRange>().unwrap(),
            UidRange {
                first: 1000,
                count: 1000
            }
        );
        for bad in ["0-10", "10-5", "10", "a-b", "1-4294967295"] {
            assert!(bad.parse::<UidRange>().is_err(), "{bad}");
        }
        assert_eq!("after-netns".parse(), Ok(Failpoint::AfterNetns));
        assert!("after-bundle"
            .parse::<Failpoint>()
            .unwrap_err()
            .contains("after-bundle"));
    }
}
