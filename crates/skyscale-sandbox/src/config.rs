//! Configuration of the OCI drivers (runsc and runc share one bundle format and one driver).

use std::path::{Component, Path, PathBuf};
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
    /// The sandbox's PID 1 and its arguments.
    pub init: Vec<String>,
    /// Relative cgroup path shared by this instance's sandboxes, e.g. `skyscale/<instance>`;
    /// a sandbox's `cgroupsPath` is `/<cgroup_parent>/<id>`.
    pub cgroup_parent: String,
    /// Extra environment of the init process (after `PATH`).
    pub env: Vec<(String, String)>,
    /// Unprivileged user and group the init process runs as. The contents of `runtime_dir` and
    /// of every spec's `code_dir` must be readable by them (their parents need not be: the
    /// runtime binds them as root).
    pub uid: u32,
    pub gid: u32,
    /// Added to a runsc sandbox's memory limit for the Sentry itself, which is charged to the
    /// same cgroup.
    pub runsc_overhead_mb: u32,
    /// runsc `--debug --debug-log=<this>` when set.
    pub debug_log: Option<PathBuf>,
    /// Bound on `run --detach`.
    pub create_timeout: Duration,
    /// Bound on every other runtime command (`state`, `kill`, `delete`, `list`).
    pub command_timeout: Duration,
}

/// Default `init`: the agent shipped in the runtime directory.
pub const DEFAULT_INIT: &str = "/var/runtime/skyscale-agent";
/// Default sandbox user and group (the uid AWS Lambda's `sbx_user1051` has).
pub const DEFAULT_UID: u32 = 993;
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
            init: vec![DEFAULT_INIT.to_owned()],
            cgroup_parent: cgroup_parent.into(),
            env: Vec::new(),
            uid: DEFAULT_UID,
            gid: DEFAULT_UID,
            runsc_overhead_mb: DEFAULT_RUNSC_OVERHEAD_MB,
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
