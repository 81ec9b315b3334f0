//! The Lambda Runtime API transport: a minimal HTTP/1.1 server on std's `TcpListener`, with
//! `httparse` for the request head.
//!
//! Why not tiny_http: it cannot set `TCP_NODELAY` on accepted connections (Nagle plus delayed
//! ACK stalls keep-alive requests by 40 ms), it routes every request through an accept thread,
//! a task pool and a queue (one more thread wake-up per request than needed), and its sockets
//! have no write timeout, so a runtime that stops reading could block whoever answers.
//!
//! Concurrency: one accept thread, one thread per connection (the runtime normally holds a
//! single keep-alive connection). A connection thread reads a request completely (head and
//! body, at most [`MAX_BODY`]), answers malformed requests, oversized bodies and unknown routes
//! itself, and hands everything else to the main thread as [`crate::Event::Api`] with a [`Responder`]
//! (a clone of the socket). The main thread answers when it decides to — for `/next` that is
//! when an invocation arrives (long poll). Clients do not pipeline, so a connection thread never
//! writes while a request of its connection is waiting for the main thread.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};

mod conn;

use crate::error::{spawn_thread, AgentError};
use crate::wake::Notifier;

use conn::Conn;

/// Largest request body accepted (Lambda's 6 MB payload limit).
pub const MAX_BODY: usize = 6 * 1024 * 1024;
const PREFIX: &str = "/2018-06-01/runtime/";

/// A Runtime API endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /runtime/invocation/next`
    Next,
    /// `POST /runtime/invocation/{id}/response`
    Response(String),
    /// `POST /runtime/invocation/{id}/error`
    Error(String),
    /// `POST /runtime/init/error`
    InitError,
}

impl Route {
    /// The request id in `/invocation/{id}/…` routes.
    pub fn request_id(&self) -> Option<&String> {
        match self {
            Route::Response(id) | Route::Error(id) => Some(id),
            Route::Next | Route::InitError => None,
        }
    }

    /// Maps a method and request target to a route; `None` means 404.
    pub fn parse(method: &str, target: &str) -> Option<Route> {
        let path = target.split('?').next().unwrap_or_default();
        let rest = path.strip_prefix(PREFIX)?;
        match (method, rest) {
            ("GET", "invocation/next") => Some(Route::Next),
            ("POST", "init/error") => Some(Route::InitError),
            ("POST", rest) => {
                let (id, action) = rest.strip_prefix("invocation/")?.rsplit_once('/')?;
                if id.is_empty() || id.contains('/') {
                    return None;
                }
                match action {
                    "response" => Some(Route::Response(id.to_string())),
                    "error" => Some(Route::Error(id.to_string())),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// A complete Runtime API request, waiting for the main thread's answer.
#[derive(Debug)]
pub struct ApiRequest {
    pub route: Route,
    /// The `Lambda-Runtime-Function-Error-Type` header.
    pub error_type: Option<String>,
    pub body: Vec<u8>,
    /// The body was larger than [`MAX_BODY`] and was read away (`body` is empty).
    pub oversized: bool,
    pub responder: Responder,
}

/// Writes the one response to one request.
#[derive(Debug)]
pub struct Responder {
    stream: TcpStream,
    close: bool,
}

impl Responder {
    fn new(stream: TcpStream, close: bool) -> Responder {
        Responder { stream, close }
    }

    /// Sends a response in a single write (with `TCP_NODELAY` set it leaves at once). A failure
    /// means the runtime went away; it is logged and otherwise ignored, since the runtime's
    /// exit or the deadline will be noticed on their own.
    pub fn send(mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let mut out = Vec::with_capacity(256 + body.len());
        out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
        for (name, value) in headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        if let Err(e) = self
            .stream
            .write_all(&out)
            .and_then(|()| self.stream.flush())
        {
            eprintln!("skyscale-agent: writing runtime api response: {e}");
            self.close = true;
        }
        if self.close {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }

    /// `202 {"status":"OK"}`
    pub fn accepted(self) {
        self.send(202, &[JSON], br#"{"status":"OK"}"#);
    }

    /// An error in the Runtime API's shape: `{"errorMessage","errorType"}`.
    pub fn error(self, status: u16, error_type: &str, message: &str) {
        let body = serde_json::json!({"errorMessage": message, "errorType": error_type});
        self.send(status, &[JSON], body.to_string().as_bytes());
    }
}

/// The content-type header every JSON answer carries.
pub const JSON: (&str, &str) = ("Content-Type", "application/json");

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Unknown",
    }
}

/// Starts the accept thread on an already-bound listener.
pub fn serve(listener: TcpListener, events: Notifier) -> Result<(), AgentError> {
    spawn_thread("api-accept", move || {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("skyscale-agent: accept: {e}");
                    continue;
                }
            };
            let events = events.clone();
            let started = spawn_thread("api-conn", move || {
                if let Err(e) = Conn::new(stream).and_then(|mut c| c.run(&events)) {
                    eprintln!("skyscale-agent: runtime api connection: {e}");
                }
            });
            if let Err(e) = started {
                eprintln!("skyscale-agent: {e}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Route::parse("GET", "/2018-06-01/runtime/invocation/next"),
            Some(Route::Next)
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/invocation/abc-1/response"),
            Some(Route::Response("abc-1".into()))
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/invocation/abc/error?x=1"),
            Some(Route::Error("abc".into()))
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/init/error"),
            Some(Route::InitError)
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/invocation/next"),
            None
        );
        assert_eq!(
            Route::parse("GET", "/2018-06-01/runtime/invocation/a/response"),
            None
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/invocation//response"),
            None
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/invocation/a/b/error"),
            None
        );
        assert_eq!(Route::parse("GET", "/"), None);
    }
}
