//! The agent protocol: length-prefixed frames over the byte channel a sandbox driver provides
//! (the sandbox's stdin/stdout for the OCI drivers).
//!
//! One frame on the wire:
//!
//! ```text
//! u32 BE  length of everything after this field
//! u8      tag (see [`Frame`])
//! u32 BE  length of the metadata
//! [..]    metadata, JSON
//! [..]    body: raw bytes (event payload, response, error document, log bytes)
//! ```
//!
//! Payloads travel as raw bytes and are never re-encoded. The conversation is:
//!
//! ```text
//! agent → Hello{version}        (first frame, written as soon as the agent starts)
//! cp    → Init{..}              (once; the agent starts the runtime)
//! agent → InitDone{..}          (the runtime asked for its first event, or init failed)
//! cp    → Invoke{..}, agent → Result{..}   (repeated, one at a time)
//! agent → Log                   (output the runtime printed between invocations)
//! cp    → Shutdown              (the agent stops the runtime and exits)
//! ```
//!
//! After a `Result` whose status is `Timeout` or `Crashed` the agent exits: the control plane
//! destroys that sandbox and never hands it out again.
//!
//! # Outcomes are typed
//!
//! A `Result` says how the invocation ended as an [`InvokeStatus`]: `ok`, `error` with the
//! function's own error type (whatever string the runtime chose, `Sandbox.Timedout`
//! included), `timeout`, or `crashed` with the runtime's [`ExitStatus`]. A failed `InitDone`
//! says the same through [`InitFailure`]. Nothing downstream reads meaning into error-type
//! strings; Lambda's platform error types and wording ([`TIMED_OUT`], [`EXIT_ERROR`],
//! [`exit_message`]) are derived from these types here, for the agent and the control plane
//! alike.
//!
//! # The runtime pipe
//!
//! Inside the sandbox the same frames also run between the agent and the built-in Python
//! runtime, as a lean alternative to the Lambda Runtime API over loopback HTTP. The agent
//! creates two pipes and lets the runtime inherit one end of each, named by the environment
//! variable `_SKYSCALE_RUNTIME_FDS=<read_fd>,<write_fd>` (the runtime reads from the first and
//! writes to the second). A runtime that ignores the variable uses HTTP; the agent takes
//! whichever the runtime uses first — an `InitDone` frame on the pipe or a `GET /next` — and
//! sticks to it. The frames map to the Runtime API like this:
//!
//! ```text
//! runtime → InitDone{ok:true}                  = first GET /next: init done, ready for an event
//! runtime → InitDone{ok:false, error_type}     = POST /init/error; body = the error document
//! agent   → Invoke{request_id, deadline_ms,    = the answer to GET /next: headers
//!           invoked_function_arn,                Lambda-Runtime-Aws-Request-Id, -Deadline-Ms,
//!           client_context, trace_id}            -Invoked-Function-Arn, -Client-Context,
//!           + event payload                      -Trace-Id (CR/LF replaced by spaces, as in a
//!                                                header); body = the event (JSON)
//! runtime → Result{request_id, status: "ok"}   = POST /invocation/{id}/response; body = response
//! runtime → Result{request_id, status: "error", = POST /invocation/{id}/error with the
//!           error_type}                          Lambda-Runtime-Function-Error-Type header
//!                                                (optional); body = the error document
//! ```
//!
//! In frames from the runtime the agent ignores `duration_us`, `max_rss_kb` and `logs` (send 0
//! and ""): it measures them itself, as on the HTTP path. A missing `error_type` falls back to
//! the document's `errorType`, then `Runtime.Unknown`, as a missing header does. Bodies are at
//! most 6 MB either way. The runtime flushes its stdout and stderr before each frame it writes,
//! so the agent's log cut after reading the frame is exact. Any other frame, a `Result` for
//! another request, or a malformed frame makes the agent kill the runtime (reported as a crash
//! or a failed init). End of file on the pipe means nothing by itself; the runtime's exit is
//! what the agent reports.
//!
//! # The pre-started runtime ("zygote")
//!
//! A generic sandbox (booted before it is bound to a function) may already run the runtime
//! most functions use, so that a cold start skips the interpreter's start and the bootstrap's
//! imports. The control plane names it in the agent's own environment: [`PREWARM_ENV`] holds
//! a [`Prewarm`] as JSON. Right after `Hello` the agent starts `Prewarm::command` in `/` with
//! exactly `Prewarm::env` plus the runtime pipe (`_SKYSCALE_RUNTIME_FDS`) and
//! [`ZYGOTE_ENV`]`=1`. The runtime gets ready (imports what it needs) and waits on the pipe
//! for its configuration; it opens no other channel before that.
//!
//! On `Init` the agent uses the zygote only when a freshly started runtime would be
//! indistinguishable from it: `Init.command` equals `Prewarm::command`; every variable that
//! shapes an interpreter for good at start-up has the same value (or is absent) in `Init.env`
//! and in `Prewarm::env` — the variables of `Prewarm::env` itself, and every `PYTHON*`,
//! `LC_*`, `LD_*`, `MALLOC_*`, `LANG`, `LANGUAGE`, `HOME`, `LOCPATH`, `GCONV_PATH`,
//! `GLIBC_TUNABLES`, `SETUPTOOLS_USE_DISTUTILS`; the environment and `Init.cwd` are ones a spawn accepts unchanged; and the
//! zygote is alive. Then the first frame on the runtime pipe is
//!
//! ```text
//! agent   → Init{..}   = Init as the control plane sent it, except env = Init.env plus
//!                        AWS_LAMBDA_RUNTIME_API (the agent's Runtime API address)
//! ```
//!
//! and the runtime makes its process what a fresh start with that `Init` would have made:
//! its environment becomes exactly `env` — later duplicates win, in name order (the order a
//! spawn gives), without `_SKYSCALE_RUNTIME_FDS` and [`ZYGOTE_ENV`] (a fresh runtime removes
//! them), set through the C library too — followed by the changes its own start-up made to the
//! environment it was given (Python's locale coercion adds `LC_CTYPE`); it re-reads the time
//! zone and changes to `cwd`. From there it goes on as a fresh runtime does: `InitDone` (on the
//! pipe, or on the Runtime API when its environment says so), then invocations. Otherwise the
//! agent kills the zygote's process group, reaps it, says why on its stderr, and starts
//! `Init.command` as usual. Either way `InitDone.duration_us` counts from the arrival of
//! `Init`. Only a runtime that implements this may be named in [`PREWARM_ENV`].

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Version spoken by this build. The control plane refuses an agent with another one.
/// 2: `Result` and `InitDone` carry typed outcomes (a crash's exit status; no platform
/// error types as strings).
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest frame accepted (a 6 MB payload plus logs and metadata fit easily).
pub const MAX_FRAME_LEN: usize = 32 * 1024 * 1024;

/// Most log bytes one `Result` or `InitDone` carries; older output is dropped with a marker.
pub const MAX_LOG_BYTES: usize = 256 * 1024;

/// A protocol violation or I/O failure on the channel.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The channel failed or closed.
    #[error("agent channel i/o: {0}")]
    Io(#[from] io::Error),
    /// The length prefix exceeds MAX_FRAME_LEN.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(usize),
    /// The frame is shorter than its own headers say.
    #[error("truncated frame")]
    Truncated,
    /// Unknown tag byte.
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    /// The metadata is not the JSON the tag requires.
    #[error("bad frame metadata: {0}")]
    Metadata(#[from] serde_json::Error),
}

/// Environment variable (`1`) of a runtime started as a zygote: it waits for an `Init` frame on
/// the runtime pipe (see "The pre-started runtime").
pub const ZYGOTE_ENV: &str = "_SKYSCALE_ZYGOTE";

/// Environment variable of the *agent* holding a [`Prewarm`] as JSON; absent or empty: no
/// zygote.
pub const PREWARM_ENV: &str = "SKYSCALE_PREWARM";

/// The runtime a generic sandbox pre-starts (see "The pre-started runtime"), e.g.
/// `{"command":["/usr/bin/python3.11","/var/runtime/bootstrap.py"],"env":[["LANG","C.UTF-8"]]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prewarm {
    /// argv; a later `Init.command` must equal it for the zygote to be used.
    pub command: Vec<String>,
    /// The zygote's whole environment (the runtime pipe's variables are added): only what the
    /// interpreter reads at start-up, with the values `Init.env` will normally have.
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// First frame from the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub agent_version: String,
}

/// Tells the agent what to run. The control plane has already resolved everything: the agent
/// execs `command` with exactly `env` (plus `AWS_LAMBDA_RUNTIME_API`) in `cwd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Init {
    pub function_name: String,
    pub function_version: String,
    pub memory_mb: u32,
    /// argv of the runtime process, e.g. `["/usr/bin/python3", "/var/runtime/bootstrap.py"]`.
    pub command: Vec<String>,
    /// Working directory of the runtime, normally `/var/task`.
    pub cwd: String,
    pub env: Vec<(String, String)>,
    /// How long the runtime may take to reach its first `/next`.
    pub init_timeout_ms: u64,
}

/// The runtime finished init (`ok`), or it failed. On failure the body is the error document
/// (`{"errorMessage","errorType",..}`) and the agent exits after sending this frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitDone {
    pub ok: bool,
    /// The runtime's own error type when it reported the failure (`failure` is `None`).
    pub error_type: Option<String>,
    /// Set by the agent when the runtime did not report the failure itself: it ran out of
    /// time or exited. Runtimes never send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<InitFailure>,
    pub duration_us: u64,
    /// What the runtime printed during init.
    pub logs: String,
}

/// Which side of a snapshot the runtime's hooks are for (SnapStart): the control plane sends
/// `Snapshot` to an initialised, idle agent, which passes it to the built-in runtime over the
/// runtime pipe; the runtime runs its hooks and answers `SnapshotDone`, which the agent passes
/// back. A runtime on the Runtime API has no hooks: the agent answers for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotPhase {
    /// Run the before-snapshot hooks: a checkpoint follows the answer.
    Before,
    /// The sandbox was just restored: take `env` (the restored sandbox's own identity, such
    /// as its log stream), reseed `random`, run the after-restore hooks.
    AfterRestore,
}

/// `Snapshot`: run the hooks of `phase`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub phase: SnapshotPhase,
    /// Variables to set in the runtime's environment first (after a restore).
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// `SnapshotDone`: the hooks ran (`ok`) or one raised (`error`: its type and message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDone {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    pub duration_us: u64,
    /// What the runtime printed meanwhile (the agent fills it in).
    #[serde(default)]
    pub logs: String,
}

impl InitDone {
    /// Lambda's error type of a failed init: the platform's for a [`InitFailure`], else the
    /// runtime's own (`Runtime.Unknown` when it named none). `None` when init succeeded.
    pub fn failure_type(&self) -> Option<&str> {
        if self.ok {
            return None;
        }
        Some(match (&self.failure, &self.error_type) {
            (Some(failure), _) => failure.error_type(),
            (None, Some(own)) => own,
            (None, None) => UNKNOWN_ERROR,
        })
    }
}

/// An init that the runtime did not end by reporting an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitFailure {
    /// The init timeout passed; the runtime was killed.
    Timeout,
    /// The runtime exited before it asked for its first event.
    Crashed(ExitStatus),
}

impl InitFailure {
    /// Lambda's error type for this ending.
    pub fn error_type(self) -> &'static str {
        match self {
            InitFailure::Timeout => TIMED_OUT,
            InitFailure::Crashed(_) => EXIT_ERROR,
        }
    }
}

/// One invocation. The body is the event payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoke {
    pub request_id: String,
    /// Deadline as Unix epoch milliseconds (`Lambda-Runtime-Deadline-Ms`).
    pub deadline_ms: u64,
    /// The function's configured timeout, which the timeout error quotes (`Task timed out
    /// after 3.00 seconds`); the deadline alone would quote it minus the frame's transit.
    /// 0 = derive it from the deadline.
    #[serde(default)]
    pub timeout_ms: u64,
    pub invoked_function_arn: String,
    /// Raw JSON for `Lambda-Runtime-Client-Context`.
    pub client_context: Option<String>,
    pub trace_id: Option<String>,
}

/// Lambda's error type for an invocation or init that ran out of time.
pub const TIMED_OUT: &str = "Sandbox.Timedout";
/// Lambda's error type for a runtime that exited (or was killed) instead of answering.
pub const EXIT_ERROR: &str = "Runtime.ExitError";
/// The error type of a runtime's error that names none (no header, no `errorType`).
pub const UNKNOWN_ERROR: &str = "Runtime.Unknown";

/// How the runtime process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it (SIGKILL is also what an OOM kill looks like).
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    /// The wording of Go's `os.ProcessState`, which is what Lambda prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Code(code) => write!(f, "exit status {code}"),
            ExitStatus::Signal(sig) => match signal_name(sig) {
                Some(name) => write!(f, "signal: {name}"),
                None => write!(f, "signal: signal {sig}"),
            },
        }
    }
}

/// Go's names for the common signals.
fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        5 => "trace/breakpoint trap",
        6 => "aborted",
        7 => "bus error",
        8 => "floating point exception",
        9 => "killed",
        10 => "user defined signal 1",
        11 => "segmentation fault",
        12 => "user defined signal 2",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        _ => return None,
    })
}

/// Lambda's `Runtime.ExitError` message: `RequestId: <id> Error: Runtime exited with error:
/// exit status 1`, or `... Runtime exited without providing a reason` when the exit status is
/// unknown (the whole sandbox died).
pub fn exit_message(request_id: &str, exit: Option<ExitStatus>) -> String {
    match exit {
        Some(exit) => format!("RequestId: {request_id} Error: Runtime exited with error: {exit}"),
        None => format!("RequestId: {request_id} Error: Runtime exited without providing a reason"),
    }
}

/// How an invocation ended: the `status` of a `Result` frame, with what each ending carries.
/// On the wire it is flattened into [`InvokeResult`]: `"status":"error","error_type":"X"`,
/// `"status":"crashed","exit":{"signal":9}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum InvokeStatus {
    /// The runtime posted a response; the body is the response bytes.
    Ok,
    /// The runtime posted an error; the body is the error document. `error_type` is the
    /// function's own, whatever it says (in frames from the agent it is always set).
    Error {
        #[serde(default)]
        error_type: Option<String>,
    },
    /// The deadline passed; the runtime was killed and the agent exits.
    Timeout,
    /// The runtime process died (exit, signal, OOM kill); the agent exits.
    Crashed { exit: ExitStatus },
}

impl InvokeStatus {
    /// Lambda's error type for this ending: none for `Ok`, the function's own for `Error`,
    /// the platform's for the rest.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            InvokeStatus::Ok => None,
            InvokeStatus::Error { error_type } => {
                Some(error_type.as_deref().unwrap_or(UNKNOWN_ERROR))
            }
            InvokeStatus::Timeout => Some(TIMED_OUT),
            InvokeStatus::Crashed { .. } => Some(EXIT_ERROR),
        }
    }
}

/// The end of one invocation. The body is the response or the error document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeResult {
    pub request_id: String,
    #[serde(flatten)]
    pub status: InvokeStatus,
    pub duration_us: u64,
    /// Peak resident memory of the runtime process so far, in KiB.
    pub max_rss_kb: u64,
    /// Everything the runtime printed during this invocation (stdout and stderr, in order
    /// of arrival), at most [`MAX_LOG_BYTES`].
    pub logs: String,
}

/// Every frame, in both directions.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Hello(Hello),
    Init(Init),
    InitDone(InitDone, Vec<u8>),
    Invoke(Invoke, Vec<u8>),
    Result(InvokeResult, Vec<u8>),
    /// Runtime output between invocations.
    Log(Vec<u8>),
    Shutdown,
    Snapshot(Snapshot),
    SnapshotDone(SnapshotDone),
}

const TAG_HELLO: u8 = 1;
const TAG_INIT: u8 = 2;
const TAG_INIT_DONE: u8 = 3;
const TAG_INVOKE: u8 = 4;
const TAG_RESULT: u8 = 5;
const TAG_LOG: u8 = 6;
const TAG_SHUTDOWN: u8 = 7;
const TAG_SNAPSHOT: u8 = 8;
const TAG_SNAPSHOT_DONE: u8 = 9;

impl Frame {
    /// The complete wire form, length prefix included.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let (tag, meta, body): (u8, Vec<u8>, &[u8]) = match self {
            Frame::Hello(m) => (TAG_HELLO, serde_json::to_vec(m)?, &[]),
            Frame::Init(m) => (TAG_INIT, serde_json::to_vec(m)?, &[]),
            Frame::InitDone(m, b) => (TAG_INIT_DONE, serde_json::to_vec(m)?, b),
            Frame::Invoke(m, b) => (TAG_INVOKE, serde_json::to_vec(m)?, b),
            Frame::Result(m, b) => (TAG_RESULT, serde_json::to_vec(m)?, b),
            Frame::Log(b) => (TAG_LOG, Vec::new(), b),
            Frame::Shutdown => (TAG_SHUTDOWN, Vec::new(), &[]),
            Frame::Snapshot(m) => (TAG_SNAPSHOT, serde_json::to_vec(m)?, &[]),
            Frame::SnapshotDone(m) => (TAG_SNAPSHOT_DONE, serde_json::to_vec(m)?, &[]),
        };
        let len = 1 + 4 + meta.len() + body.len();
        if len > MAX_FRAME_LEN {
            return Err(ProtocolError::TooLarge(len));
        }
        let mut out = Vec::with_capacity(4 + len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.push(tag);
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(body);
        Ok(out)
    }

    /// Decodes one frame from everything after its length prefix.
    pub fn decode(buf: &[u8]) -> Result<Frame, ProtocolError> {
        let (&tag, rest) = buf.split_first().ok_or(ProtocolError::Truncated)?;
        if rest.len() < 4 {
            return Err(ProtocolError::Truncated);
        }
        let meta_len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let rest = &rest[4..];
        if rest.len() < meta_len {
            return Err(ProtocolError::Truncated);
        }
        let (meta, body) = rest.split_at(meta_len);
        Ok(match tag {
            TAG_HELLO => Frame::Hello(serde_json::from_slice(meta)?),
            TAG_INIT => Frame::Init(serde_json::from_slice(meta)?),
            TAG_INIT_DONE => Frame::InitDone(serde_json::from_slice(meta)?, body.to_vec()),
            TAG_INVOKE => Frame::Invoke(serde_json::from_slice(meta)?, body.to_vec()),
            TAG_RESULT => Frame::Result(serde_json::from_slice(meta)?, body.to_vec()),
            TAG_LOG => Frame::Log(body.to_vec()),
            TAG_SHUTDOWN => Frame::Shutdown,
            TAG_SNAPSHOT => Frame::Snapshot(serde_json::from_slice(meta)?),
            TAG_SNAPSHOT_DONE => Frame::SnapshotDone(serde_json::from_slice(meta)?),
            other => return Err(ProtocolError::UnknownTag(other)),
        })
    }

    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Init(_) => "Init",
            Frame::InitDone(..) => "InitDone",
            Frame::Invoke(..) => "Invoke",
            Frame::Result(..) => "Result",
            Frame::Log(_) => "Log",
            Frame::Shutdown => "Shutdown",
            Frame::Snapshot(_) => "Snapshot",
            Frame::SnapshotDone(_) => "SnapshotDone",
        }
    }
}

fn check_len(prefix: [u8; 4]) -> Result<usize, ProtocolError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::TooLarge(len));
    }
    Ok(len)
}

/// Writes one frame and flushes. `write_all` loops over short writes, which runsc produces
/// when the host pipe is full.
pub fn write_frame<W: Write>(w: &mut W, frame: &Frame) -> Result<(), ProtocolError> {
    w.write_all(&frame.encode()?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. `Ok(None)` means the channel closed cleanly between frames.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Option<Frame>, ProtocolError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut buf = vec![0u8; check_len(prefix)?];
    r.read_exact(&mut buf)?;
    Frame::decode(&buf).map(Some)
}

/// Async versions for the control plane.
#[cfg(feature = "tokio")]
pub mod tokio_io {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::*;

    pub async fn write_frame<W: AsyncWrite + Unpin>(
        w: &mut W,
        frame: &Frame,
    ) -> Result<(), ProtocolError> {
        w.write_all(&frame.encode()?).await?;
        w.flush().await?;
        Ok(())
    }

    /// `Ok(None)` means the channel closed cleanly between frames.
    pub async fn read_frame<R: AsyncRead + Unpin>(
        r: &mut R,
    ) -> Result<Option<Frame>, ProtocolError> {
        let mut prefix = [0u8; 4];
        match r.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut buf = vec![0u8; check_len(prefix)?];
        r.read_exact(&mut buf).await?;
        Frame::decode(&buf).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame) {
        let bytes = f.encode().unwrap();
        let back = read_frame(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn every_frame_roundtrips() {
        roundtrip(Frame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
        }));
        roundtrip(Frame::Init(Init {
            function_name: "f".into(),
            function_version: "$LATEST".into(),
            memory_mb: 128,
            command: vec!["/usr/bin/python3".into()],
            cwd: "/var/task".into(),
            env: vec![("A".into(), "b".into())],
            init_timeout_ms: 10_000,
        }));
        roundtrip(Frame::InitDone(
            InitDone {
                ok: false,
                error_type: Some("Runtime.ImportModuleError".into()),
                failure: None,
                duration_us: 5,
                logs: "x".into(),
            },
            b"{}".to_vec(),
        ));
        roundtrip(Frame::Invoke(
            Invoke {
                request_id: "r".into(),
                deadline_ms: 1,
                timeout_ms: 1000,
                invoked_function_arn: "arn".into(),
                client_context: None,
                trace_id: None,
            },
            vec![0, 255, 1],
        ));
        roundtrip(Frame::InitDone(
            InitDone {
                ok: false,
                error_type: None,
                failure: Some(InitFailure::Crashed(ExitStatus::Code(3))),
                duration_us: 5,
                logs: String::new(),
            },
            b"{}".to_vec(),
        ));
        for status in [
            InvokeStatus::Ok,
            InvokeStatus::Error {
                error_type: Some("Sandbox.Timedout".into()),
            },
            InvokeStatus::Timeout,
            InvokeStatus::Crashed {
                exit: ExitStatus::Signal(9),
            },
        ] {
            roundtrip(Frame::Result(
                InvokeResult {
                    request_id: "r".into(),
                    status,
                    duration_us: 1,
                    max_rss_kb: 2,
                    logs: String::new(),
                },
                b"{\"a\":1}".to_vec(),
            ));
        }
        roundtrip(Frame::Log(b"hello\n".to_vec()));
        roundtrip(Frame::Shutdown);
        roundtrip(Frame::Snapshot(Snapshot {
            phase: SnapshotPhase::AfterRestore,
            env: vec![("A".into(), "b".into())],
        }));
        roundtrip(Frame::SnapshotDone(SnapshotDone {
            ok: false,
            error: Some("ValueError: no".into()),
            duration_us: 3,
            logs: "x\n".into(),
        }));
        // The built-in runtime's hand-written answer.
        let done: SnapshotDone = serde_json::from_str(r#"{"ok": true, "duration_us": 0}"#).unwrap();
        assert!(done.ok && done.error.is_none());
    }

    /// The built-in runtime writes `Result` and `InitDone` metadata by hand
    /// (`runtime/python/bootstrap.py`): its forms must keep decoding.
    #[test]
    fn the_runtimes_hand_written_frames_decode() {
        let ok: InvokeResult = serde_json::from_str(
            r#"{"request_id":"r","status":"ok","error_type":null,"duration_us":0,"max_rss_kb":0,"logs":""}"#,
        )
        .unwrap();
        assert_eq!(ok.status, InvokeStatus::Ok);
        let err: InvokeResult = serde_json::from_str(
            r#"{"request_id":"r","status":"error","error_type":"Sandbox.Timedout","duration_us":0,"max_rss_kb":0,"logs":""}"#,
        )
        .unwrap();
        assert_eq!(
            err.status,
            InvokeStatus::Error {
                error_type: Some("Sandbox.Timedout".into())
            }
        );
        // A function's own error type is its own, even when it spells a platform one.
        assert_eq!(err.status.error_type(), Some("Sandbox.Timedout"));
        let untyped: InvokeResult = serde_json::from_str(
            r#"{"request_id":"r","status":"error","error_type":null,"duration_us":0,"max_rss_kb":0,"logs":""}"#,
        )
        .unwrap();
        assert_eq!(untyped.status.error_type(), Some(UNKNOWN_ERROR));
        let done: InitDone =
            serde_json::from_str(r#"{"ok":true,"error_type":null,"duration_us":0,"logs":""}"#)
                .unwrap();
        assert!(done.ok && done.failure.is_none());
    }

    #[test]
    fn platform_errors_are_derived_from_the_status() {
        assert_eq!(InvokeStatus::Timeout.error_type(), Some(TIMED_OUT));
        let killed = InvokeStatus::Crashed {
            exit: ExitStatus::Signal(9),
        };
        assert_eq!(killed.error_type(), Some(EXIT_ERROR));
        assert_eq!(InvokeStatus::Ok.error_type(), None);
        assert_eq!(ExitStatus::Code(1).to_string(), "exit status 1");
        assert_eq!(ExitStatus::Signal(9).to_string(), "signal: killed");
        assert_eq!(ExitStatus::Signal(40).to_string(), "signal: signal 40");
        assert_eq!(
            exit_message("r1", Some(ExitStatus::Code(1))),
            "RequestId: r1 Error: Runtime exited with error: exit status 1"
        );
        assert_eq!(
            exit_message("r1", None),
            "RequestId: r1 Error: Runtime exited without providing a reason"
        );
        assert_eq!(InitFailure::Timeout.error_type(), TIMED_OUT);
        assert_eq!(
            InitFailure::Crashed(ExitStatus::Code(1)).error_type(),
            EXIT_ERROR
        );
    }

    #[test]
    fn clean_eof_is_none_and_garbage_is_an_error() {
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
        let huge = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(ProtocolError::TooLarge(_))
        ));
        let bad_tag = [0, 0, 0, 5, 99, 0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut &bad_tag[..]),
            Err(ProtocolError::UnknownTag(99))
        ));
        let truncated = [0, 0, 0, 9, 1, 0, 0];
        assert!(read_frame(&mut &truncated[..]).is_err());
    }
}
