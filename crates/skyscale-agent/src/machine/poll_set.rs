//! The descriptors the main thread sleeps on, kept on the stack: no allocation per poll.

use std::os::fd::BorrowedFd;

use rustix::event::{PollFd, PollFlags};

/// What a polled descriptor is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    Wake,
    RuntimeIn,
    RuntimeOut,
    Log(usize),
    Control,
}

/// What `poll` found ready. Hang-ups and errors count as ready: the read or write that follows
/// sees them.
#[derive(Debug, Default)]
pub(super) struct Ready {
    pub(super) wake: bool,
    pub(super) runtime_in: bool,
    pub(super) runtime_out: bool,
    pub(super) logs: [bool; 2],
    pub(super) control: bool,
}

/// At most six descriptors, on the stack: no allocation per poll.
pub(super) struct PollSet<'a> {
    fds: [PollFd<'a>; 6],
    slots: [Slot; 6],
    len: usize,
}

impl<'a> PollSet<'a> {
    pub(super) fn new(filler: BorrowedFd<'a>) -> Self {
        PollSet {
            fds: std::array::from_fn(|_| PollFd::from_borrowed_fd(filler, PollFlags::empty())),
            slots: [Slot::Wake; 6],
            len: 0,
        }
    }

    pub(super) fn add(&mut self, fd: BorrowedFd<'a>, flags: PollFlags, slot: Slot) {
        self.fds[self.len] = PollFd::from_borrowed_fd(fd, flags);
        self.slots[self.len] = slot;
        self.len += 1;
    }

    pub(super) fn fds_mut(&mut self) -> &mut [PollFd<'a>] {
        &mut self.fds[..self.len]
    }

    pub(super) fn ready(&self) -> Ready {
        let mut ready = Ready::default();
        for (fd, slot) in self.fds[..self.len].iter().zip(&self.slots) {
            if fd.revents().is_empty() {
                continue;
            }
            match *slot {
                Slot::Wake => ready.wake = true,
                Slot::RuntimeIn => ready.runtime_in = true,
                Slot::RuntimeOut => ready.runtime_out = true,
                Slot::Log(i) => ready.logs[i] = true,
                Slot::Control => ready.control = true,
            }
        }
        ready
    }
}
