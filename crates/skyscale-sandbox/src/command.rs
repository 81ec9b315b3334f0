//! Running the runtime CLI (`runsc`, `runc`) with a deadline, and forwarding a sandbox's
//! stderr to `tracing`.

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::reaper::spawn_tracked;
use crate::SandboxId;

/// What a finished CLI command printed.
#[derive(Debug)]
pub(crate) struct CliOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// A one-line summary for error messages: stderr if any, else the exit status.
    pub fn message(&self) -> String {
        let err = self.stderr.trim();
        if err.is_empty() {
            format!("exited with {}", self.status)
        } else {
            format!("exited with {}: {}", self.status, err)
        }
    }
}

/// Runs `binary args...` with stdin closed, collecting stdout and stderr. Kills the command
/// (and reaps it) if it does not finish within `timeout`; the error message says so.
pub(crate) async fn run_cli(
    binary: &Path,
    args: &[OsString],
    timeout: Duration,
) -> Result<CliOutput, String> {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_tracked(&mut cmd).map_err(|e| format!("spawning: {e}"))?;
    let stdout = child.child_mut().stdout.take();
    let stderr = child.child_mut().stderr.take();
    let finished = tokio::time::timeout(timeout, async {
        let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), child.wait());
        status.map(|status| CliOutput {
            status,
            stdout: out,
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    })
    .await;
    match finished {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => Err(format!("waiting: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("timed out after {timeout:?}"))
        }
    }
}

async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut buf).await;
    }
    buf
}

/// The first bytes of a sandbox's stderr, kept for the error message while `run` is running.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Option<String>>>);

/// How much of stderr a [`Capture`] keeps.
const CAPTURE_LIMIT: usize = 16 * 1024;
/// Longest line forwarded as one event; longer lines are split.
const MAX_LINE: usize = 4096;

impl Capture {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Some(String::new()))))
    }

    fn push(&self, line: &str) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(buf) = guard.as_mut() {
            if buf.len() + line.len() < CAPTURE_LIMIT {
                buf.push_str(line);
                buf.push('\n');
            }
        }
    }

    /// Stops capturing and returns what was captured.
    pub fn take(&self) -> String {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        guard.take().unwrap_or_default()
    }
}

/// Forwards `stderr` line by line to `tracing::warn!` until EOF (every process holding the
/// pipe's write end is gone), feeding `capture` as long as it is capturing.
pub(crate) async fn forward_stderr(
    id: SandboxId,
    mut stderr: impl AsyncRead + Unpin,
    capture: Capture,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            emit(&id, &line[..line.len() - 1], &capture);
        }
        if pending.len() > MAX_LINE {
            let line = std::mem::take(&mut pending);
            emit(&id, &line, &capture);
        }
    }
    if !pending.is_empty() {
        emit(&id, &pending, &capture);
    }
}

fn emit(id: &SandboxId, line: &[u8], capture: &Capture) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    tracing::warn!(sandbox = %id, "stderr: {line}");
    capture.push(line);
}
