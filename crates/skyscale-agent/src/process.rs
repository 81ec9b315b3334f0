//! The runtime process: spawning it, reaping it (and every other orphan, as PID 1), killing it.
//!
//! Concurrency: exactly one thread calls `waitpid(-1)` — the reaper. It collects every child
//! that exits, including grandchildren re-parented to the agent when it runs as PID 1, and
//! reports only the runtime's own exit on the event channel. Nothing else waits for children
//! (`std::process::Child::wait` is never called), so no exit status is ever stolen — except
//! for the zygote ([`crate::zygote`]), which the main thread checks on and, when it is not
//! used, kills and reaps itself ([`try_reap`], [`kill_and_reap`]) before the reaper starts.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};
use skyscale_protocol::{Init, Prewarm, ZYGOTE_ENV};

use crate::error::{spawn_thread, AgentError};
use crate::pipe::{ChildEnds, RUNTIME_FDS_ENV};
use crate::wake::Notifier;
use crate::Event;

pub use skyscale_protocol::ExitStatus;

/// A started runtime: its pid (also its process-group id) and its output pipes.
pub struct Runtime {
    pub pid: Pid,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Why the runtime could not be started.
#[derive(Debug)]
pub struct SpawnError(pub String);

/// Starts `init.command` in `init.cwd` with exactly `init.env` plus `AWS_LAMBDA_RUNTIME_API`
/// and [`RUNTIME_FDS_ENV`] (the inherited ends of the runtime pipe), without [`ZYGOTE_ENV`],
/// stdin on /dev/null, stdout and stderr on pipes, in a process group of its own so that
/// [`kill_group`] also reaches its children. The caller closes its copies of `pipe` afterwards.
///
/// Call this before [`start_reaper`]: if `exec` fails, std reaps the child itself.
pub fn spawn(init: &Init, runtime_api: &str, pipe: &ChildEnds) -> Result<Runtime, SpawnError> {
    let mut cmd = command(&init.command)?;
    cmd.current_dir(&init.cwd)
        .env_clear()
        .envs(init.env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env_remove(ZYGOTE_ENV)
        .env(RUNTIME_FDS_ENV, pipe.env_value());
    launch(cmd).map_err(|e| {
        SpawnError(format!(
            "cannot start {:?} in {:?}: {e}",
            init.command[0], init.cwd
        ))
    })
}

/// Starts `prewarm.command` as a zygote (see [`crate::zygote`]): in `/` with exactly
/// `prewarm.env` plus [`RUNTIME_FDS_ENV`] and [`ZYGOTE_ENV`]`=1`, otherwise like [`spawn`].
pub fn spawn_zygote(prewarm: &Prewarm, pipe: &ChildEnds) -> Result<Runtime, SpawnError> {
    let mut cmd = command(&prewarm.command)?;
    cmd.current_dir("/")
        .env_clear()
        .envs(prewarm.env.iter().map(|(k, v)| (k, v)))
        .env(ZYGOTE_ENV, "1")
        .env(RUNTIME_FDS_ENV, pipe.env_value());
    launch(cmd).map_err(|e| SpawnError(format!("cannot pre-start {:?}: {e}", prewarm.command[0])))
}

/// The program and arguments of `argv`.
fn command(argv: &[String]) -> Result<Command, SpawnError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| SpawnError("the runtime command is empty".to_string()))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    Ok(cmd)
}

/// Spawns `cmd` with stdin on /dev/null, stdout and stderr on pipes, in its own process group.
fn launch(mut cmd: Command) -> std::io::Result<Runtime> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pid = Pid::from_child(&child);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill_group(pid);
        return Err(std::io::Error::other("runtime output pipes missing"));
    };
    // Dropping `child` neither waits nor kills: the reaper owns the exit status.
    Ok(Runtime {
        pid,
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

/// Starts the reaper thread: `waitpid(-1)` in a loop. The runtime's exit is sent as
/// [`Event::RuntimeExited`]; other children are reaped silently. The thread ends when the agent
/// has no children left (`ECHILD`): at that point no descendant is alive, because any orphaned
/// descendant would have been re-parented to the agent.
pub fn start_reaper(runtime: Pid, events: Notifier) -> Result<(), AgentError> {
    spawn_thread("reaper", move || loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == runtime => {
                let status = match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => ExitStatus::Code(code),
                    (None, Some(sig)) => ExitStatus::Signal(sig),
                    (None, None) => continue, // stopped or continued, not gone
                };
                // The main thread may already be gone; then nobody needs to know.
                let _ = events.send(Event::RuntimeExited(status));
            }
            Ok(_) | Err(Errno::INTR) => {}
            Err(Errno::CHILD) => return,
            Err(e) => {
                eprintln!("skyscale-agent: waitpid: {e}");
                return;
            }
        }
    })
}

/// Reaps child `pid` if it has exited (`Some`: how); `None` while it runs. Only before
/// [`start_reaper`].
pub fn try_reap(pid: Pid) -> Option<ExitStatus> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(None) => return None,
            Ok(Some((_, status))) => {
                return match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => Some(ExitStatus::Code(code)),
                    (None, Some(sig)) => Some(ExitStatus::Signal(sig)),
                    (None, None) => None, // stopped or continued: still there
                };
            }
            Err(Errno::INTR) => {}
            // Not our child (any more): gone as far as we can tell.
            Err(_) => return Some(ExitStatus::Signal(Signal::KILL.as_raw())),
        }
    }
}

/// SIGKILLs child `pid`'s process group and waits for `pid` to be gone. Only before
/// [`start_reaper`].
pub fn kill_and_reap(pid: Pid) {
    kill_group(pid);
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status)))
                if status.exit_status().is_none() && status.terminating_signal().is_none() => {}
            Err(Errno::INTR) => {}
            _ => return,
        }
    }
}

/// SIGKILLs the runtime's whole process group. Errors (already gone) are ignored.
pub fn kill_group(pgid: Pid) {
    let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
}

/// Reads the peak resident memory (VmHWM) of one process: `/proc/<pid>/status` stays open and
/// every reading is a single `pread` at offset 0, which regenerates the file (Linux and
/// gVisor), instead of open, read and close per invocation. gVisor's status file has no
/// `VmHWM`, only the current `VmRSS`: there the probe reports the largest `VmRSS` it has read
/// (at the end of each invocation), a lower bound of the peak.
pub struct RssProbe {
    status: Option<File>,
    peak_kb: u64,
}

impl RssProbe {
    pub fn new(pid: Pid) -> RssProbe {
        RssProbe {
            status: File::open(format!("/proc/{}/status", pid.as_raw_nonzero())).ok(),
            peak_kb: 0,
        }
    }

    /// Peak resident memory in KiB so far; 0 when it was never readable.
    pub fn max_rss_kb(&mut self) -> u64 {
        let Some(file) = &self.status else {
            return self.peak_kb;
        };
        let mut buf = [0u8; 4096];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        if let Some(kb) = std::str::from_utf8(&buf[..n]).ok().and_then(parse_peak) {
            self.peak_kb = self.peak_kb.max(kb);
        }
        self.peak_kb
    }
}

/// The `VmHWM:` line of `/proc/<pid>/status` in kB, or `VmRSS:` where there is no `VmHWM:`.
fn parse_peak(status: &str) -> Option<u64> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    field("VmHWM:").or_else(|| field("VmRSS:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_parsed() {
        let status = "Name:\tpython3\nVmPeak:\t  20000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_peak(status), Some(12345));
        assert_eq!(parse_peak("Name:\tx\n"), None);
        // gVisor: no VmHWM.
        assert_eq!(
            parse_peak("Name:\tpython3\nVmSize:\t29108 kB\nVmRSS:\t22124 kB\n"),
            Some(22124)
        );
        let mut probe = RssProbe::new(rustix::process::getpid());
        let before = probe.max_rss_kb();
        assert!(before > 0);
        // Touch 64 MiB: the same open file reports the new peak.
        let mut big = vec![0u8; 64 << 20];
        for page in big.chunks_mut(4096) {
            page[0] = 1;
        }
        let touched: usize = big.iter().step_by(4096).map(|&b| usize::from(b)).sum();
        assert_eq!(touched, 16384);
        let after = probe.max_rss_kb();
        assert!(after >= before + 32 * 1024, "{before} {after}");
    }
}
