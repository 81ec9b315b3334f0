//! Capture of the runtime's stdout and stderr.
//!
//! Concurrency: none. The pipes are non-blocking and owned by the main thread, which polls
//! them together with everything else and drains whatever arrives into a [`LogBuffer`], so a
//! chatty runtime never stalls on a full pipe and bytes stay in arrival order.
//!
//! To cut an invocation's logs the main thread calls [`Logs::take`] right after the runtime's
//! answer arrived. The runtime flushes its output before it answers, so everything it printed
//! before that is already in the pipes: the cut is deterministic without any hand-shake.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use skyscale_protocol::MAX_LOG_BYTES;

use crate::error::AgentError;

/// Room kept free for the "bytes dropped" marker so a cut never exceeds [`MAX_LOG_BYTES`].
const MARKER_ROOM: usize = 64;
/// Most bytes read from one pipe per drain (an unprivileged process can grow a pipe to 1 MiB).
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// Output collected since the last cut, keeping the newest `cap` bytes.
#[derive(Debug)]
pub struct LogBuffer {
    data: Vec<u8>,
    dropped: u64,
    cap: usize,
}

impl LogBuffer {
    /// A buffer whose [`take`](Self::take) returns at most `limit` bytes, marker included.
    pub fn new(limit: usize) -> Self {
        LogBuffer {
            data: Vec::new(),
            dropped: 0,
            cap: limit.saturating_sub(MARKER_ROOM).max(1),
        }
    }

    /// Appends output. Memory stays bounded at about twice the cap: the oldest bytes are
    /// dropped in batches rather than on every append.
    pub fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        if self.data.len() > 2 * self.cap {
            let excess = self.data.len() - self.cap;
            self.data.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// Whether nothing was collected since the last cut.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.dropped == 0
    }

    /// Cuts the collected output as (lossy) UTF-8, newest `cap` bytes, starting on a character
    /// boundary, preceded by a marker line when anything was dropped; then starts afresh.
    pub fn take(&mut self) -> String {
        let data = std::mem::take(&mut self.data);
        let mut dropped = std::mem::take(&mut self.dropped);
        let text = String::from_utf8_lossy(&data);
        let mut cut = text.len().saturating_sub(self.cap);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        dropped += cut as u64;
        if dropped == 0 {
            return text.into_owned();
        }
        format!(
            "[skyscale: {dropped} bytes of output dropped]\n{}",
            &text[cut..]
        )
    }
}

/// The runtime's stdout and stderr pipes (`None` once at end of file) and what they gave.
pub struct Logs {
    pipes: [Option<OwnedFd>; 2],
    buf: LogBuffer,
}

impl Logs {
    /// Takes ownership of the runtime's stdout and stderr pipes and makes them non-blocking.
    pub fn new(stdout: OwnedFd, stderr: OwnedFd) -> Result<Logs, AgentError> {
        for fd in [&stdout, &stderr] {
            rustix::io::ioctl_fionbio(fd, true).map_err(|e| AgentError::Io {
                what: "make runtime output pipe non-blocking",
                source: e.into(),
            })?;
        }
        Ok(Logs {
            pipes: [Some(stdout), Some(stderr)],
            buf: LogBuffer::new(MAX_LOG_BYTES),
        })
    }

    /// The pipes still open, by index, for the poll set.
    pub fn fds(&self) -> [Option<BorrowedFd<'_>>; 2] {
        [
            self.pipes[0].as_ref().map(|fd| fd.as_fd()),
            self.pipes[1].as_ref().map(|fd| fd.as_fd()),
        ]
    }

    /// Reads pipe `i` until it is empty, at end of file, or gave `DRAIN_LIMIT` bytes (so a
    /// writer that never pauses cannot starve the other descriptors). Returns whether anything
    /// was read.
    ///
    /// A short read ends the drain: a pipe read returns everything available up to the
    /// buffer's size (Linux and gVisor alike), so a short count means the pipe was empty.
    pub fn drain(&mut self, i: usize) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        let mut budget = DRAIN_LIMIT;
        let mut got = false;
        while budget > 0 {
            let Some(fd) = &self.pipes[i] else {
                break;
            };
            match rustix::io::read(fd, &mut chunk) {
                Ok(0) => self.pipes[i] = None,
                Ok(n) => {
                    self.buf.push(&chunk[..n]);
                    budget = budget.saturating_sub(n);
                    got = true;
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => break,
                Err(e) => {
                    eprintln!("skyscale-agent: reading runtime output: {e}");
                    self.pipes[i] = None;
                }
            }
        }
        got
    }

    /// Everything the runtime wrote before this call and since the previous cut. One
    /// zero-timeout `poll` finds the pipes that hold anything; only those are read.
    pub fn take(&mut self) -> String {
        let ready = self.readable_now();
        for (i, ready) in ready.into_iter().enumerate() {
            if ready {
                self.drain(i);
            }
        }
        self.buf.take()
    }

    /// Which pipes hold data (or are at end of file) right now: one zero-timeout `poll`.
    fn readable_now(&self) -> [bool; 2] {
        let readable = |p: &PollFd<'_>| !p.revents().is_empty();
        match self.fds() {
            [Some(a), Some(b)] => {
                let mut set = [
                    PollFd::from_borrowed_fd(a, PollFlags::IN),
                    PollFd::from_borrowed_fd(b, PollFlags::IN),
                ];
                match poll_now(&mut set) {
                    Ok(()) => [readable(&set[0]), readable(&set[1])],
                    Err(_) => [true, true], // read both: correctness over one syscall
                }
            }
            [Some(fd), None] | [None, Some(fd)] => {
                let mut set = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
                let ready = poll_now(&mut set).map_or(true, |()| readable(&set[0]));
                let open = self.pipes[0].is_some();
                [ready && open, ready && !open]
            }
            [None, None] => [false, false],
        }
    }

    /// Like [`take`](Self::take), without the extra poll: for output the caller just drained.
    pub fn take_buffered(&mut self) -> Option<String> {
        (!self.buf.is_empty()).then(|| self.buf.take())
    }
}

/// `poll` with a zero timeout, retried on `EINTR`.
fn poll_now(set: &mut [PollFd<'_>]) -> rustix::io::Result<()> {
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        match poll(set, Some(&zero)) {
            Err(Errno::INTR) => {}
            other => return other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
        Ok(rustix::pipe::pipe()?)
    }

    #[test]
    fn small_output_passes_unchanged() {
        let mut b = LogBuffer::new(1000);
        assert!(b.is_empty());
        b.push(b"hello\n");
        b.push(b"world\n");
        assert!(!b.is_empty());
        assert_eq!(b.take(), "hello\nworld\n");
        assert!(b.is_empty());
        assert_eq!(b.take(), "");
    }

    #[test]
    fn overflow_keeps_newest_bytes_with_a_marker() {
        let mut b = LogBuffer::new(200);
        for i in 0..1000 {
            b.push(format!("line {i:04}\n").as_bytes());
        }
        let out = b.take();
        assert!(out.len() <= 200, "{}", out.len());
        assert!(out.starts_with("[skyscale: "), "{out}");
        assert!(out.contains(" bytes of output dropped]\n"));
        assert!(out.ends_with("line 0999\n"));
        let dropped: usize = out["[skyscale: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let kept = out.split_once('\n').unwrap().1.len();
        assert_eq!(dropped + kept, 10_000);
        // The next cut starts afresh.
        b.push(b"x");
        assert_eq!(b.take(), "x");
    }

    #[test]
    fn cut_never_splits_a_character() {
        let mut b = LogBuffer::new(MARKER_ROOM + 5);
        b.push("ééééé".as_bytes()); // 10 bytes, keep 5 → must start on a boundary
        let out = b.take();
        let body = out.split_once('\n').unwrap().1;
        assert_eq!(body, "éé");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut b = LogBuffer::new(1000);
        b.push(&[b'a', 0xff, b'b']);
        assert_eq!(b.take(), "a\u{fffd}b");
    }

    #[test]
    fn take_sees_everything_written_before_it() {
        let (out_r, out_w) = pipe_pair().unwrap();
        let (err_r, err_w) = pipe_pair().unwrap();
        let mut logs = Logs::new(out_r, err_r).unwrap();
        assert_eq!(logs.take(), "");
        let mut out_w = std::fs::File::from(out_w);
        let mut err_w = std::fs::File::from(err_w);
        out_w.write_all(b"one\n").unwrap();
        err_w.write_all(b"two\n").unwrap();
        assert_eq!(logs.take(), "one\ntwo\n");
        // More than a pipe holds: a writer thread, drained as it goes.
        let writer = std::thread::spawn(move || {
            out_w.write_all(&vec![b'z'; 1 << 20]).unwrap();
            out_w
        });
        let mut total = 0;
        while total < 1 << 20 {
            if logs.drain(0) {
                total = logs.buf.data.len() + logs.buf.dropped as usize;
            }
        }
        let out_w = writer.join().unwrap();
        let text = logs.take();
        assert!(text.ends_with("zzz"));
        assert!(text.len() <= MAX_LOG_BYTES);
        assert_eq!(logs.take_buffered(), None);
        drop(out_w);
        drop(err_w);
        assert_eq!(logs.take(), "");
        assert!(
            logs.fds().iter().all(Option::is_none),
            "both at end of file"
        );
    }
}
