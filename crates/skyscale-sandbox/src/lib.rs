//! Sandbox drivers: create and destroy isolated sandboxes and hand the control plane a byte
//! channel to the agent inside. A driver knows nothing about functions beyond a
//! [`SandboxSpec`].
//!
//! Codemap: [`OciDriver`] (`oci/`) runs one OCI bundle under runsc or runc ([`Runtime`],
//! configured by [`OciConfig`]); `bundle` builds that bundle with `oci-spec`, with the
//! `seccomp` profile; `cgroup` finds, limits and removes a sandbox's cgroups; `claims` hands
//! out host-wide numbers (sandbox uids, network slots); `net` gives a sandbox outbound
//! network; `command` runs the runtime CLI with deadlines and forwards a sandbox's stderr to
//! `tracing`; [`reaper`] reaps the orphaned sandbox processes. [`ProcessDriver`] (`process`)
//! runs the agent as a plain child process with no isolation, for tests and trusted code.
//!
//! Invariant: every child process of the control plane is spawned by this crate (see
//! [`reaper`]).

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};

mod bundle;
mod cgroup;
mod claims;
mod command;
mod config;
mod net;
mod oci;
mod process;
pub mod reaper;
mod seccomp;

pub use config::{
    Failpoint, OciConfig, Runtime, UidRange, DEFAULT_CPU_MB_PER_VCPU, DEFAULT_INIT,
    DEFAULT_RUNSC_OVERHEAD_MB, DEFAULT_UID_RANGE,
};
pub use oci::OciDriver;
pub use process::{ProcessConfig, ProcessDriver};
pub use reaper::{
    install_reaper, output_tracked, reap_orphans, spawn_tracked, spawn_tracked_std, StdTracked,
    TrackedChild,
};

/// A sandbox id: `sky` followed by 32 hex digits. Fixed width and random, so that runsc's
/// prefix matching of ids can never pick the wrong container, and an id is never reused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxId(String);

impl SandboxId {
    pub const PREFIX: &'static str = "sky";

    pub fn generate() -> Self {
        Self(format!("{}{}", Self::PREFIX, uuid::Uuid::new_v4().simple()))
    }

    /// Recognises ids this crate generated (used when cleaning up leftovers).
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(Self::PREFIX)?;
        (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a sandbox needs: where the code is, how big it may get.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub id: SandboxId,
    /// Host directory bound read-only at `/var/task`.
    pub code_dir: PathBuf,
    /// Host directory bound read-only at `/opt` (the function's layers, merged); `None`: an
    /// empty `/opt`.
    pub opt_dir: Option<PathBuf>,
    /// Host directory bound read-write at `/var/build` and owned by the sandbox's user: where
    /// a requirements build leaves its result for the control plane; `None`: no `/var/build`
    /// (every function's sandbox). The process driver refuses it (it has no bind mounts).
    pub output_dir: Option<PathBuf>,
    /// Memory limit of the function in MiB.
    pub memory_mb: u32,
    /// Size of the `/tmp` tmpfs in MiB.
    pub tmp_mb: u32,
    /// Most processes/threads inside the sandbox.
    pub pids_limit: i64,
    /// Outbound network (see `net`); otherwise the sandbox has loopback only.
    pub network: bool,
}

/// A running sandbox: its id and the agent's stdin/stdout.
pub struct Sandbox {
    pub id: SandboxId,
    pub to_agent: Box<dyn AsyncWrite + Send + Unpin>,
    pub from_agent: Box<dyn AsyncRead + Send + Unpin>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a driver operation failed. Each message names the sandbox and the step.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The runtime binary (runsc, runc) is missing.
    #[error("{binary} is not installed: {hint}")]
    NotInstalled { binary: String, hint: String },
    /// Preparing the bundle on disk failed.
    #[error("preparing bundle for sandbox {id}: {source}")]
    Bundle {
        id: SandboxId,
        #[source]
        source: std::io::Error,
    },
    /// Building the OCI spec failed.
    #[error("building OCI spec: {0}")]
    Spec(String),
    /// The runtime command failed.
    #[error("{command} for sandbox {id} failed: {message}")]
    Command {
        id: SandboxId,
        command: String,
        message: String,
    },
    /// The driver cannot do this (e.g. snapshots on runc).
    #[error("sandbox {id}: {message}")]
    Unsupported { id: SandboxId, message: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The end of `cleanup_leftovers`, shared by the drivers: removes every id in `ids` that is
/// not `live` *at the moment it is reached* (a create registers its id before it writes
/// anything, so an id found earlier that is not live now is no sandbox of this run), logs a
/// failure and goes on. Returns how many were removed.
pub(crate) async fn remove_leftovers<F, Fut>(
    ids: impl IntoIterator<Item = SandboxId>,
    live: impl Fn(&SandboxId) -> bool,
    remove: F,
) -> usize
where
    F: Fn(SandboxId) -> Fut,
    Fut: std::future::Future<Output = Result<(), DriverError>>,
{
    let mut removed = 0;
    for id in ids {
        if live(&id) {
            continue;
        }
        let shown = id.clone();
        match remove(id).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(sandbox = %shown, error = %e, "removing leftover sandbox"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed leftover sandboxes");
    }
    removed
}

/// The driver interface the scheduler uses.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + 'static {
    /// `gvisor`, `runc`, `process`
    fn name(&self) -> &'static str;

    /// Creates and starts a sandbox whose PID 1 is the agent; returns once it runs.
    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox, DriverError>;

    /// Changes a running sandbox's memory limit, e.g. when a generic pre-booted sandbox is
    /// specialised for a function with more memory. The sandbox must be using less than the
    /// new limit.
    async fn set_memory_limit(&self, id: &SandboxId, memory_mb: u32) -> Result<(), DriverError>;

    /// Caps a sandbox's CPU in proportion to a function memory size (the driver's configured
    /// ratio); nothing when no quota is configured. The scheduler calls it once a function's
    /// init is done, so that init runs with whatever CPU the host has to spare, as Lambda's
    /// init does.
    async fn limit_cpu(&self, id: &SandboxId, memory_mb: u32) -> Result<(), DriverError>;

    /// Kills and removes a sandbox and everything it left on the host (state, bundle,
    /// cgroups). Idempotent: destroying an unknown id is not an error.
    async fn destroy(&self, id: &SandboxId) -> Result<(), DriverError>;

    /// Removes every sandbox a previous run of this control plane left behind (same state
    /// root). Returns how many were removed.
    async fn cleanup_leftovers(&self) -> Result<usize, DriverError>;

    /// How many processes of a live sandbox the kernel's OOM killer has killed for its
    /// memory limit; `None` when the driver cannot tell. It tells a memory-limit kill from
    /// any other SIGKILL (or, under gVisor, from any other death of the whole sandbox).
    async fn oom_kills(&self, _id: &SandboxId) -> Option<u64> {
        None
    }

    /// Whether this driver can snapshot a sandbox (with outbound `network` or not) and start
    /// others from the image ([`Driver::checkpoint`], [`Driver::restore`]); `Err` says why not.
    fn snapshots(&self, _network: bool) -> Result<(), String> {
        Err(format!(
            "the {} driver cannot snapshot sandboxes",
            self.name()
        ))
    }

    /// Saves a running sandbox's whole state (memory, processes, open pipes) as an image in
    /// `image_dir` (created empty by the caller). The sandbox is gone afterwards, as if
    /// destroyed but for what `destroy` still removes; the caller destroys it.
    async fn checkpoint(&self, id: &SandboxId, _image_dir: &Path) -> Result<(), DriverError> {
        Err(DriverError::Unsupported {
            id: id.clone(),
            message: self.snapshots(false).err().unwrap_or_default(),
        })
    }

    /// Starts a sandbox from an image [`Driver::checkpoint`] saved: `spec` names the new
    /// sandbox (a new id, new stdio pipes, new per-sandbox claims); its code and `/opt`
    /// directories must hold what the snapshotted sandbox's held, at the same places inside.
    /// The agent resumes where it was checkpointed, reading the new stdin.
    async fn restore(&self, spec: &SandboxSpec, _image_dir: &Path) -> Result<Sandbox, DriverError> {
        Err(DriverError::Unsupported {
            id: spec.id.clone(),
            message: self.snapshots(spec.network).err().unwrap_or_default(),
        })
    }
}
