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
//! itself, and hands everything else to the main thread as [`Event::Api`] with a [`Responder`]
//! (a clone of the socket). The main thread answers when it decides to — for `/next` that is
//! when an invocation arrives (long poll). Clients do not pipeline, so a connection thread never
//! writes while a request of its connection is waiting for the main thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::Sender;
use std::time::Duration;

use crate::error::{spawn_thread, AgentError};
use crate::Event;

/// Largest request body accepted (Lambda's 6 MB payload limit).
pub const MAX_BODY: usize = 6 * 1024 * 1024;
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest oversized body read away (to answer 413 on a live connection) before giving up.
const MAX_DISCARD: usize = 64 * 1024 * 1024;
/// How long a response write may make no progress before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
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
    pub responder: Responder,
}

/// Writes the one response to one request.
#[derive(Debug)]
pub struct Responder {
    stream: TcpStream,
    close: bool,
}

impl Responder {
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
pub fn serve(listener: TcpListener, events: Sender<Event>) -> Result<(), AgentError> {
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

/// The parts of a request head the agent uses.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    content_length: Option<usize>,
    chunked: bool,
    expect_continue: bool,
    close: bool,
    error_type: Option<String>,
}

/// An answer to a request the connection thread refuses on its own: status, type, message.
struct Reject(u16, &'static str, String);

impl Reject {
    fn send(self, responder: Responder) {
        responder.error(self.0, self.1, &self.2);
    }
}

/// Why a request could not be read; `Reject` is answered before closing the connection.
enum ReadError {
    Io(io::Error),
    Reject(Reject),
}

impl From<Reject> for ReadError {
    fn from(r: Reject) -> Self {
        ReadError::Reject(r)
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// One client connection with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    fn responder(&self, close: bool) -> io::Result<Responder> {
        Ok(Responder {
            stream: self.stream.try_clone()?,
            close,
        })
    }

    fn run(&mut self, events: &Sender<Event>) -> io::Result<()> {
        loop {
            let (head, body) = match self.read_request() {
                Ok(Some(request)) => request,
                Ok(None) => return Ok(()),
                Err(ReadError::Io(e)) => return Err(e),
                Err(ReadError::Reject(reject)) => {
                    reject.send(self.responder(true)?);
                    return Ok(());
                }
            };
            let responder = self.responder(head.close)?;
            let body = match body {
                Ok(body) => body,
                Err(reject) => {
                    reject.send(responder);
                    if head.close {
                        return Ok(());
                    }
                    continue;
                }
            };
            let Some(route) = Route::parse(&head.method, &head.target) else {
                let message = format!("no route for {} {}", head.method, head.target);
                responder.error(404, "NotFound", &message);
                if head.close {
                    return Ok(());
                }
                continue;
            };
            let request = ApiRequest {
                route,
                error_type: head.error_type,
                body,
                responder,
            };
            if events.send(Event::Api(request)).is_err() || head.close {
                return Ok(());
            }
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` is end of file.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes exactly `n` bytes off the connection.
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// Drops exactly `n` bytes of the connection.
    fn discard(&mut self, mut n: usize) -> io::Result<()> {
        loop {
            let k = n.min(self.buf.len());
            self.buf.drain(..k);
            n -= k;
            if n == 0 {
                return Ok(());
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Takes one CRLF-terminated line (without the CRLF), for chunked bodies.
    fn take_line(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let mut line = self.take(end + 2)?;
                line.truncate(end);
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                return Err(bad_request("chunk header line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    /// Reads one request; `Ok(None)` when the client closed the connection between requests.
    /// The body is `Err` when it was read away but is refused (too large): the connection
    /// stays usable.
    #[allow(clippy::type_complexity)]
    fn read_request(&mut self) -> Result<Option<(Head, Result<Vec<u8>, Reject>)>, ReadError> {
        let Some((head, len)) = self.read_head()? else {
            return Ok(None);
        };
        self.buf.drain(..len);
        if let Some(n) = head.content_length.filter(|&n| n > MAX_BODY) {
            // Read the body away first: closing on unread data would reset the connection and
            // the client would never see the 413. Absurd sizes are not worth reading.
            if n <= MAX_DISCARD && !head.expect_continue {
                self.discard(n)?;
                return Ok(Some((head, Err(too_large()))));
            }
            return Err(too_large().into());
        }
        if head.expect_continue {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = if head.chunked {
            self.read_chunked()?
        } else {
            self.take(head.content_length.unwrap_or(0))?
        };
        Ok(Some((head, Ok(body))))
    }

    fn read_head(&mut self) -> Result<Option<(Head, usize)>, ReadError> {
        loop {
            if !self.buf.is_empty() {
                if let Some(parsed) = parse_head(&self.buf)? {
                    return Ok(Some(parsed));
                }
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Reject(
                    431,
                    "RequestHeaderFieldsTooLarge",
                    "request head too large".to_string(),
                )
                .into());
            }
            if self.fill()? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::from(io::ErrorKind::UnexpectedEof).into())
                };
            }
        }
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.take_line()?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.split(';').next())
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| bad_request("bad chunk size"))?;
            if size == 0 {
                // Trailer fields until an empty line.
                while !self.take_line()?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(too_large().into());
            }
            body.extend_from_slice(&self.take(size)?);
            if !self.take_line()?.is_empty() {
                return Err(bad_request("chunk not followed by CRLF"));
            }
        }
    }
}

fn bad_request(message: &str) -> ReadError {
    Reject(400, "InvalidRequest", message.to_string()).into()
}

fn too_large() -> Reject {
    Reject(
        413,
        "RequestEntityTooLarge",
        format!("request body exceeds {MAX_BODY} bytes"),
    )
}

/// Parses a request head; `Ok(None)` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad_request(&format!("malformed request: {e}"))),
    };
    let mut head = Head {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().to_string(),
        content_length: None,
        chunked: false,
        expect_continue: false,
        close: req.version == Some(0),
        error_type: None,
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse()
                .map_err(|_| bad_request("bad content-length"))?;
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(Reject(
                    411,
                    "InvalidRequest",
                    format!("unsupported transfer-encoding {value:?}"),
                )
                .into());
            }
            head.chunked = true;
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                head.close = true;
            } else if v.contains("keep-alive") {
                head.close = false;
            }
        } else if name.eq_ignore_ascii_case("lambda-runtime-function-error-type") {
            head.error_type = Some(value.to_string());
        }
    }
    Ok(Some((head, len)))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

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

    #[test]
    fn head_parsing() {
        let raw = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nLambda-Runtime-Function-Error-Type: E\r\n\r\nabc";
        let Ok(Some((head, len))) = parse_head(raw) else {
            panic!("no head")
        };
        assert_eq!(&raw[len..], b"abc");
        assert_eq!(head.content_length, Some(3));
        assert_eq!(head.error_type.as_deref(), Some("E"));
        assert!(!head.close);
        assert!(matches!(parse_head(b"GET /x HTTP/1.1\r\n"), Ok(None)));
        assert!(matches!(
            parse_head(b"GET /x HTTP/1.0\r\n\r\n"),
            Ok(Some((Head { close: true, .. }, _)))
        ));
        assert!(matches!(
            parse_head(b"\x01\x02 nonsense\r\n\r\n"),
            Err(ReadError::Reject(Reject(400, ..)))
        ));
    }

    /// Talks raw HTTP to a real server on 127.0.0.1:0.
    #[test]
    fn server_handles_chunked_keepalive_and_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        serve(listener, tx).unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = "POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        c.write_all(req.as_bytes()).unwrap();
        let Ok(Event::Api(api)) = rx.recv_timeout(Duration::from_secs(5)) else {
            panic!("no request")
        };
        assert_eq!(api.route, Route::Response("r1".into()));
        assert_eq!(api.body, b"abcde");
        api.responder.accepted();
        let text = read_response(&mut c);
        assert!(text.starts_with("HTTP/1.1 202 Accepted\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"status\":\"OK\"}"), "{text}");
        // Same connection: unknown route → 404 JSON, answered by the connection thread.
        c.write_all(b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
        let text = read_response(&mut c);
        assert!(text.starts_with("HTTP/1.1 404"), "{text}");
        assert!(text.contains("Content-Type: application/json"));
        assert!(text.contains("\"errorType\":\"NotFound\""));
        // Over the limit → 413; the body is read away and the connection stays usable.
        let big = format!(
            "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        c.write_all(big.as_bytes()).unwrap();
        c.write_all(&vec![b'x'; MAX_BODY + 1]).unwrap();
        let text = read_response(&mut c);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(text.contains("RequestEntityTooLarge"));
        c.write_all(
            b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let Ok(Event::Api(api)) = rx.recv_timeout(Duration::from_secs(5)) else {
            panic!("no request")
        };
        assert_eq!(api.route, Route::Next);
        api.responder.send(200, &[JSON], b"{}");
        let text = read_response(&mut c);
        assert!(text.contains("Connection: close\r\n"), "{text}");
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    }

    fn read_response(c: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut byte).unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf.clone()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).unwrap();
        buf.extend_from_slice(&body);
        String::from_utf8(buf).unwrap()
    }
}
