//! The lean channel to the built-in Python runtime: two pipes carrying agent frames
//! ([`skyscale_protocol`], same format as on stdin/stdout), offered to every runtime through
//! [`RUNTIME_FDS_ENV`]. The mapping of frames to Runtime API calls is documented in the
//! protocol crate ("The runtime pipe").
//!
//! A runtime that does not know the variable (awslambdaric, a custom `bootstrap`) simply
//! inherits two idle descriptors and uses the HTTP Runtime API; the agent decides which
//! channel the runtime speaks by what it hears first: an `InitDone` frame on the pipe or a
//! `GET /next`.
//!
//! Descriptors: all four ends are created close-on-exec. The runtime's two ends then lose the
//! flag, just before the spawn they are made for (one pair per spawn: the zygote's, then
//! possibly the function's own runtime), so exactly they are inherited, and the agent closes
//! its copies of them right after that spawn so that end of file works in both directions.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::io::FdFlags;
use rustix::pipe::PipeFlags;
use skyscale_protocol::{Frame, ProtocolError};

use crate::error::AgentError;
use crate::frames::{FrameReader, Outbox};
use crate::http::MAX_BODY;

/// `<read_fd>,<write_fd>`: the runtime reads `Invoke` frames from the first and writes
/// `InitDone` and `Result` frames to the second.
pub const RUNTIME_FDS_ENV: &str = "_SKYSCALE_RUNTIME_FDS";

/// Largest frame accepted from the runtime: a 6 MB body (the Runtime API's limit too) plus
/// room for the metadata.
const MAX_RUNTIME_FRAME: usize = MAX_BODY + 64 * 1024;

/// The runtime's ends, inheritable, until the spawn.
pub struct ChildEnds {
    read: OwnedFd,
    write: OwnedFd,
}

impl ChildEnds {
    /// The value of [`RUNTIME_FDS_ENV`].
    pub fn env_value(&self) -> String {
        format!("{},{}", self.read.as_raw_fd(), self.write.as_raw_fd())
    }
}

/// The agent's ends.
pub struct RuntimePipe {
    reader: FrameReader,
    writer: OwnedFd,
    outbox: Outbox,
}

/// Creates both pipes.
pub fn pair() -> Result<(RuntimePipe, ChildEnds), AgentError> {
    let io_err = |what| {
        move |e: rustix::io::Errno| AgentError::Io {
            what,
            source: e.into(),
        }
    };
    let (to_runtime_r, to_runtime_w) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(io_err("create runtime pipe"))?;
    let (from_runtime_r, from_runtime_w) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(io_err("create runtime pipe"))?;
    for fd in [&to_runtime_r, &from_runtime_w] {
        rustix::io::fcntl_setfd(fd, FdFlags::empty())
            .map_err(io_err("make runtime pipe inheritable"))?;
    }
    rustix::io::ioctl_fionbio(&to_runtime_w, true)
        .map_err(io_err("make runtime pipe non-blocking"))?;
    // The default capacity (64 KiB) stays: growing it (F_SETPIPE_SZ) is charged to the user's
    // pipe-page quota (per uid; each sandbox has its own uid, but the quota is small), and a
    // 6 MB event costs far more in JSON parsing than in the extra wake-ups.
    Ok((
        RuntimePipe {
            reader: FrameReader::new(from_runtime_r, MAX_RUNTIME_FRAME),
            writer: to_runtime_w,
            outbox: Outbox::default(),
        },
        ChildEnds {
            read: to_runtime_r,
            write: from_runtime_w,
        },
    ))
}

impl RuntimePipe {
    /// The end to poll for frames, until the runtime closed it.
    pub fn read_fd(&self) -> Option<BorrowedFd<'_>> {
        (!self.reader.at_eof()).then(|| self.reader.fd())
    }

    /// The end to poll for `POLLOUT` while a frame is only partly written.
    pub fn write_fd(&self) -> Option<BorrowedFd<'_>> {
        (!self.outbox.is_empty()).then(|| self.writer.as_fd())
    }

    /// One read (call after `poll` said readable); 0 is end of file.
    pub fn fill(&mut self) -> Result<usize, ProtocolError> {
        self.reader.fill()
    }

    /// Stops reading after the runtime broke the protocol.
    pub fn give_up(&mut self) {
        self.reader.give_up();
    }

    /// The next complete frame already read.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        self.reader.next_frame()
    }

    /// Starts sending a frame; the rest goes out on [`flush`](Self::flush) when the pipe has
    /// room. An error means the runtime closed its end.
    pub fn send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let bytes = frame.encode()?;
        Ok(self.outbox.start(self.writer.as_fd(), bytes)?)
    }

    /// Continues a partly written frame.
    pub fn flush(&mut self) -> io::Result<()> {
        self.outbox.flush(self.writer.as_fd())
    }

    /// Drops a partly written frame (the invocation it carried is over).
    pub fn abandon(&mut self) {
        self.outbox.clear();
    }
}
