//! One Runtime API connection: reading requests (head via `httparse`, body by
//! `Content-Length` or chunked) and refusing the ones the main thread need not see.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{ApiRequest, Responder, Route, MAX_BODY};
use crate::wake::Notifier;
use crate::Event;

/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest oversized body read away (to answer 413 on a live connection) before giving up.
const MAX_DISCARD: usize = 64 * 1024 * 1024;
/// How long a response write may make no progress before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

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
pub(super) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    fn responder(&self, close: bool) -> io::Result<Responder> {
        Ok(Responder::new(self.stream.try_clone()?, close))
    }

    /// Serves requests until the client closes the connection or a request is refused.
    pub(super) fn run(&mut self, events: &Notifier) -> io::Result<()> {
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
                // An oversized response is the invocation's outcome (Lambda's
                // `Function.ResponseSizeTooLarge`): the main thread decides and answers.
                Err(_)
                    if matches!(
                        Route::parse(&head.method, &head.target),
                        Some(Route::Response(_))
                    ) =>
                {
                    let request = ApiRequest {
                        route: Route::parse(&head.method, &head.target).unwrap_or(Route::Next),
                        error_type: None,
                        body: Vec::new(),
                        oversized: true,
                        responder,
                    };
                    if events.send(Event::Api(request)).is_err() || head.close {
                        return Ok(());
                    }
                    continue;
                }
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
                oversized: false,
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
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;
    use crate::http::{serve, Route, JSON};

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
        let (tx, rx) = crate::wake::channel().unwrap();
        serve(listener, tx).unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = "POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        c.write_all(req.as_bytes()).unwrap();
        let Some(Event::Api(api)) = next_event(&rx) else {
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
        let Some(Event::Api(api)) = next_event(&rx) else {
            panic!("no request")
        };
        assert_eq!(api.route, Route::Next);
        api.responder.send(200, &[JSON], b"{}");
        let text = read_response(&mut c);
        assert!(text.contains("Connection: close\r\n"), "{text}");
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    }

    /// The next event, waiting up to 5 s.
    fn next_event(inbox: &crate::wake::Inbox) -> Option<Event> {
        let mut fds = [rustix::event::PollFd::from_borrowed_fd(
            inbox.fd(),
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&timeout)).ok()?;
        inbox.drain().into_iter().next()
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
