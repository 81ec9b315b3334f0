//! The control channel: frames from the control plane on stdin, frames to it on stdout. Both
//! belong to the main thread alone, so frames never interleave and no thread sits between the
//! control plane and the runtime.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use skyscale_protocol::{write_frame, Frame, ProtocolError, MAX_FRAME_LEN};

use crate::error::AgentError;
use crate::frames::FrameReader;

pub struct Control {
    input: FrameReader,
    /// A duplicate of fd 1: `std::io::stdout()` is line-buffered and would split binary frames
    /// at every newline byte.
    out: File,
}

impl Control {
    /// Duplicates stdin and stdout (std's buffered handles are never used for frames).
    pub fn stdio() -> Result<Control, AgentError> {
        let input = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(AgentError::io("duplicate stdin"))?;
        let out = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(AgentError::io("duplicate stdout"))?;
        Ok(Control {
            input: FrameReader::new(input, MAX_FRAME_LEN),
            out: out.into(),
        })
    }

    /// Writes one frame; `write_frame` loops over short writes (runsc produces them when the
    /// host pipe is full).
    pub fn send(&mut self, frame: &Frame) -> Result<(), AgentError> {
        Ok(write_frame(&mut self.out, frame)?)
    }

    /// Blocks for the next frame; `None` at end of file. Only before the poll loop starts.
    pub fn recv(&mut self) -> Result<Option<Frame>, ProtocolError> {
        self.input.read_frame()
    }

    /// stdin, to poll, until end of file.
    pub fn read_fd(&self) -> Option<BorrowedFd<'_>> {
        (!self.input.at_eof()).then(|| self.input.fd())
    }

    /// One read after `poll` said stdin is readable; 0 is end of file.
    pub fn fill(&mut self) -> Result<usize, ProtocolError> {
        self.input.fill()
    }

    /// The next complete frame already read.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        self.input.next_frame()
    }
}
