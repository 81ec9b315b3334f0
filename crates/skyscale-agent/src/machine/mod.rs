//! The agent's state machine and the main thread's poll loop.
//!
//! ```text
//! Initializing ──InitDone frame | GET /next──▶ Idle ──Invoke──▶ Invoking ──Result frame | POST──▶ Idle
//!      │                                        │                 │
//!      │ init error, exit, init timeout         │ runtime exits   │ deadline, runtime exits
//!      ▼                                        ▼                 ▼
//!   InitDone{ok:false}              Exited ──Invoke──▶ Result{Crashed}    Result{Timeout|Crashed}
//!   and exit                                           and exit            and exit
//! ```
//!
//! How the runtime talks (`Channel`) is decided by what it does first: an `InitDone` frame
//! on the runtime pipe ([`crate::pipe`], transitions in `pipe_channel`) or a `GET /next` on
//! the Runtime API ([`crate::http`], transitions in `http_channel`). Both channels end in the
//! same transitions (`Machine::complete`, `Machine::init_failed`), so both give the control
//! plane the same results.
//!
//! Concurrency choice: one thread, one `poll(2)` over every descriptor that matters — stdin
//! (control plane), the runtime pipe, the runtime's stdout and stderr, and a wake-up pipe for
//! the helper threads (the reaper; on the HTTP channel the Runtime API connections). The poll
//! timeout is the running deadline. On the pipe channel a warm invocation therefore never
//! crosses a thread: the thread that reads the `Invoke` from stdin writes it to the runtime,
//! is woken by the `Result`, cuts the logs and writes the `Result` to stdout. Every thread
//! hand-off costs a wake-up (up to ~100 µs when it lands on the other vCPU, several trapped
//! syscalls under gVisor); the earlier design had two per invocation (stdin reader → main,
//! Runtime API connection → main) on top of two HTTP exchanges. The HTTP channel keeps its
//! connection threads (a request is read whole there) but lost the stdin reader's hop too.
//!
//! Nothing here blocks for long: stdin and the runtime pipe are read once per readiness
//! ([`crate::frames`]), frames to the runtime wait for `POLLOUT` when the pipe is full, output
//! pipes are non-blocking, and Runtime API responses have a write timeout. Writes to stdout
//! block: the control plane reads them promptly and there is nothing better to do meanwhile.

mod http_channel;
mod pipe_channel;
mod poll_set;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{poll, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::Pid;
use skyscale_protocol::{
    exit_message, Frame, InitDone, InitFailure, Invoke, InvokeResult, InvokeStatus, Snapshot,
    SnapshotDone, UNKNOWN_ERROR,
};

use crate::control::Control;
use crate::error::AgentError;
use crate::http::Responder;
use crate::logs::Logs;
use crate::pipe::RuntimePipe;
use crate::process::{kill_group, ExitStatus, RssProbe};
use crate::report::{self, error_doc, now_ms};
use crate::wake::Inbox;
use crate::Event;
use poll_set::{PollSet, Ready, Slot};

/// Where the runtime is in its life.
enum State {
    /// Started; waiting for its `InitDone` frame or its first `/next`.
    Initializing { started: Instant, deadline: Instant },
    /// Between invocations; on the HTTP channel `next` is the pending `/next` long poll.
    Idle { next: Option<Responder> },
    /// One invocation in flight.
    Invoking(Invocation),
    /// The runtime exited between invocations. The next `Invoke` gets `Crashed`.
    Exited(ExitStatus),
    /// Between invocations, the runtime running its snapshot hooks (SnapStart; pipe channel
    /// only): its `SnapshotDone` goes back to the control plane.
    Snapshotting { started: Instant },
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Initializing { .. } => "initializing",
            State::Idle { .. } => "idle",
            State::Invoking(_) => "invoking",
            State::Exited(_) => "exited",
            State::Snapshotting { .. } => "snapshotting",
        }
    }
}

/// How the runtime talks to the agent; fixed by its first move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Undecided,
    /// Agent frames on the inherited pipe pair (the built-in Python runtime).
    Pipe,
    /// The Lambda Runtime API over loopback HTTP.
    Http,
}

struct Invocation {
    meta: Invoke,
    /// The event until it goes out (HTTP: when a `/next` takes it).
    payload: Option<Vec<u8>>,
    /// Wall-clock ms when the `Invoke` frame arrived (the timeout message counts from here).
    received_ms: u64,
    /// When the event went out (the invocation's duration counts from here).
    sent: Option<Instant>,
}

/// Whether the main loop goes on.
enum Flow {
    Continue,
    Exit,
}

/// What a started runtime left the machine to work with.
pub struct Parts {
    pub control: Control,
    pub pipe: RuntimePipe,
    pub inbox: Inbox,
    pub logs: Logs,
    pub pid: Pid,
}

/// The main thread's state: its descriptors, the runtime's pid and the state.
pub struct Machine {
    control: Control,
    pipe: RuntimePipe,
    inbox: Inbox,
    logs: Logs,
    pid: Pid,
    rss: RssProbe,
    channel: Channel,
    state: State,
}

impl Machine {
    /// A machine whose runtime was just started at `started` and must be ready by `deadline`.
    pub fn new(parts: Parts, started: Instant, deadline: Instant) -> Self {
        let Parts {
            control,
            pipe,
            inbox,
            logs,
            pid,
        } = parts;
        Machine {
            control,
            pipe,
            inbox,
            logs,
            rss: RssProbe::new(pid),
            pid,
            channel: Channel::Undecided,
            state: State::Initializing { started, deadline },
        }
    }

    /// Polls and handles until the agent must exit.
    pub fn run(&mut self) -> Result<(), AgentError> {
        loop {
            let timeout = self.time_left();
            if timeout.is_some_and(|left| left.is_zero()) {
                return self.on_deadline();
            }
            let ready = self.wait(timeout)?;
            if let Flow::Exit = self.dispatch(ready)? {
                return Ok(());
            }
        }
    }

    /// Time until the current deadline, if one runs. Invocation deadlines are wall-clock epoch
    /// milliseconds, as the runtime sees them.
    fn time_left(&self) -> Option<Duration> {
        match &self.state {
            State::Initializing { deadline, .. } => {
                Some(deadline.saturating_duration_since(Instant::now()))
            }
            State::Invoking(inv) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Some(Duration::from_millis(inv.meta.deadline_ms).saturating_sub(now))
            }
            State::Idle { .. } | State::Exited(_) | State::Snapshotting { .. } => None,
        }
    }

    // -----------------------------------------------------------------------------------------
    // The poll loop

    /// Sleeps until a descriptor is ready or `timeout` passes.
    fn wait(&self, timeout: Option<Duration>) -> Result<Ready, AgentError> {
        let mut set = PollSet::new(self.inbox.fd());
        set.add(self.inbox.fd(), PollFlags::IN, Slot::Wake);
        if let Some(fd) = self.pipe.read_fd() {
            set.add(fd, PollFlags::IN, Slot::RuntimeIn);
        }
        if let Some(fd) = self.pipe.write_fd() {
            set.add(fd, PollFlags::OUT, Slot::RuntimeOut);
        }
        for (i, fd) in self.logs.fds().into_iter().enumerate() {
            if let Some(fd) = fd {
                set.add(fd, PollFlags::IN, Slot::Log(i));
            }
        }
        if let Some(fd) = self.control.read_fd() {
            set.add(fd, PollFlags::IN, Slot::Control);
        }
        let timeout = timeout.map(|d| Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos().into(),
        });
        match poll(set.fds_mut(), timeout.as_ref()) {
            Ok(_) => Ok(set.ready()),
            Err(Errno::INTR) => Ok(Ready::default()),
            Err(e) => Err(AgentError::Io {
                what: "poll",
                source: e.into(),
            }),
        }
    }

    /// Handles everything `poll` reported, in an order that keeps causality: the runtime's
    /// answer before its exit, output printed between invocations before the next `Invoke`.
    fn dispatch(&mut self, ready: Ready) -> Result<Flow, AgentError> {
        if ready.runtime_out {
            if let Err(e) = self.pipe.flush() {
                // The runtime closed its end; its exit (or the deadline) comes next.
                eprintln!("skyscale-agent: writing to the runtime pipe: {e}");
            }
        }
        if ready.runtime_in {
            if let Flow::Exit = self.on_runtime_readable()? {
                return Ok(Flow::Exit);
            }
        }
        if ready.wake {
            for event in self.inbox.drain() {
                if let Flow::Exit = self.on_event(event)? {
                    return Ok(Flow::Exit);
                }
            }
        }
        let mut output = false;
        for (i, ready) in ready.logs.into_iter().enumerate() {
            if ready {
                output |= self.logs.drain(i);
            }
        }
        if output && matches!(self.state, State::Idle { .. } | State::Exited(_)) {
            self.forward_buffered_output()?;
        }
        if ready.control {
            if self.control.fill()? == 0 {
                return Ok(Flow::Exit); // end of stdin: the control plane is gone
            }
            while let Some(frame) = self.control.next_frame()? {
                if let Flow::Exit = self.on_control_frame(frame)? {
                    return Ok(Flow::Exit);
                }
            }
        }
        Ok(Flow::Continue)
    }

    // -----------------------------------------------------------------------------------------
    // Control plane

    fn on_control_frame(&mut self, frame: Frame) -> Result<Flow, AgentError> {
        match frame {
            Frame::Invoke(meta, payload) => self.on_invoke(meta, payload),
            Frame::Snapshot(snapshot) => self.on_snapshot(snapshot),
            Frame::Shutdown => Ok(Flow::Exit),
            other => Err(AgentError::UnexpectedFrame {
                frame: other.kind(),
                state: self.state.name(),
            }),
        }
    }

    fn on_invoke(&mut self, meta: Invoke, payload: Vec<u8>) -> Result<Flow, AgentError> {
        match std::mem::replace(&mut self.state, State::Idle { next: None }) {
            State::Idle { next } => {
                let mut inv = Invocation {
                    meta,
                    payload: Some(payload),
                    received_ms: now_ms(),
                    sent: None,
                };
                match (self.channel, next) {
                    (Channel::Pipe, _) => self.send_to_pipe(&mut inv),
                    (_, Some(responder)) => http_channel::deliver(&mut inv, responder),
                    (_, None) => {} // the next `/next` takes it
                }
                self.state = State::Invoking(inv);
                Ok(Flow::Continue)
            }
            State::Exited(status) => {
                let message = exit_message(&meta.request_id, Some(status));
                self.send_failure(
                    meta.request_id,
                    InvokeStatus::Crashed { exit: status },
                    0,
                    0,
                    &message,
                )?;
                Ok(Flow::Exit)
            }
            state => {
                let name = state.name();
                self.state = state;
                Err(AgentError::UnexpectedFrame {
                    frame: "Invoke",
                    state: name,
                })
            }
        }
    }

    /// Snapshot hooks (SnapStart): the built-in runtime runs them; a runtime on the Runtime
    /// API has none to run, so the agent answers for it at once (its pending `/next` stays
    /// pending across the checkpoint).
    fn on_snapshot(&mut self, snapshot: Snapshot) -> Result<Flow, AgentError> {
        match (&self.state, self.channel) {
            (State::Idle { .. }, Channel::Pipe) => {
                if let Err(e) = self.pipe.send(&Frame::Snapshot(snapshot)) {
                    eprintln!("skyscale-agent: writing to the runtime pipe: {e}");
                }
                self.state = State::Snapshotting {
                    started: Instant::now(),
                };
                Ok(Flow::Continue)
            }
            (State::Idle { .. }, _) => {
                let done = SnapshotDone {
                    ok: true,
                    error: None,
                    duration_us: 0,
                    logs: self.logs.take(),
                };
                self.control.send(&Frame::SnapshotDone(done))?;
                Ok(Flow::Continue)
            }
            (state, _) => Err(AgentError::UnexpectedFrame {
                frame: "Snapshot",
                state: state.name(),
            }),
        }
    }

    /// The runtime answered its snapshot hooks: back to idle, the answer (with what it
    /// printed) to the control plane.
    fn snapshot_done(
        &mut self,
        started: Instant,
        mut done: SnapshotDone,
    ) -> Result<(), AgentError> {
        done.duration_us = micros(started);
        done.logs = self.logs.take();
        self.state = State::Idle { next: None };
        self.control.send(&Frame::SnapshotDone(done))
    }

    // -----------------------------------------------------------------------------------------
    // Helper threads: the Runtime API (see `http_channel`) and the reaper

    fn on_event(&mut self, event: Event) -> Result<Flow, AgentError> {
        match event {
            Event::Api(request) => self.on_api(request),
            Event::RuntimeExited(status) => self.on_exit(status),
        }
    }
    fn on_exit(&mut self, status: ExitStatus) -> Result<Flow, AgentError> {
        match std::mem::replace(&mut self.state, State::Exited(status)) {
            State::Initializing { started, .. } => {
                let message = exit_message("<none>", Some(status));
                self.init_aborted(started, InitFailure::Crashed(status), &message)?;
                Ok(Flow::Exit)
            }
            State::Idle { .. } => {
                eprintln!("skyscale-agent: runtime exited between invocations: {status}");
                let text = self.logs.take();
                if !text.is_empty() {
                    self.control.send(&Frame::Log(text.into_bytes()))?;
                }
                Ok(Flow::Continue)
            }
            State::Invoking(inv) => {
                let message = exit_message(&inv.meta.request_id, Some(status));
                let duration_us = inv.sent.map(micros).unwrap_or(0);
                self.send_failure(
                    inv.meta.request_id,
                    InvokeStatus::Crashed { exit: status },
                    duration_us,
                    0,
                    &message,
                )?;
                Ok(Flow::Exit)
            }
            State::Exited(first) => {
                self.state = State::Exited(first);
                Ok(Flow::Continue)
            }
            State::Snapshotting { started } => {
                let done = SnapshotDone {
                    ok: false,
                    error: Some(format!(
                        "the runtime exited during its snapshot hooks: {status}"
                    )),
                    duration_us: micros(started),
                    logs: self.logs.take(),
                };
                self.control.send(&Frame::SnapshotDone(done))?;
                Ok(Flow::Exit)
            }
        }
    }

    /// The init timeout or the invocation's deadline passed: kill the runtime and report.
    fn on_deadline(&mut self) -> Result<(), AgentError> {
        match std::mem::replace(&mut self.state, State::Idle { next: None }) {
            State::Initializing { started, deadline } => {
                kill_group(self.pid);
                let allowed = deadline.saturating_duration_since(started).as_millis() as u64;
                let message = format!("Init timed out after {} seconds", report::seconds(allowed));
                self.init_aborted(started, InitFailure::Timeout, &message)
            }
            State::Invoking(inv) => {
                // Read the peak memory while the process still exists.
                let rss = self.rss.max_rss_kb();
                kill_group(self.pid);
                self.pipe.abandon();
                let allowed = match inv.meta.timeout_ms {
                    0 => inv.meta.deadline_ms.saturating_sub(inv.received_ms),
                    configured => configured,
                };
                let message = report::timeout_message(now_ms(), &inv.meta.request_id, allowed);
                let duration_us = inv.sent.map(micros).unwrap_or(0);
                self.send_failure(
                    inv.meta.request_id,
                    InvokeStatus::Timeout,
                    duration_us,
                    rss,
                    &message,
                )
            }
            State::Idle { .. } | State::Exited(_) | State::Snapshotting { .. } => Ok(()),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reports, shared by both channels

    /// The runtime is ready for its first event.
    fn init_succeeded(&mut self, started: Instant) -> Result<(), AgentError> {
        let done = InitDone {
            ok: true,
            error_type: None,
            failure: None,
            duration_us: micros(started),
            logs: self.logs.take(),
        };
        self.control.send(&Frame::InitDone(done, Vec::new()))?;
        self.state = State::Idle { next: None };
        Ok(())
    }

    /// Reports an init the runtime failed itself (its error type and document) with the
    /// output printed so far.
    fn init_failed(
        &mut self,
        started: Instant,
        error_type: String,
        body: Vec<u8>,
    ) -> Result<(), AgentError> {
        let done = InitDone {
            ok: false,
            error_type: Some(error_type),
            failure: None,
            duration_us: micros(started),
            logs: self.logs.take(),
        };
        self.control.send(&Frame::InitDone(done, body))
    }

    /// Reports an init the runtime did not end itself (timeout, exit) with an error document
    /// written by the agent.
    fn init_aborted(
        &mut self,
        started: Instant,
        failure: InitFailure,
        message: &str,
    ) -> Result<(), AgentError> {
        let done = InitDone {
            ok: false,
            error_type: None,
            failure: Some(failure),
            duration_us: micros(started),
            logs: self.logs.take(),
        };
        let body = error_doc(failure.error_type(), message);
        self.control.send(&Frame::InitDone(done, body))
    }

    /// The runtime answered the invocation: its response (`ok`) or its error document.
    fn complete(
        &mut self,
        inv: Invocation,
        ok: bool,
        error_type: Option<String>,
        body: Vec<u8>,
    ) -> Result<(), AgentError> {
        let status = if ok {
            InvokeStatus::Ok
        } else {
            InvokeStatus::Error {
                error_type: Some(resolve_error_type(error_type, &body)),
            }
        };
        let duration_us = inv.sent.map(micros).unwrap_or(0);
        let max_rss_kb = self.rss.max_rss_kb();
        // The runtime flushed its output before answering, so this cut holds exactly what it
        // printed during the invocation.
        let logs = self.logs.take();
        let result = InvokeResult {
            request_id: inv.meta.request_id,
            status,
            duration_us,
            max_rss_kb,
            logs,
        };
        self.state = State::Idle { next: None };
        self.control.send(&Frame::Result(result, body))
    }

    /// Reports an invocation the runtime did not answer (timeout, crash) with an error document
    /// written by the agent.
    fn send_failure(
        &mut self,
        request_id: String,
        status: InvokeStatus,
        duration_us: u64,
        max_rss_kb: u64,
        message: &str,
    ) -> Result<(), AgentError> {
        let body = error_doc(status.error_type().unwrap_or(UNKNOWN_ERROR), message);
        let result = InvokeResult {
            request_id,
            status,
            duration_us,
            max_rss_kb,
            logs: self.logs.take(),
        };
        self.control.send(&Frame::Result(result, body))
    }

    /// Sends output printed between invocations (already drained) as a `Log` frame.
    fn forward_buffered_output(&mut self) -> Result<(), AgentError> {
        if let Some(text) = self.logs.take_buffered() {
            self.control.send(&Frame::Log(text.into_bytes()))?;
        }
        Ok(())
    }
}

/// The error type of a failed init or invocation: the runtime's own (header or frame field),
/// else the document's `errorType`, else `Runtime.Unknown`.
fn resolve_error_type(given: Option<String>, body: &[u8]) -> String {
    given
        .or_else(|| report::error_type_of(body))
        .unwrap_or_else(|| UNKNOWN_ERROR.to_string())
}

/// The invocation as the runtime sees it, on either channel: the same values `/next` puts in
/// its headers (CR and LF replaced by spaces).
fn runtime_view(meta: &Invoke) -> Invoke {
    Invoke {
        request_id: meta.request_id.clone(),
        deadline_ms: meta.deadline_ms,
        timeout_ms: meta.timeout_ms,
        invoked_function_arn: header_value(&meta.invoked_function_arn),
        client_context: meta.client_context.as_deref().map(header_value),
        trace_id: meta.trace_id.as_deref().map(header_value),
    }
}
/// A header value with CR and LF replaced by spaces (harmless inside JSON, fatal in HTTP).
fn header_value(v: &str) -> String {
    v.replace(['\r', '\n'], " ")
}

fn micros(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}
