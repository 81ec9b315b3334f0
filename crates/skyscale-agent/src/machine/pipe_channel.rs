//! Transitions driven by the runtime pipe: the built-in runtime's `InitDone` and `Result`
//! frames, and the `Invoke` frames the agent writes to it.

use std::time::Instant;

use skyscale_protocol::{Frame, InvokeStatus};

use super::{resolve_error_type, runtime_view, Channel, Flow, Invocation, Machine, State};
use crate::error::AgentError;
use crate::process::kill_group;

impl Machine {
    /// Starts writing the event to the runtime; a full pipe finishes on `POLLOUT`.
    pub(super) fn send_to_pipe(&mut self, inv: &mut Invocation) {
        let payload = inv.payload.take().unwrap_or_default();
        let frame = Frame::Invoke(runtime_view(&inv.meta), payload);
        inv.sent = Some(Instant::now());
        if let Err(e) = self.pipe.send(&frame) {
            // The runtime is gone or going; its exit is reported as a crash.
            eprintln!("skyscale-agent: writing to the runtime pipe: {e}");
        }
    }

    pub(super) fn on_runtime_readable(&mut self) -> Result<Flow, AgentError> {
        match self.pipe.fill() {
            // End of file: the runtime exited (the reaper reports how) or speaks HTTP and
            // closed its idle end.
            Ok(_) => {}
            Err(e) => {
                self.runtime_broke_protocol(&e);
                return Ok(Flow::Continue);
            }
        }
        loop {
            match self.pipe.next_frame() {
                Ok(Some(frame)) => {
                    if let Flow::Exit = self.on_runtime_frame(frame)? {
                        return Ok(Flow::Exit);
                    }
                }
                Ok(None) => return Ok(Flow::Continue),
                Err(e) => {
                    self.runtime_broke_protocol(&e);
                    return Ok(Flow::Continue);
                }
            }
        }
    }

    fn on_runtime_frame(&mut self, frame: Frame) -> Result<Flow, AgentError> {
        match (
            frame,
            std::mem::replace(&mut self.state, State::Idle { next: None }),
        ) {
            (Frame::InitDone(done, body), State::Initializing { started, .. }) => {
                self.channel = Channel::Pipe;
                if done.ok {
                    self.init_succeeded(started)?;
                    return Ok(Flow::Continue);
                }
                let error_type = resolve_error_type(done.error_type, &body);
                self.init_failed(started, error_type, body)?;
                Ok(Flow::Exit)
            }
            (Frame::Result(result, body), State::Invoking(inv))
                if self.channel == Channel::Pipe
                    && inv.sent.is_some()
                    && result.request_id == inv.meta.request_id
                    && matches!(result.status, InvokeStatus::Ok | InvokeStatus::Error { .. }) =>
            {
                let (ok, error_type) = match result.status {
                    InvokeStatus::Error { error_type } => (false, error_type),
                    _ => (true, None),
                };
                self.complete(inv, ok, error_type, body)?;
                Ok(Flow::Continue)
            }
            (Frame::SnapshotDone(done), State::Snapshotting { started }) => {
                self.snapshot_done(started, done)?;
                Ok(Flow::Continue)
            }
            (frame, state) => {
                let message = format!(
                    "unexpected {} frame from the runtime while {}",
                    frame.kind(),
                    state.name()
                );
                self.state = state;
                self.runtime_broke_protocol(&message);
                Ok(Flow::Continue)
            }
        }
    }

    /// The built-in runtime never does this: stop listening to it and kill it. Its exit is
    /// then reported like any other (`Crashed`, or a failed init).
    fn runtime_broke_protocol(&mut self, what: &dyn std::fmt::Display) {
        eprintln!("skyscale-agent: runtime pipe: {what}; killing the runtime");
        self.pipe.give_up();
        kill_group(self.pid);
    }
}
