//! How helper threads reach the main thread, which sleeps in `poll(2)`: an event goes into a
//! channel, then one byte into a wake-up pipe that the main thread polls. The byte carries no
//! data; the main thread empties the pipe first and then the channel, so no event is missed.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use rustix::io::Errno;
use rustix::pipe::PipeFlags;

use crate::error::AgentError;
use crate::Event;

/// The main thread is gone (it stopped listening).
#[derive(Debug)]
pub struct Gone;

/// The helpers' end: cheap to clone, one per thread.
#[derive(Clone)]
pub struct Notifier {
    tx: Sender<Event>,
    wake: Arc<OwnedFd>,
}

impl Notifier {
    /// Queues `event` and wakes the main thread. `Err` means the main thread is gone.
    pub fn send(&self, event: Event) -> Result<(), Gone> {
        self.tx.send(event).map_err(|_| Gone)?;
        loop {
            // The pipe is non-blocking: when it is full a wake-up is pending anyway.
            match rustix::io::write(&*self.wake, &[1]) {
                Err(Errno::INTR) => {}
                _ => return Ok(()),
            }
        }
    }
}

/// The main thread's end.
pub struct Inbox {
    rx: Receiver<Event>,
    wake: OwnedFd,
}

impl Inbox {
    /// The descriptor to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empties the wake-up pipe, then returns every queued event.
    pub fn drain(&self) -> Vec<Event> {
        let mut scratch = [0u8; 64];
        loop {
            match rustix::io::read(&self.wake, &mut scratch) {
                Ok(n) if n == scratch.len() => {}
                Err(Errno::INTR) => {}
                _ => break,
            }
        }
        self.rx.try_iter().collect()
    }
}

/// A connected pair; both pipe ends are non-blocking and close on exec.
pub fn channel() -> Result<(Notifier, Inbox), AgentError> {
    let (r, w) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(|e| {
            AgentError::Io {
                what: "create wake-up pipe",
                source: e.into(),
            }
        })?;
    let (tx, rx) = mpsc::channel();
    Ok((
        Notifier {
            tx,
            wake: Arc::new(w),
        },
        Inbox { rx, wake: r },
    ))
}

#[cfg(test)]
mod tests {
    use rustix::event::{poll, PollFd, PollFlags};

    use super::*;
    use crate::process::ExitStatus;

    #[test]
    fn events_wake_the_poller_and_arrive_in_order() {
        let (notifier, inbox) = channel().unwrap();
        let n2 = notifier.clone();
        std::thread::spawn(move || {
            for code in 0..3 {
                n2.send(Event::RuntimeExited(ExitStatus::Code(code)))
                    .unwrap();
            }
        })
        .join()
        .unwrap();
        let mut fds = [PollFd::from_borrowed_fd(inbox.fd(), PollFlags::IN)];
        assert_eq!(poll(&mut fds, None).unwrap(), 1);
        let codes: Vec<_> = inbox
            .drain()
            .into_iter()
            .map(|e| match e {
                Event::RuntimeExited(ExitStatus::Code(c)) => c,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(codes, [0, 1, 2]);
        // Drained: nothing left to wake up for.
        let mut fds = [PollFd::from_borrowed_fd(inbox.fd(), PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        assert_eq!(poll(&mut fds, Some(&zero)).unwrap(), 0);
        drop(inbox);
        assert!(notifier
            .send(Event::RuntimeExited(ExitStatus::Code(9)))
            .is_err());
    }
}
