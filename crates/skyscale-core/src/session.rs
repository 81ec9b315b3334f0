//! The control plane's side of one sandbox: the agent channel and the frame conversation
//! (handshake, Init, Invoke). A `Session` is owned by exactly one task at a time — the pool
//! hands it out and takes it back — so it needs no lock.

use std::time::{Duration, Instant};

use skyscale_protocol::tokio_io::{read_frame, write_frame};
use skyscale_protocol::{
    Frame, Init, InitDone, Invoke, InvokeResult, ProtocolError, Snapshot, SnapshotDone,
    PROTOCOL_VERSION,
};
use skyscale_sandbox::{Sandbox, SandboxId};
use skyscale_types::invocation::InitType;
use skyscale_types::FunctionName;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

/// Which function configuration a sandbox was initialised with. A sandbox only ever serves
/// the revision it was initialised for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub function: FunctionName,
    pub revision: u64,
    /// `None` for `$LATEST`; a published version never changes, so its sandboxes are only
    /// retired when the version or the function is deleted.
    pub version: Option<u64>,
}

/// Why talking to an agent failed. Any of these means the sandbox is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("agent closed its channel")]
    Closed,
    #[error("agent sent {0} when {1} was expected")]
    Unexpected(&'static str, &'static str),
    #[error("agent speaks protocol {0}, this control plane speaks {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
}

pub(crate) struct Session {
    pub id: SandboxId,
    /// The function revision this sandbox was initialised for; `None` while generic.
    pub key: Option<PoolKey>,
    /// The memory limit the sandbox currently has, MiB.
    pub memory_mb: u32,
    pub last_used: Instant,
    /// How it was (or will be) initialised: on demand unless it was started to be kept
    /// ready or restored from a snapshot.
    pub init_type: InitType,
    to_agent: Box<dyn AsyncWrite + Send + Unpin>,
    from_agent: BufReader<Box<dyn AsyncRead + Send + Unpin>>,
}

impl Session {
    pub fn new(sandbox: Sandbox, memory_mb: u32) -> Self {
        Self {
            id: sandbox.id,
            key: None,
            memory_mb,
            last_used: Instant::now(),
            init_type: InitType::OnDemand,
            to_agent: sandbox.to_agent,
            from_agent: BufReader::with_capacity(64 * 1024, sandbox.from_agent),
        }
    }

    /// The buffered channel from the agent (the scheduler peeks at an idle provisioned
    /// sandbox's to see whether its agent is still there).
    pub fn reader(&mut self) -> &mut BufReader<Box<dyn AsyncRead + Send + Unpin>> {
        &mut self.from_agent
    }

    /// Reads the next frame that is not a `Log`; logs printed between invocations go to
    /// the control plane's own log.
    async fn next(&mut self) -> Result<Frame, SessionError> {
        loop {
            match read_frame(&mut self.from_agent).await? {
                None => return Err(SessionError::Closed),
                Some(Frame::Log(bytes)) => {
                    let function = self.key.as_ref().map(|k| k.function.as_str()).unwrap_or("");
                    tracing::info!(sandbox = %self.id, function,
                        output = %String::from_utf8_lossy(&bytes), "function output between invocations");
                }
                Some(frame) => return Ok(frame),
            }
        }
    }

    /// Waits for the agent's `Hello` and checks its protocol version.
    pub async fn handshake(&mut self, within: Duration) -> Result<(), SessionError> {
        let frame = tokio::time::timeout(within, self.next())
            .await
            .map_err(|_| SessionError::Timeout(within))??;
        match frame {
            Frame::Hello(h) if h.protocol_version == PROTOCOL_VERSION => Ok(()),
            Frame::Hello(h) => Err(SessionError::Version(h.protocol_version)),
            other => Err(SessionError::Unexpected(other.kind(), "Hello")),
        }
    }

    /// Sends `Init` and waits for `InitDone` (the agent bounds init by `init_timeout_ms`;
    /// `within` is the control plane's own backstop).
    pub async fn init(
        &mut self,
        init: Init,
        within: Duration,
    ) -> Result<(InitDone, Vec<u8>), SessionError> {
        write_frame(&mut self.to_agent, &Frame::Init(init)).await?;
        let frame = tokio::time::timeout(within, self.next())
            .await
            .map_err(|_| SessionError::Timeout(within))??;
        match frame {
            Frame::InitDone(done, body) => Ok((done, body)),
            other => Err(SessionError::Unexpected(other.kind(), "InitDone")),
        }
    }

    /// Runs the runtime's snapshot hooks of one side (SnapStart) and waits for their answer.
    pub async fn snapshot_hooks(
        &mut self,
        snapshot: Snapshot,
        within: Duration,
    ) -> Result<SnapshotDone, SessionError> {
        write_frame(&mut self.to_agent, &Frame::Snapshot(snapshot)).await?;
        let frame = tokio::time::timeout(within, self.next())
            .await
            .map_err(|_| SessionError::Timeout(within))??;
        match frame {
            Frame::SnapshotDone(done) => Ok(done),
            other => Err(SessionError::Unexpected(other.kind(), "SnapshotDone")),
        }
    }

    /// Runs one invocation. The caller bounds the whole call with the function's deadline.
    pub async fn invoke(
        &mut self,
        invoke: Invoke,
        payload: Vec<u8>,
    ) -> Result<(InvokeResult, Vec<u8>), SessionError> {
        let request_id = invoke.request_id.clone();
        write_frame(&mut self.to_agent, &Frame::Invoke(invoke, payload)).await?;
        match self.next().await? {
            Frame::Result(r, body) if r.request_id == request_id => {
                self.last_used = Instant::now();
                Ok((r, body))
            }
            other => Err(SessionError::Unexpected(other.kind(), "Result")),
        }
    }

    /// Asks the agent to stop its runtime and exit. Best effort: the driver destroys the
    /// sandbox either way.
    pub async fn shutdown(&mut self) {
        let _ = write_frame(&mut self.to_agent, &Frame::Shutdown).await;
    }
}
