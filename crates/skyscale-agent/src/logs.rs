//! Capture of the runtime's stdout and stderr.
//!
//! Concurrency: one pump thread blocks in `poll(2)` on both (non-blocking) pipes and drains
//! whatever arrives into a shared [`LogBuffer`], so a chatty runtime never stalls on a full pipe.
//! Every `read(2)` from the pipes, by the pump or by the main thread, happens while holding the
//! buffer's mutex: that keeps bytes in arrival order even when both threads read.
//!
//! The main thread never waits for the pump. To cut an invocation's logs it calls
//! [`Logs::take`], which drains both pipes itself until `EAGAIN` (under the same lock) and then
//! takes the buffer. The runtime flushes its output before it posts `/response`, so everything
//! it printed before that post is in the pipes by the time the agent sees the post: the cut is
//! deterministic without any hand-shake with the pump.

use std::os::fd::OwnedFd;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::event::{poll, PollFd, PollFlags};
use skyscale_protocol::MAX_LOG_BYTES;

use crate::error::{spawn_thread, AgentError};
use crate::Event;

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

/// What the pump and the main thread share: the buffer and the pipes' end-of-file flags.
struct State {
    buf: LogBuffer,
    /// `open[i]` is false once pipe `i` reached end of file.
    open: [bool; 2],
    /// An [`Event::Output`] is outstanding; cleared by [`Logs::take`].
    notified: bool,
}

/// Handle on the runtime's output, shared by the pump thread and the main thread.
#[derive(Clone)]
pub struct Logs {
    pipes: Arc<[OwnedFd; 2]>,
    state: Arc<Mutex<State>>,
}

impl Logs {
    /// Takes ownership of the runtime's stdout and stderr pipes, makes them non-blocking and
    /// starts the pump thread. The pump sends one [`Event::Output`] when output arrives after a
    /// cut (the main thread forwards output between invocations as `Log` frames).
    pub fn start(
        stdout: OwnedFd,
        stderr: OwnedFd,
        events: Sender<Event>,
    ) -> Result<Logs, AgentError> {
        for fd in [&stdout, &stderr] {
            rustix::io::ioctl_fionbio(fd, true).map_err(|e| AgentError::Io {
                what: "make runtime output pipe non-blocking",
                source: e.into(),
            })?;
        }
        let logs = Logs {
            pipes: Arc::new([stdout, stderr]),
            state: Arc::new(Mutex::new(State {
                buf: LogBuffer::new(MAX_LOG_BYTES),
                open: [true, true],
                notified: false,
            })),
        };
        let pump = logs.clone();
        spawn_thread("log-pump", move || pump.run_pump(&events))?;
        Ok(logs)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drains both pipes until they would block, then returns everything collected since the
    /// previous cut.
    pub fn take(&self) -> String {
        let mut state = self.lock();
        self.drain(&mut state);
        state.notified = false;
        state.buf.take()
    }

    /// Reads both pipes until `EAGAIN` or end of file. Returns whether anything was read.
    ///
    /// Each pipe gives at most [`DRAIN_LIMIT`] bytes per call: more than any pipe holds (so
    /// everything written before the call is read) but bounded, so a writer that never pauses
    /// cannot keep the lock forever.
    fn drain(&self, state: &mut State) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let mut got = false;
        for (i, fd) in self.pipes.iter().enumerate() {
            let mut budget = DRAIN_LIMIT;
            while state.open[i] && budget > 0 {
                match rustix::io::read(fd, &mut chunk) {
                    Ok(0) => state.open[i] = false,
                    Ok(n) => {
                        state.buf.push(&chunk[..n]);
                        budget = budget.saturating_sub(n);
                        got = true;
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(e) => {
                        eprintln!("skyscale-agent: reading runtime output: {e}");
                        state.open[i] = false;
                    }
                }
            }
        }
        got
    }

    /// The pump: wait for output, drain it, tell the main thread once per cut. Ends when both
    /// pipes reached end of file or the main thread is gone.
    fn run_pump(&self, events: &Sender<Event>) {
        loop {
            let open = self.lock().open;
            if !open.contains(&true) {
                return;
            }
            let mut fds: Vec<PollFd<'_>> = self
                .pipes
                .iter()
                .zip(open)
                .filter(|(_, open)| *open)
                .map(|(fd, _)| PollFd::new(fd, PollFlags::IN))
                .collect();
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    eprintln!("skyscale-agent: polling runtime output: {e}");
                    return;
                }
            }
            drop(fds);
            let notify = {
                let mut state = self.lock();
                let got = self.drain(&mut state);
                let notify = got && !state.notified;
                state.notified |= notify;
                notify
            };
            if notify && events.send(Event::Output).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::mpsc;
    use std::time::Duration;

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
    fn take_sees_everything_written_before_it_and_pump_notifies_once() {
        let (out_r, out_w) = pipe_pair().unwrap();
        let (err_r, err_w) = pipe_pair().unwrap();
        let (tx, rx) = mpsc::channel();
        let logs = Logs::start(out_r, err_r, tx).unwrap();
        let mut out_w = std::fs::File::from(out_w);
        let mut err_w = std::fs::File::from(err_w);
        out_w.write_all(b"one\n").unwrap();
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(Event::Output)
        ));
        err_w.write_all(b"two\n").unwrap();
        assert_eq!(logs.take(), "one\ntwo\n");
        // 1 MiB, more than a pipe holds: the pump keeps the writer from blocking.
        out_w.write_all(&vec![b'z'; 1 << 20]).unwrap();
        let text = logs.take();
        assert!(text.ends_with("zzz"));
        assert!(text.len() <= MAX_LOG_BYTES);
        drop(out_w);
        drop(err_w);
        assert_eq!(logs.take(), "");
    }
}
