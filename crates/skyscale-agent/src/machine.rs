//! The agent's state machine, driven by the main thread.
//!
//! ```text
//! Initializing ──/next──▶ Idle ──Invoke──▶ Invoking ──/response, /error──▶ Idle
//!      │                   │                  │
//!      │ init/error, exit, │ runtime exits    │ deadline, runtime exits
//!      ▼ init timeout      ▼                  ▼
//!   InitDone{ok:false}   Exited ──Invoke──▶ Result{Crashed}            Result{Timeout|Crashed}
//!   and exit                                 and exit                   and exit
//! ```
//!
//! One thread consumes one channel of [`Event`]s; deadlines are `recv_timeout`s. Nothing here
//! blocks for long: request bodies are read by the connection threads, output is drained by
//! the pump, and socket writes have a timeout.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::process::Pid;
use skyscale_protocol::{Frame, InitDone, Invoke, InvokeResult, InvokeStatus};

use crate::agent::Control;
use crate::error::AgentError;
use crate::http::{ApiRequest, Responder, Route, JSON};
use crate::logs::Logs;
use crate::process::{kill_group, max_rss_kb, ExitStatus};
use crate::report::{self, error_doc, now_ms};
use crate::Event;

const TIMED_OUT: &str = "Sandbox.Timedout";
const EXIT_ERROR: &str = "Runtime.ExitError";
const UNKNOWN_ERROR: &str = "Runtime.Unknown";

/// Where the runtime is in its life.
enum State {
    /// Started; waiting for its first `/next`.
    Initializing { started: Instant, deadline: Instant },
    /// Between invocations; `next` is the runtime's pending `/next` long poll, if any.
    Idle { next: Option<Responder> },
    /// One invocation in flight.
    Invoking(Invocation),
    /// The runtime exited between invocations. The next `Invoke` gets `Crashed`.
    Exited(ExitStatus),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Initializing { .. } => "initializing",
            State::Idle { .. } => "idle",
            State::Invoking(_) => "invoking",
            State::Exited(_) => "exited",
        }
    }
}

struct Invocation {
    meta: Invoke,
    /// The event until a `/next` takes it.
    payload: Option<Vec<u8>>,
    /// Wall-clock ms when the `Invoke` frame arrived (the timeout message counts from here).
    received_ms: u64,
    /// When the event went out on `/next` (the invocation's duration counts from here).
    sent: Option<Instant>,
}

/// Whether the main loop goes on.
enum Flow {
    Continue,
    Exit,
}

/// The main thread's state: the control channel, the runtime's output and pid, the state.
pub struct Machine {
    control: Control,
    logs: Logs,
    pid: Pid,
    state: State,
}

impl Machine {
    /// A machine whose runtime was just started at `started`.
    pub fn new(
        control: Control,
        logs: Logs,
        pid: Pid,
        started: Instant,
        deadline: Instant,
    ) -> Self {
        Machine {
            control,
            logs,
            pid,
            state: State::Initializing { started, deadline },
        }
    }

    /// Handles events until the agent must exit.
    pub fn run(&mut self, rx: &Receiver<Event>) -> Result<(), AgentError> {
        loop {
            let event = match self.time_left() {
                Some(left) if left.is_zero() => return self.on_deadline(),
                Some(left) => match rx.recv_timeout(left) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                },
                None => match rx.recv() {
                    Ok(event) => event,
                    Err(_) => return Ok(()),
                },
            };
            if let Flow::Exit = self.handle(event)? {
                return Ok(());
            }
        }
    }

    /// Time until the current deadline, if one runs. Invocation deadlines are wall-clock epoch
    /// milliseconds, as the runtime sees them in `Lambda-Runtime-Deadline-Ms`.
    fn time_left(&self) -> Option<Duration> {
        match &self.state {
            State::Initializing { deadline, .. } => {
                Some(deadline.saturating_duration_since(Instant::now()))
            }
            State::Invoking(inv) => Some(Duration::from_millis(
                inv.meta.deadline_ms.saturating_sub(now_ms()),
            )),
            State::Idle { .. } | State::Exited(_) => None,
        }
    }

    fn handle(&mut self, event: Event) -> Result<Flow, AgentError> {
        match event {
            Event::Frame(Frame::Invoke(meta, payload)) => self.on_invoke(meta, payload),
            Event::Frame(Frame::Shutdown) => Ok(Flow::Exit),
            Event::Frame(other) => Err(AgentError::UnexpectedFrame {
                frame: other.kind(),
                state: self.state.name(),
            }),
            Event::ControlClosed(None) => Ok(Flow::Exit),
            Event::ControlClosed(Some(e)) => Err(e.into()),
            Event::Api(request) => self.on_api(request),
            Event::RuntimeExited(status) => self.on_exit(status),
            Event::Output => {
                if matches!(self.state, State::Idle { .. } | State::Exited(_)) {
                    self.forward_idle_output()?;
                }
                Ok(Flow::Continue)
            }
        }
    }

    /// Sends output printed between invocations as a `Log` frame.
    fn forward_idle_output(&mut self) -> Result<(), AgentError> {
        let text = self.logs.take();
        if !text.is_empty() {
            self.control.send(&Frame::Log(text.into_bytes()))?;
        }
        Ok(())
    }

    fn on_invoke(&mut self, meta: Invoke, payload: Vec<u8>) -> Result<Flow, AgentError> {
        match std::mem::replace(&mut self.state, State::Idle { next: None }) {
            State::Idle { next } => {
                self.forward_idle_output()?;
                let mut inv = Invocation {
                    meta,
                    payload: Some(payload),
                    received_ms: now_ms(),
                    sent: None,
                };
                if let Some(responder) = next {
                    deliver(&mut inv, responder);
                }
                self.state = State::Invoking(inv);
                Ok(Flow::Continue)
            }
            State::Exited(status) => {
                let message = report::exit_message(&meta.request_id, status);
                self.send_failure(
                    meta.request_id,
                    InvokeStatus::Crashed,
                    EXIT_ERROR,
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

    fn on_api(&mut self, req: ApiRequest) -> Result<Flow, AgentError> {
        let ApiRequest {
            route,
            error_type,
            body,
            responder,
        } = req;
        match (
            route,
            std::mem::replace(&mut self.state, State::Idle { next: None }),
        ) {
            (Route::Next, State::Initializing { started, .. }) => {
                let done = InitDone {
                    ok: true,
                    error_type: None,
                    duration_us: micros(started),
                    logs: self.logs.take(),
                };
                self.control.send(&Frame::InitDone(done, Vec::new()))?;
                self.state = State::Idle {
                    next: Some(responder),
                };
            }
            // A newer long poll replaces an abandoned one.
            (Route::Next, State::Idle { .. }) => {
                self.state = State::Idle {
                    next: Some(responder),
                }
            }
            (Route::Next, State::Invoking(mut inv)) if inv.payload.is_some() => {
                deliver(&mut inv, responder);
                self.state = State::Invoking(inv);
            }
            (route @ (Route::Response(_) | Route::Error(_)), State::Invoking(inv))
                if inv.sent.is_some() && route.request_id() == Some(&inv.meta.request_id) =>
            {
                let (status, error_type) = match route {
                    Route::Response(_) => (InvokeStatus::Ok, None),
                    _ => {
                        let error_type = error_type
                            .or_else(|| report::error_type_of(&body))
                            .unwrap_or_else(|| UNKNOWN_ERROR.to_string());
                        (InvokeStatus::Error, Some(error_type))
                    }
                };
                let duration_us = inv.sent.map(micros).unwrap_or(0);
                let rss = max_rss_kb(self.pid);
                // Cut the logs before answering: the runtime is blocked on this post, so the
                // cut holds exactly what it printed before posting.
                let logs = self.logs.take();
                let result = InvokeResult {
                    request_id: inv.meta.request_id,
                    status,
                    error_type,
                    duration_us,
                    max_rss_kb: rss,
                    logs,
                };
                self.control.send(&Frame::Result(result, body))?;
                responder.accepted();
            }
            (Route::Response(id) | Route::Error(id), state) => {
                self.state = state;
                responder.error(
                    400,
                    "InvalidRequestID",
                    &format!("unknown or already answered request id {id}"),
                );
            }
            (Route::InitError, State::Initializing { started, .. }) => {
                let error_type = error_type
                    .or_else(|| report::error_type_of(&body))
                    .unwrap_or_else(|| UNKNOWN_ERROR.to_string());
                let logs = self.logs.take();
                responder.accepted();
                let done = InitDone {
                    ok: false,
                    error_type: Some(error_type),
                    duration_us: micros(started),
                    logs,
                };
                self.control.send(&Frame::InitDone(done, body))?;
                return Ok(Flow::Exit);
            }
            (route, state) => {
                let message = format!(
                    "{route:?} is not allowed while the runtime is {}",
                    state.name()
                );
                self.state = state;
                responder.error(403, "InvalidStateTransition", &message);
            }
        }
        Ok(Flow::Continue)
    }

    fn on_exit(&mut self, status: ExitStatus) -> Result<Flow, AgentError> {
        match std::mem::replace(&mut self.state, State::Exited(status)) {
            State::Initializing { started, .. } => {
                let message = report::exit_message("<none>", status);
                self.init_failed(started, EXIT_ERROR, error_doc(EXIT_ERROR, &message))?;
                Ok(Flow::Exit)
            }
            State::Idle { .. } => {
                eprintln!("skyscale-agent: runtime exited between invocations: {status}");
                self.forward_idle_output()?;
                Ok(Flow::Continue)
            }
            State::Invoking(inv) => {
                let message = report::exit_message(&inv.meta.request_id, status);
                let duration_us = inv.sent.map(micros).unwrap_or(0);
                self.send_failure(
                    inv.meta.request_id,
                    InvokeStatus::Crashed,
                    EXIT_ERROR,
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
        }
    }

    /// The init timeout or the invocation's deadline passed: kill the runtime and report.
    fn on_deadline(&mut self) -> Result<(), AgentError> {
        match std::mem::replace(&mut self.state, State::Idle { next: None }) {
            State::Initializing { started, deadline } => {
                kill_group(self.pid);
                let allowed = deadline.saturating_duration_since(started).as_millis() as u64;
                let message = format!("Init timed out after {} seconds", report::seconds(allowed));
                self.init_failed(started, TIMED_OUT, error_doc(TIMED_OUT, &message))
            }
            State::Invoking(inv) => {
                // Read the peak memory while the process still exists.
                let rss = max_rss_kb(self.pid);
                kill_group(self.pid);
                let allowed = inv.meta.deadline_ms.saturating_sub(inv.received_ms);
                let message = report::timeout_message(now_ms(), &inv.meta.request_id, allowed);
                let duration_us = inv.sent.map(micros).unwrap_or(0);
                self.send_failure(
                    inv.meta.request_id,
                    InvokeStatus::Timeout,
                    TIMED_OUT,
                    duration_us,
                    rss,
                    &message,
                )
            }
            State::Idle { .. } | State::Exited(_) => Ok(()),
        }
    }

    /// Reports a failed init with the output printed so far.
    fn init_failed(
        &mut self,
        started: Instant,
        error_type: &str,
        body: Vec<u8>,
    ) -> Result<(), AgentError> {
        let done = InitDone {
            ok: false,
            error_type: Some(error_type.to_string()),
            duration_us: micros(started),
            logs: self.logs.take(),
        };
        self.control.send(&Frame::InitDone(done, body))
    }

    /// Reports an invocation the runtime did not answer (timeout, crash) with an error document
    /// written by the agent.
    fn send_failure(
        &mut self,
        request_id: String,
        status: InvokeStatus,
        error_type: &str,
        duration_us: u64,
        max_rss_kb: u64,
        message: &str,
    ) -> Result<(), AgentError> {
        let result = InvokeResult {
            request_id,
            status,
            error_type: Some(error_type.to_string()),
            duration_us,
            max_rss_kb,
            logs: self.logs.take(),
        };
        self.control
            .send(&Frame::Result(result, error_doc(error_type, message)))
    }
}

/// Answers a pending `/next` with the invocation's event.
fn deliver(inv: &mut Invocation, responder: Responder) {
    let Some(payload) = inv.payload.take() else {
        return;
    };
    let meta = &inv.meta;
    let deadline = meta.deadline_ms.to_string();
    let mut headers = vec![
        (
            "Lambda-Runtime-Aws-Request-Id",
            header_value(&meta.request_id),
        ),
        ("Lambda-Runtime-Deadline-Ms", deadline),
        (
            "Lambda-Runtime-Invoked-Function-Arn",
            header_value(&meta.invoked_function_arn),
        ),
    ];
    if let Some(trace) = &meta.trace_id {
        headers.push(("Lambda-Runtime-Trace-Id", header_value(trace)));
    }
    if let Some(cc) = &meta.client_context {
        headers.push(("Lambda-Runtime-Client-Context", header_value(cc)));
    }
    let mut refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    refs.push(JSON);
    inv.sent = Some(Instant::now());
    responder.send(200, &refs, &payload);
}

/// A header value with CR and LF replaced by spaces (harmless inside JSON, fatal in HTTP).
fn header_value(v: &str) -> String {
    v.replace(['\r', '\n'], " ")
}

fn micros(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}
