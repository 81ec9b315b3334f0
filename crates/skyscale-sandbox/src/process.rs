//! The process driver: the agent as a plain child process of the control plane, with **no
//! isolation at all**. For trusted code only: fast tests of the scheduler, the invoke path
//! and the HTTP surfaces without runsc or runc, and hosts that have neither.
//!
//! # What a sandbox is here
//!
//! The agent runs as the control plane's own user, with the host's file system, network,
//! `/tmp` and pid namespace, in a session of its own (started through util-linux's `setsid`:
//! the agent puts its runtime in a process group of its own, so a process group would not
//! hold everything; a session does, unless the function's code leaves it on purpose).
//! `destroy` kills every process of that session. Its stdin and stdout are the agent channel, as
//! under the OCI drivers; its stderr is forwarded to `tracing`.
//!
//! The agent and the control plane agree on the sandbox paths `/var/task`, `/opt` (the
//! layers; when the sandbox has an opt directory) and `/var/runtime`, which do not exist on
//! the host (or are the host's own `/opt`). Instead of binding them, the driver translates
//! them: the agent's own command and the pre-started runtime ([`PREWARM_ENV`]) at spawn,
//! and every `Init` frame on its way to the agent (command, working directory, environment
//! values, each `:`-separated element of one, as in `PATH`), into the sandbox's code
//! directory, its opt directory and the configured runtime directory. Every other frame passes unchanged. So the channel of a
//! process sandbox carries agent frames, not arbitrary bytes.
//!
//! # What it does not do
//!
//! - Memory limits are **not enforced** (`set_memory_limit` accepts and ignores them): an
//!   address-space rlimit would break interpreters that reserve more than they use, and the
//!   cgroups that enforce it are what the OCI drivers are for. A function that exceeds its
//!   memory is not killed, and no out-of-memory is reported.
//! - No CPU quota (`limit_cpu` does nothing), no pids limit, no `/tmp` of its own (size or
//!   privacy), no network policy, no read-only code.
//!
//! # Leftovers
//!
//! Each sandbox has a state directory `<state_root>/<id>` holding the pid (= session id) of
//! its agent and that process's start time. `cleanup_leftovers` kills the sessions a previous
//! run left, unless the pid now belongs to another process (then the old session is empty:
//! the kernel reuses no pid that still names a session).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use skyscale_protocol::tokio_io::{read_frame, write_frame};
use skyscale_protocol::{Frame, Init, Prewarm, PREWARM_ENV};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::command::{forward_stderr, Capture};
use crate::reaper::{install_reaper, spawn_tracked};
use crate::{Driver, DriverError, Sandbox, SandboxId, SandboxSpec};

/// Where the agent expects the function's code.
const TASK: &str = "/var/task";
/// Where the agent expects the runtime directory.
const RUNTIME: &str = "/var/runtime";
/// Where the runtime finds the function's layers.
const OPT: &str = "/opt";
/// How long `destroy` waits for a killed sandbox's processes to be gone.
const GONE_WAIT: Duration = Duration::from_secs(5);
/// Starts the agent in a new session (util-linux; the crate forbids the `unsafe` a
/// `pre_exec(setsid)` would need). It `exec`s in place: the agent keeps its pid.
const SETSID: &str = "setsid";
/// Buffer between the control plane's writes and the translating task.
const CHANNEL_BUFFER: usize = 64 * 1024;
/// The agent's Runtime API address: any free port, since every sandbox shares the host's
/// loopback (the agent hands the bound address to the runtime).
const RUNTIME_API_ADDR: (&str, &str) = ("SKYSCALE_AGENT_RUNTIME_API_ADDR", "127.0.0.1:0");

/// Everything a [`ProcessDriver`] needs.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Per-sandbox state directories `<state_root>/<id>` (see the module docs).
    pub state_root: PathBuf,
    /// Host directory standing for `/var/runtime` (the agent and `bootstrap.py`).
    pub runtime_dir: PathBuf,
    /// The agent and its arguments, as paths inside a sandbox (translated).
    pub init: Vec<String>,
    /// Extra environment of the agent (after `PATH`); [`PREWARM_ENV`] is translated.
    pub env: Vec<(String, String)>,
}

impl ProcessConfig {
    pub fn new(state_root: impl Into<PathBuf>, runtime_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_root: state_root.into(),
            runtime_dir: runtime_dir.into(),
            init: vec![crate::DEFAULT_INIT.to_owned()],
            env: Vec::new(),
        }
    }
}

/// A running agent: its session, and the task that waits for it.
#[derive(Debug)]
struct Child {
    sid: Pid,
    waiter: JoinHandle<()>,
}

/// Sandboxes that are plain processes; see the module docs. No isolation.
#[derive(Debug)]
pub struct ProcessDriver {
    cfg: ProcessConfig,
    /// Ids created through this driver and not destroyed; `None` while the create runs (so
    /// that a concurrent `cleanup_leftovers` never takes a sandbox being created for a
    /// leftover, and an id is never used twice).
    live: Mutex<HashMap<SandboxId, Option<Child>>>,
}

/// How sandbox paths map to host paths for one sandbox.
struct Paths<'a> {
    task: &'a Path,
    runtime: &'a Path,
    /// `None`: `/opt` is left as it is.
    opt: Option<&'a Path>,
}

impl Paths<'_> {
    /// `path` with a leading `/var/task`, `/var/runtime` or `/opt` component replaced;
    /// anything else unchanged.
    fn host(&self, path: &str) -> String {
        let opt = self.opt.map(|o| (OPT, o));
        for (prefix, host) in [(TASK, self.task), (RUNTIME, self.runtime)]
            .into_iter()
            .chain(opt)
        {
            if let Some(rest) = path.strip_prefix(prefix) {
                if rest.is_empty() || rest.starts_with('/') {
                    return format!("{}{rest}", host.display());
                }
            }
        }
        path.to_owned()
    }

    fn init(&self, init: Init) -> Init {
        Init {
            command: init.command.iter().map(|a| self.host(a)).collect(),
            cwd: self.host(&init.cwd),
            env: init
                .env
                .into_iter()
                .map(|(k, v)| {
                    let v = v.split(':').map(|p| self.host(p)).collect::<Vec<_>>();
                    (k, v.join(":"))
                })
                .collect(),
            ..init
        }
    }

    /// The [`PREWARM_ENV`] value with its command translated; `None` if it is not a
    /// [`Prewarm`].
    fn prewarm(&self, json: &str) -> Option<String> {
        let p: Prewarm = serde_json::from_str(json).ok()?;
        let p = Prewarm {
            command: p.command.iter().map(|a| self.host(a)).collect(),
            env: p.env,
        };
        serde_json::to_string(&p).ok()
    }
}

impl ProcessDriver {
    /// Creates the state root and installs the process-wide reaper (the agents' runtimes
    /// are re-parented here when an agent dies first). The caller warns that nothing is
    /// isolated (the control plane does, at start).
    pub fn new(cfg: ProcessConfig) -> Result<Self, DriverError> {
        if cfg.init.first().is_none_or(|p| p.is_empty()) {
            return Err(DriverError::Spec(
                "the process driver's init is empty".into(),
            ));
        }
        install_reaper()?;
        std::fs::create_dir_all(&cfg.state_root)?;
        Ok(Self {
            cfg,
            live: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &ProcessConfig {
        &self.cfg
    }

    /// The state directory of a sandbox.
    pub fn state_dir(&self, id: &SandboxId) -> PathBuf {
        self.cfg.state_root.join(id.as_str())
    }

    /// The session of a live sandbox (its agent's pid).
    pub fn session_of(&self, id: &SandboxId) -> Option<i32> {
        self.live().get(id)?.as_ref().map(|c| c.sid.as_raw())
    }

    fn live(&self) -> MutexGuard<'_, HashMap<SandboxId, Option<Child>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(id: &SandboxId, step: &str, message: impl Into<String>) -> DriverError {
        DriverError::Command {
            id: id.clone(),
            command: format!("process {step}"),
            message: message.into(),
        }
    }

    fn start(&self, spec: &SandboxSpec) -> Result<(Child, Sandbox), DriverError> {
        let id = &spec.id;
        if !spec.code_dir.is_dir() {
            let msg = format!("code_dir {} is not a directory", spec.code_dir.display());
            return Err(Self::failed(id, "create", msg));
        }
        if let Some(out) = &spec.output_dir {
            let msg = format!(
                "output_dir {} is not supported: the process driver has no bind mounts (use \
                 runc or gVisor for builds)",
                out.display()
            );
            return Err(Self::failed(id, "create", msg));
        }
        let paths = Paths {
            task: &spec.code_dir,
            runtime: &self.cfg.runtime_dir,
            opt: spec.opt_dir.as_deref(),
        };
        let state = self.state_dir(id);
        std::fs::create_dir(&state).map_err(|source| DriverError::Bundle {
            id: id.clone(),
            source,
        })?;
        let argv: Vec<String> = self.cfg.init.iter().map(|a| paths.host(a)).collect();
        // `setsid` would start, fail to exec a missing agent and exit: say so now instead.
        if argv[0].contains('/') && !Path::new(&argv[0]).is_file() {
            let msg = format!("the agent {} is not a file", argv[0]);
            return Err(Self::failed(id, "create", msg));
        }
        let mut cmd = Command::new(SETSID);
        cmd.args(&argv)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env(RUNTIME_API_ADDR.0, RUNTIME_API_ADDR.1)
            .current_dir(&spec.code_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.cfg.env {
            match k.as_str() {
                PREWARM_ENV => match paths.prewarm(v) {
                    Some(prewarm) => cmd.env(k, prewarm),
                    None => {
                        tracing::warn!(sandbox = %id, "{PREWARM_ENV} is not a runtime to pre-start; none is");
                        cmd.env_remove(k)
                    }
                },
                _ => cmd.env(k, v),
            };
        }
        let mut child = spawn_tracked(&mut cmd)
            .map_err(|e| Self::failed(id, "spawn", format!("{SETSID} {}: {e}", argv[0])))?;
        let pid = child
            .child_mut()
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw);
        let (Some(sid), Some(stdin), Some(stdout), Some(stderr)) = (
            pid,
            child.child_mut().stdin.take(),
            child.child_mut().stdout.take(),
            child.child_mut().stderr.take(),
        ) else {
            // Dropping `child` kills and reaps it.
            return Err(Self::failed(id, "spawn", "no pid or stdio pipes"));
        };
        let record = format!("{} {}\n", sid, start_time(sid.as_raw()).unwrap_or(0));
        if let Err(source) = std::fs::write(state.join("pid"), record) {
            let _ = kill(sid, Signal::SIGKILL);
            return Err(DriverError::Bundle {
                id: id.clone(),
                source,
            });
        }
        tokio::spawn(forward_stderr(id.clone(), stderr, Capture::default()));
        let (to_agent, from_control) = tokio::io::duplex(CHANNEL_BUFFER);
        tokio::spawn(translate(
            id.clone(),
            from_control,
            stdin,
            spec.code_dir.clone(),
            self.cfg.runtime_dir.clone(),
            spec.opt_dir.clone(),
        ));
        let waiter = tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok((
            Child { sid, waiter },
            Sandbox {
                id: id.clone(),
                to_agent: Box::new(to_agent),
                from_agent: Box::new(stdout),
            },
        ))
    }

    /// Kills a sandbox of this run and waits for its agent to be reaped.
    async fn stop(&self, id: &SandboxId, child: Child) {
        // The agent itself first: right after the spawn it may not have its session yet. Its
        // pid is not reused before the waiter reaps it.
        let _ = kill(child.sid, Signal::SIGKILL);
        kill_session(id, child.sid.as_raw()).await;
        if tokio::time::timeout(GONE_WAIT, child.waiter).await.is_err() {
            tracing::warn!(sandbox = %id, "the killed agent was not reaped in time");
        }
    }

    /// Kills what a previous run's sandbox `id` left, if its recorded process is still the
    /// same process, and removes its state directory.
    async fn remove_leftover(&self, id: &SandboxId) -> Result<(), DriverError> {
        let dir = self.state_dir(id);
        let record = std::fs::read_to_string(dir.join("pid")).unwrap_or_default();
        let mut fields = record.split_whitespace().map(str::parse::<i64>);
        if let (Some(Ok(sid)), Some(Ok(started))) = (fields.next(), fields.next()) {
            let sid = i32::try_from(sid).unwrap_or(0);
            // The pid names another process now: the old session is empty.
            let reused = start_time(sid).is_some_and(|t| t != started);
            if sid > 1 && !reused {
                kill_session(id, sid).await;
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// The fields of `/proc/<pid>/stat` after the command name: state is 0, session 3, start
/// time 19.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The start time of a process (clock ticks since boot), which together with the pid names
/// one process for good.
fn start_time(pid: i32) -> Option<i64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Live (not zombie) processes of session `sid`.
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            stat_fields(*pid).is_some_and(|f| {
                f.first().is_some_and(|s| s != "Z" && s != "X")
                    && f.get(3).and_then(|s| s.parse::<i32>().ok()) == Some(sid)
            })
        })
        .collect()
}

/// SIGKILLs every process of session `sid` until none is left (a process forking meanwhile
/// is caught on the next pass), for at most [`GONE_WAIT`].
async fn kill_session(id: &SandboxId, sid: i32) {
    let deadline = tokio::time::Instant::now() + GONE_WAIT;
    loop {
        let members = session_members(sid);
        if members.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(sandbox = %id, left = ?members, "processes of the sandbox survived SIGKILL");
            return;
        }
        for pid in members {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Orphans of the session (re-parented here) are reaped so that they stop counting.
        crate::reaper::reap_orphans();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Copies frames from the control plane to the agent, translating the paths of `Init`.
/// Ends (closing the agent's stdin) when either side closes or a frame does not decode.
async fn translate(
    id: SandboxId,
    mut from_control: tokio::io::DuplexStream,
    mut stdin: impl AsyncWrite + Unpin,
    task: PathBuf,
    runtime: PathBuf,
    opt: Option<PathBuf>,
) {
    let paths = Paths {
        task: &task,
        runtime: &runtime,
        opt: opt.as_deref(),
    };
    loop {
        let frame = match read_frame(&mut from_control).await {
            Ok(Some(Frame::Init(init))) => Frame::Init(paths.init(init)),
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "process driver: bad frame to the agent");
                break;
            }
        };
        if write_frame(&mut stdin, &frame).await.is_err() {
            break;
        }
    }
    let _ = stdin.shutdown().await;
}

#[async_trait::async_trait]
impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox, DriverError> {
        let id = &spec.id;
        {
            let mut live = self.live();
            if live.contains_key(id) || self.state_dir(id).exists() {
                return Err(Self::failed(
                    id,
                    "create",
                    "sandbox id already in use (ids are never reused)",
                ));
            }
            live.insert(id.clone(), None);
        }
        match self.start(spec) {
            Ok((child, sandbox)) => {
                self.live().insert(id.clone(), Some(child));
                Ok(sandbox)
            }
            Err(e) => {
                if let Err(cleanup) = self.remove_leftover(id).await {
                    tracing::warn!(sandbox = %id, error = %cleanup, "cleaning up after a failed create");
                }
                self.live().remove(id);
                Err(e)
            }
        }
    }

    /// Not enforced (see the module docs).
    async fn set_memory_limit(&self, _id: &SandboxId, _memory_mb: u32) -> Result<(), DriverError> {
        Ok(())
    }

    /// No CPU quota (see the module docs).
    async fn limit_cpu(&self, _id: &SandboxId, _memory_mb: u32) -> Result<(), DriverError> {
        Ok(())
    }

    async fn destroy(&self, id: &SandboxId) -> Result<(), DriverError> {
        let child = self.live().remove(id).flatten();
        if let Some(child) = child {
            self.stop(id, child).await;
        }
        match std::fs::remove_dir_all(self.state_dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn cleanup_leftovers(&self) -> Result<usize, DriverError> {
        let ids: Vec<SandboxId> = std::fs::read_dir(&self.cfg.state_root)?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(SandboxId::parse))
            .collect();
        let removed = crate::remove_leftovers(
            ids,
            |id| self.live().contains_key(id),
            |id| async move { self.remove_leftover(&id).await },
        )
        .await;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_sandbox_path_components_are_translated() {
        let p = Paths {
            task: Path::new("/srv/t/sky1"),
            runtime: Path::new("/srv/rt"),
            opt: Some(Path::new("/srv/t/.opt/sky1")),
        };
        assert_eq!(p.host("/opt/python"), "/srv/t/.opt/sky1/python");
        assert_eq!(p.host("/optional"), "/optional");
        let init = p.init(Init {
            function_name: "f".into(),
            function_version: "$LATEST".into(),
            memory_mb: 128,
            command: vec!["/var/task/bootstrap".into()],
            cwd: "/var/task".into(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin:/opt/bin".into()),
                ("URL".into(), "http://example.com:80/opt".into()),
            ],
            init_timeout_ms: 1000,
        });
        assert_eq!(
            init.env,
            [
                (
                    "PATH".to_owned(),
                    "/usr/bin:/bin:/srv/t/.opt/sky1/bin".to_owned()
                ),
                ("URL".to_owned(), "http://example.com:80/opt".to_owned())
            ]
        );
        assert_eq!(p.host("/var/task"), "/srv/t/sky1");
        assert_eq!(p.host("/var/task/bootstrap"), "/srv/t/sky1/bootstrap");
        assert_eq!(p.host("/var/runtime/bootstrap.py"), "/srv/rt/bootstrap.py");
        assert_eq!(p.host("/var/tasks"), "/var/tasks");
        assert_eq!(p.host("/usr/bin/python3"), "/usr/bin/python3");
        assert_eq!(p.host("x/var/task"), "x/var/task");
        let json = r#"{"command":["/usr/bin/python3","/var/runtime/bootstrap.py"],"env":[["HOME","/tmp"]]}"#;
        let out: Prewarm = serde_json::from_str(&p.prewarm(json).unwrap()).unwrap();
        assert_eq!(out.command, ["/usr/bin/python3", "/srv/rt/bootstrap.py"]);
        assert_eq!(out.env, [("HOME".to_owned(), "/tmp".to_owned())]);
        assert_eq!(p.prewarm("not json"), None);
    }
}
