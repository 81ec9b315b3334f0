//! Frames on raw file descriptors, for a thread that multiplexes them with `poll(2)`.
//!
//! [`FrameReader`] never blocks once `poll` said its descriptor is readable: it does at most one
//! `read(2)` per [`fill`](FrameReader::fill) and hands out only complete frames, so a frame
//! that arrives in pieces (a 6 MB event) costs a few trips around the poll loop instead of a
//! blocked thread. [`Outbox`] is the writing counterpart on a non-blocking descriptor: what the
//! pipe cannot take now waits for `POLLOUT`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use skyscale_protocol::{Frame, ProtocolError};

/// Smallest read; one read normally takes a whole small frame.
const READ_SIZE: usize = 64 * 1024;
/// A buffer grown beyond this for one big frame is released once the frame is decoded.
const KEEP_SIZE: usize = 1024 * 1024;

/// Buffered frame reader over one descriptor. `buf[head..tail]` holds bytes read but not yet
/// decoded; the vector's length is its capacity, so reads never zero-fill again.
pub struct FrameReader {
    fd: OwnedFd,
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    /// Largest frame accepted (length prefix excluded).
    limit: usize,
    eof: bool,
}

impl FrameReader {
    /// A reader that refuses frames longer than `limit` bytes.
    pub fn new(fd: OwnedFd, limit: usize) -> FrameReader {
        FrameReader {
            fd,
            buf: vec![0; READ_SIZE],
            head: 0,
            tail: 0,
            limit,
            eof: false,
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the descriptor reached end of file (buffered frames may remain) or reading
    /// was given up.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Gives up on the stream after a protocol error: drops what is buffered and reports end of
    /// file from now on.
    pub fn give_up(&mut self) {
        self.eof = true;
        self.head = 0;
        self.tail = 0;
    }

    /// The length of the buffered frame, prefix included, once its prefix is complete.
    fn pending_len(&self) -> Result<Option<usize>, ProtocolError> {
        let data = &self.buf[self.head..self.tail];
        let Some(prefix) = data.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.limit {
            return Err(ProtocolError::TooLarge(len));
        }
        Ok(Some(4 + len))
    }

    /// Decodes the next complete frame from the buffer, if there is one. Never reads.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        match self.pending_len()? {
            Some(len) if self.tail - self.head >= len => {
                let frame = Frame::decode(&self.buf[self.head + 4..self.head + len]);
                self.head += len;
                if self.head == self.tail {
                    self.head = 0;
                    self.tail = 0;
                    if self.buf.len() > KEEP_SIZE {
                        // Give back the room a big event needed.
                        self.buf = vec![0; READ_SIZE];
                    }
                }
                frame.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// One `read(2)` into the buffer (call it when `poll` reported the descriptor readable, or
    /// when blocking is fine). Returns the number of bytes read; 0 is end of file. A partial
    /// frame left at end of file is an error.
    pub fn fill(&mut self) -> Result<usize, ProtocolError> {
        self.make_room()?;
        loop {
            match rustix::io::read(&self.fd, &mut self.buf[self.tail..]) {
                Ok(0) => {
                    self.eof = true;
                    if self.tail > self.head {
                        return Err(ProtocolError::Truncated);
                    }
                    return Ok(0);
                }
                Ok(n) => {
                    self.tail += n;
                    return Ok(n);
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
    }

    /// Reads until a whole frame is buffered; `Ok(None)` at a clean end of file. Blocks.
    pub fn read_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(Some(frame));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// Ensures free space after `tail`: enough for the rest of the pending frame when its
    /// length is known, at least [`READ_SIZE`] otherwise.
    fn make_room(&mut self) -> Result<(), ProtocolError> {
        let buffered = self.tail - self.head;
        let want = self.pending_len()?.unwrap_or(0).max(buffered + READ_SIZE);
        if self.buf.len() - self.head >= want {
            return Ok(());
        }
        self.buf.copy_within(self.head..self.tail, 0);
        self.head = 0;
        self.tail = buffered;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        Ok(())
    }
}

/// Bytes waiting to be written to a non-blocking descriptor.
#[derive(Default)]
pub struct Outbox {
    data: Vec<u8>,
    written: usize,
}

impl Outbox {
    /// Whether everything was written.
    pub fn is_empty(&self) -> bool {
        self.written == self.data.len()
    }

    /// Queues `bytes` (the previous contents must be written) and writes what the descriptor
    /// takes now.
    pub fn start(&mut self, fd: BorrowedFd<'_>, bytes: Vec<u8>) -> io::Result<()> {
        debug_assert!(self.is_empty());
        self.data = bytes;
        self.written = 0;
        self.flush(fd)
    }

    /// Writes until done or the descriptor would block. `Ok` with bytes left means: wait for
    /// `POLLOUT`.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        while !self.is_empty() {
            match rustix::io::write(fd, &self.data[self.written..]) {
                Ok(n) => self.written += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(()),
                Err(e) => {
                    self.clear();
                    return Err(e.into());
                }
            }
        }
        self.clear();
        Ok(())
    }

    /// Drops whatever was not written.
    pub fn clear(&mut self) {
        self.data = Vec::new();
        self.written = 0;
    }
}

#[cfg(test)]
mod tests {
    use skyscale_protocol::MAX_FRAME_LEN;

    use super::*;

    #[test]
    fn frames_arrive_whole_from_pieces_and_batches() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut reader = FrameReader::new(r, MAX_FRAME_LEN);
        let a = Frame::Log(vec![7; 200_000]).encode().unwrap();
        let b = Frame::Shutdown.encode().unwrap();
        let writer = std::thread::spawn(move || {
            let mut all = a.clone();
            all.extend_from_slice(&b);
            // Piecemeal: the first write splits the length prefix.
            rustix::io::write(&w, &all[..2]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut rest = &all[2..];
            while !rest.is_empty() {
                let n = rustix::io::write(&w, rest).unwrap();
                rest = &rest[n..];
            }
        });
        assert!(matches!(reader.read_frame(), Ok(Some(Frame::Log(v))) if v.len() == 200_000));
        assert!(matches!(reader.read_frame(), Ok(Some(Frame::Shutdown))));
        writer.join().unwrap();
        assert!(matches!(reader.read_frame(), Ok(None)));
        assert!(reader.at_eof());
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut reader = FrameReader::new(r, 100);
        rustix::io::write(&w, &Frame::Log(vec![0; 200]).encode().unwrap()).unwrap();
        assert!(matches!(
            reader.read_frame(),
            Err(ProtocolError::TooLarge(205))
        ));
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut reader = FrameReader::new(r, 100);
        rustix::io::write(&w, &[0, 0, 0, 9, 6]).unwrap();
        drop(w);
        assert!(matches!(reader.read_frame(), Err(ProtocolError::Truncated)));
    }

    #[test]
    fn outbox_waits_for_the_reader() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        rustix::io::ioctl_fionbio(&w, true).unwrap();
        let mut out = Outbox::default();
        out.start(w.as_fd(), vec![1; 1 << 20]).unwrap();
        assert!(!out.is_empty(), "a pipe does not hold 1 MiB");
        let mut got = 0;
        let mut chunk = vec![0u8; 1 << 16];
        while !out.is_empty() || got < 1 << 20 {
            got += rustix::io::read(&r, &mut chunk).unwrap();
            out.flush(w.as_fd()).unwrap();
        }
        assert_eq!(got, 1 << 20);
        drop(r);
        assert!(out.start(w.as_fd(), vec![1]).is_err(), "EPIPE");
        assert!(out.is_empty());
    }
}
