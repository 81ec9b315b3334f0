//! Transitions driven by the Lambda Runtime API (any runtime that does not use the pipe):
//! `/next` long polls, `/response` and `/error` posts, `/init/error`.

use std::time::Instant;

use skyscale_protocol::{Frame, InitDone};

use super::{micros, resolve_error_type, runtime_view, Channel, Flow, Invocation, Machine, State};
use crate::error::AgentError;
use crate::http::{ApiRequest, Responder, Route, JSON, MAX_BODY};

/// Lambda's error type for a response over the payload limit.
const RESPONSE_TOO_LARGE: &str = "Function.ResponseSizeTooLarge";

impl Machine {
    /// A Runtime API request, read whole by its connection thread.
    pub(super) fn on_api(&mut self, req: ApiRequest) -> Result<Flow, AgentError> {
        let ApiRequest {
            route,
            error_type,
            body,
            oversized,
            responder,
        } = req;
        if self.channel == Channel::Pipe {
            self.refuse_on_pipe_channel(route, responder);
            return Ok(Flow::Continue);
        }
        match (
            route,
            std::mem::replace(&mut self.state, State::Idle { next: None }),
        ) {
            (Route::Next, State::Initializing { started, .. }) => {
                self.channel = Channel::Http;
                self.init_succeeded(started)?;
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
            (Route::Response(id), State::Invoking(inv))
                if oversized && inv.sent.is_some() && id == inv.meta.request_id =>
            {
                // Lambda's answer: a function error for the caller, 413 for the runtime,
                // which lives on to take the next event.
                let message = format!(
                    "Response payload size exceeded maximum allowed payload size ({MAX_BODY} \
                     bytes)."
                );
                let doc = serde_json::json!({
                    "errorMessage": message,
                    "errorType": RESPONSE_TOO_LARGE,
                });
                self.complete(
                    inv,
                    false,
                    Some(RESPONSE_TOO_LARGE.to_owned()),
                    doc.to_string().into_bytes(),
                )?;
                responder.error(413, "RequestEntityTooLarge", &message);
            }
            (route @ (Route::Response(_) | Route::Error(_)), State::Invoking(inv))
                if inv.sent.is_some() && route.request_id() == Some(&inv.meta.request_id) =>
            {
                let ok = matches!(route, Route::Response(_));
                // Answer the control plane first, then release the runtime's post.
                self.complete(inv, ok, error_type, body)?;
                responder.accepted();
            }
            (Route::Response(id) | Route::Error(id), state) => {
                self.state = state;
                unknown_request_id(responder, &id);
            }
            (Route::InitError, State::Initializing { started, .. }) => {
                self.channel = Channel::Http;
                let error_type = resolve_error_type(error_type, &body);
                let logs = self.logs.take();
                responder.accepted();
                let done = InitDone {
                    ok: false,
                    error_type: Some(error_type),
                    failure: None,
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

    /// The runtime receives its events over the pipe: the Runtime API stays up (a handler may
    /// poke at it) but hands out nothing and accepts nothing.
    fn refuse_on_pipe_channel(&self, route: Route, responder: Responder) {
        let current = match &self.state {
            State::Invoking(inv) => Some(&inv.meta.request_id),
            _ => None,
        };
        match route {
            Route::Response(id) | Route::Error(id) if current != Some(&id) => {
                unknown_request_id(responder, &id);
            }
            route => {
                let message = format!(
                    "{route:?} is not allowed: the runtime receives its events over its pipe"
                );
                responder.error(403, "InvalidStateTransition", &message);
            }
        }
    }
}

fn unknown_request_id(responder: Responder, id: &str) {
    responder.error(
        400,
        "InvalidRequestID",
        &format!("unknown or already answered request id {id}"),
    );
}
/// Answers a pending `/next` with the invocation's event.
pub(super) fn deliver(inv: &mut Invocation, responder: Responder) {
    let Some(payload) = inv.payload.take() else {
        return;
    };
    let meta = runtime_view(&inv.meta);
    let deadline = meta.deadline_ms.to_string();
    let mut headers = vec![
        ("Lambda-Runtime-Aws-Request-Id", meta.request_id.as_str()),
        ("Lambda-Runtime-Deadline-Ms", deadline.as_str()),
        (
            "Lambda-Runtime-Invoked-Function-Arn",
            meta.invoked_function_arn.as_str(),
        ),
    ];
    if let Some(trace) = &meta.trace_id {
        headers.push(("Lambda-Runtime-Trace-Id", trace.as_str()));
    }
    if let Some(cc) = &meta.client_context {
        headers.push(("Lambda-Runtime-Client-Context", cc.as_str()));
    }
    headers.push(JSON);
    inv.sent = Some(Instant::now());
    responder.send(200, &headers, &payload);
}
