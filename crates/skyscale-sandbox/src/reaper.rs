//! Reaping the sandboxes' processes without stealing anyone's exit status.
//!
//! `runsc run --detach` and `runc run --detach` exit as soon as the sandbox runs; the sandbox's
//! processes (runsc's Sentry, gofer and ptrace stubs, runc's container init) are re-parented to
//! the nearest *child subreaper*, or to PID 1. PID 1 on our hosts may not reap, and an unreaped
//! sandbox process makes `runsc delete --force` block for 5 s, fail and leak cgroups
//! (sandbox-notes trap 3). So [`install_reaper`] makes this process a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`) and starts a thread that reaps the orphans that land here.
//!
//! # Not stealing exit statuses
//!
//! The runtime CLIs this crate runs (`runsc run`, `state`, `kill`, `delete`, ...) are ordinary
//! children that `tokio::process` waits for. A blind `waitpid(-1)` would steal their statuses.
//! Every such child is spawned through [`spawn_tracked`], which inserts its pid into
//! `REGISTRY` *while holding the registry lock across `spawn`*; the reaper only ever reaps a
//! pid after checking, under the same lock, that it is not registered. A pid leaves the
//! registry only after tokio has reaped it. Hence:
//!
//! - a registered child is never reaped here, even if it exits before `spawn` returns (the
//!   reaper blocks on the lock until the pid is registered);
//! - an orphan is reaped only after `waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)` (a peek that
//!   reaps nothing) or `/proc/self/task/*/children` showed it to us.
//!
//! # Invariant for the rest of the control plane
//!
//! Nothing else in the control-plane process spawns child processes: every child goes through
//! this crate, and code that really must run a program (a test driving a CLI, say) uses
//! [`spawn_tracked`] or [`output_tracked`]. A child spawned any other way is unregistered and
//! its exit status may be reaped here before its owner waits for it (the owner then sees
//! `ECHILD`).
//!
//! # When does it run
//!
//! On every `SIGCHLD` (through `tokio::signal` on the reaper thread's own small runtime, so it
//! survives the runtimes of tests and callers), every `PERIODIC` (500 ms) as a backstop against
//! coalesced signals, and on demand through [`reap_orphans`] (the driver calls it while waiting
//! for a killed sandbox to go away).

use std::collections::BTreeSet;
use std::io;
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Pids of the children this crate spawned and tokio has not reaped yet.
static REGISTRY: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Result of the one-time installation, shared by every caller of [`install_reaper`].
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// How often the reaper runs without a `SIGCHLD`.
const PERIODIC: Duration = Duration::from_millis(500);

fn registry() -> MutexGuard<'static, BTreeSet<i32>> {
    // The set stays consistent even if a holder panicked: every critical section is a single
    // insert/remove/lookup.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes this process a child subreaper and starts the reaper thread. Idempotent: the work is
/// done once per process and later calls return the first call's result.
pub fn install_reaper() -> io::Result<()> {
    INSTALLED
        .get_or_init(|| install_once().map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn install_once() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
    std::thread::Builder::new()
        .name("skyscale-reaper".into())
        .spawn(reaper_thread)?;
    Ok(())
}

fn reaper_thread() {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "reaper: cannot build its runtime; polling without SIGCHLD");
            loop {
                reap_orphans();
                std::thread::sleep(PERIODIC);
            }
        }
    };
    runtime.block_on(async {
        let mut sigchld =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "reaper: no SIGCHLD stream; periodic reaping only");
                    None
                }
            };
        let mut tick = tokio::time::interval(PERIODIC);
        loop {
            match sigchld.as_mut() {
                Some(sig) => {
                    tokio::select! {
                        _ = sig.recv() => {}
                        _ = tick.tick() => {}
                    }
                }
                None => {
                    tick.tick().await;
                }
            }
            reap_orphans();
        }
    });
}

/// One reaping pass: reaps every exited child that is not registered. Returns how many it
/// reaped. Cheap when there is nothing to do (one `waitid` call).
pub fn reap_orphans() -> usize {
    let registered = registry();
    let mut reaped = 0;
    let mut blocked = false;
    loop {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::All, flags) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reaper: waitid failed");
                break;
            }
            Ok(status) => match status.pid() {
                Some(pid) if !registered.contains(&pid.as_raw()) => {
                    if reap(pid) {
                        reaped += 1;
                    } else {
                        break;
                    }
                }
                // The first exited child is one tokio is about to reap; `waitid` would show
                // it again and again, so look for the others one by one.
                Some(_) => {
                    blocked = true;
                    break;
                }
                None => break,
            },
        }
    }
    if blocked {
        for pid in children() {
            if !registered.contains(&pid) && reap(Pid::from_raw(pid)) {
                reaped += 1;
            }
        }
    }
    reaped
}

/// Reaps `pid` if it has exited. True if it was reaped.
fn reap(pid: Pid) -> bool {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(status) => {
            tracing::debug!(pid = pid.as_raw(), ?status, "reaper: reaped orphan");
            true
        }
        Err(_) => false,
    }
}

/// This process's children, from `/proc/self/task/*/children` (orphans are attached to
/// whichever of our threads the kernel picked).
fn children() -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids
}

/// A child process whose pid stays registered (never reaped by the reaper) until it has been
/// waited for.
#[derive(Debug)]
pub struct TrackedChild {
    child: Child,
    pid: Option<i32>,
}

/// Spawns `cmd` with its pid registered (see the module docs for why the lock is held across
/// the spawn). The way for any code in a process with the reaper installed to run a child
/// whose exit status it needs.
pub fn spawn_tracked(cmd: &mut Command) -> io::Result<TrackedChild> {
    let mut registered = registry();
    let child = cmd.spawn()?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    if let Some(pid) = pid {
        registered.insert(pid);
    }
    Ok(TrackedChild { child, pid })
}

/// A `std::process` child whose pid stays registered until [`StdTracked::wait`]: for a
/// blocking caller that talks to a long-lived child over its pipes.
#[derive(Debug)]
pub struct StdTracked {
    pub child: std::process::Child,
    pid: Option<i32>,
}

/// Blocking counterpart of [`spawn_tracked`]: spawns `cmd` with its pid registered.
pub fn spawn_tracked_std(cmd: &mut std::process::Command) -> io::Result<StdTracked> {
    let mut registered = registry();
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).ok();
    if let Some(pid) = pid {
        registered.insert(pid);
    }
    Ok(StdTracked { child, pid })
}

impl StdTracked {
    /// Kills the child (if it still runs) and reaps it; its pid is then free.
    pub fn kill_and_wait(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = self.pid.take() {
            registry().remove(&pid);
        }
    }
}

impl Drop for StdTracked {
    fn drop(&mut self) {
        self.kill_and_wait();
    }
}

/// Blocking counterpart of [`spawn_tracked`] for `std::process`: runs `cmd` to completion
/// like [`std::process::Command::output`] (stdout and stderr are captured) with its pid
/// registered meanwhile.
pub fn output_tracked(cmd: &mut std::process::Command) -> io::Result<std::process::Output> {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = {
        let mut registered = registry();
        let child = cmd.spawn()?;
        registered.insert(child.id() as i32);
        child
    };
    let pid = child.id() as i32;
    let output = child.wait_with_output();
    registry().remove(&pid);
    output
}

impl TrackedChild {
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits for the child to exit; cancel-safe (the child stays registered until reaped).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.unregister();
        Ok(status)
    }

    /// Kills the child and waits for it.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.child.kill().await?;
        self.unregister();
        Ok(())
    }

    fn unregister(&mut self) {
        if let Some(pid) = self.pid.take() {
            registry().remove(&pid);
        }
    }
}

impl Drop for TrackedChild {
    /// A child dropped before it was waited for (a cancelled future) is killed and reaped here,
    /// synchronously: a SIGKILLed runtime CLI exits within milliseconds, and this keeps the
    /// registry exact without needing a runtime in `drop`.
    fn drop(&mut self) {
        if self.pid.is_none() {
            return;
        }
        let _ = self.child.start_kill();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => {
                    self.unregister();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => break,
            }
        }
        tracing::warn!(pid = ?self.pid, "dropped runtime command did not exit; left registered");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use tokio::io::AsyncBufReadExt;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registered_children_keep_their_exit_status() {
        install_reaper().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let hammer = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    reap_orphans();
                }
            }
        });
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                tokio::spawn(async move {
                    let mut cmd = Command::new("/bin/sh");
                    cmd.arg("-c").arg(format!("exit {}", i % 7));
                    let mut child = spawn_tracked(&mut cmd).unwrap();
                    child.wait().await.unwrap().code()
                })
            })
            .collect();
        for i in 0..20 {
            let out = output_tracked(
                std::process::Command::new("/bin/sh").args(["-c", &format!("echo {i}; exit 3")]),
            )
            .unwrap();
            assert_eq!(out.status.code(), Some(3));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), i.to_string());
        }
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), Some((i % 7) as i32));
        }
        stop.store(true, Ordering::Relaxed);
        hammer.join().unwrap();
    }

    #[tokio::test]
    async fn orphans_are_reaped() {
        install_reaper().unwrap();
        // The shell exits at once; its background `sleep` is re-parented to us (subreaper).
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "sleep 0.2 >/dev/null & echo $!"])
            .stdout(std::process::Stdio::piped());
        let mut child = spawn_tracked(&mut cmd).unwrap();
        let stdout = child.child_mut().stdout.take().unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .unwrap();
        assert!(child.wait().await.unwrap().success());
        let orphan: i32 = line.trim().parse().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap();
        let ppid = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(1)
            .unwrap();
        assert_eq!(ppid, std::process::id().to_string());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{orphan}")).exists() {
            assert!(Instant::now() < deadline, "orphan {orphan} was not reaped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
