//! A minimal keep-alive HTTP/1.1 client: one TCP connection (TCP_NODELAY) per `Conn`, driven
//! by hyper's low-level connection API so that no pool or extra task sits on the hot path.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// One answer, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text, shortened for error messages.
    pub fn body_excerpt(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        s.chars().take(200).collect()
    }
}

/// One keep-alive connection. Must be used from within a tokio runtime (its connection task
/// is spawned on the current one).
pub struct Conn {
    host: HeaderValue,
    auth: Option<HeaderValue>,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, bearer: Option<&str>) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // Ends when the connection closes; errors surface on the next request.
            let _ = conn.await;
        });
        let auth = bearer
            .map(|k| HeaderValue::from_str(&format!("Bearer {k}")))
            .transpose()
            .context("API key is not a valid header value")?;
        Ok(Conn {
            host: HeaderValue::from_str(&addr.to_string()).context("host header")?,
            auth,
            sender,
        })
    }

    /// Sends one request on this connection and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.host.clone());
        if let Some(a) = &self.auth {
            req = req.header(hyper::header::AUTHORIZATION, a.clone());
        }
        if !body.is_empty() {
            req = req.header(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (k, v) in extra {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(body)).context("building request")?;
        self.sender
            .ready()
            .await
            .context("connection is not ready")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .context("sending request")?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .context("reading response body")?
            .to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Reply> {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<Reply> {
        self.send(Method::POST, path, &[], body).await
    }

    pub async fn patch(&mut self, path: &str, body: Bytes) -> anyhow::Result<Reply> {
        self.send(Method::PATCH, path, &[], body).await
    }
}
