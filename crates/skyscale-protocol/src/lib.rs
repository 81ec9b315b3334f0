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
//! runtime → Result{request_id, status: ok}     = POST /invocation/{id}/response; body = response
//! runtime → Result{request_id, status: error,  = POST /invocation/{id}/error with the
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
pub const PROTOCOL_VERSION: u32 = 1;

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
    pub error_type: Option<String>,
    pub duration_us: u64,
    /// What the runtime printed during init.
    pub logs: String,
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

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvokeStatus {
    /// The runtime posted a response; the body is the response bytes.
    Ok,
    /// The runtime posted an error; the body is the error document.
    Error,
    /// The deadline passed; the runtime was killed and the agent exits.
    Timeout,
    /// The runtime process died (exit, signal, OOM kill); the agent exits.
    Crashed,
}

/// The end of one invocation. The body is the response or the error document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeResult {
    pub request_id: String,
    pub status: InvokeStatus,
    pub error_type: Option<String>,
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
}

const TAG_HELLO: u8 = 1;
const TAG_INIT: u8 = 2;
const TAG_INIT_DONE: u8 = 3;
const TAG_INVOKE: u8 = 4;
const TAG_RESULT: u8 = 5;
const TAG_LOG: u8 = 6;
const TAG_SHUTDOWN: u8 = 7;

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
        roundtrip(Frame::Result(
            InvokeResult {
                request_id: "r".into(),
                status: InvokeStatus::Crashed,
                error_type: Some("Runtime.ExitError".into()),
                duration_us: 1,
                max_rss_kb: 2,
                logs: String::new(),
            },
            b"{\"a\":1}".to_vec(),
        ));
        roundtrip(Frame::Log(b"hello\n".to_vec()));
        roundtrip(Frame::Shutdown);
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
