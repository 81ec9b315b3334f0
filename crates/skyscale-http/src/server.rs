//! The accept loop and the life of each connection: how many may be open, how long one may
//! sit idle or take to send a request's headers, and what happens when the host runs out of
//! file descriptors.
//!
//! axum's own `serve` has no timeouts and no connection limit, so an idle or slowloris
//! connection was held forever and 1,100 of them exhausted a 1,024-file limit. Here every
//! connection is watched:
//! - **idle**: no request in flight and no byte of a next one for `idle_timeout` → closed;
//! - **headers**: the first byte of a request arrived but its header block did not complete
//!   within `header_timeout` → closed;
//! - a request in flight (including a long-lived response such as a log follow stream,
//!   counted until its body is dropped) is never closed by these timers; bodies have their
//!   own deadline (`body.rs`).
//!
//! At `max_connections` a new connection takes the place of the one idle the longest
//! (nginx does the same with keep-alive connections); if none is idle it gets a short 503
//! and is closed. An accept that fails for lack of descriptors also closes the longest-idle
//! connection, then retries with a backoff instead of spinning.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// How connections are limited.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Open connections at most; past it the longest-idle one is closed for a new one.
    pub max_connections: usize,
    /// From the first byte of a request to the end of its header block.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
}

/// What one connection is doing, read by its watchdog and by the accept loop's eviction.
/// Times are milliseconds since the server's start.
struct ConnState {
    in_flight: AtomicUsize,
    /// When it last had nothing in flight (accepted, or its last response ended).
    idle_since: AtomicU64,
    /// When the first byte of a request arrived while idle; `u64::MAX` = no partial request.
    request_started: AtomicU64,
    /// Chosen to make room for a new connection: no longer counted as open.
    evicted: AtomicBool,
    evict: Notify,
}

const NONE: u64 = u64::MAX;

struct Tracker {
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// Wakes `serve`'s final wait when the last connection ends.
    emptied: Notify,
}

impl Tracker {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections open and not on their way out.
    fn open(&self) -> usize {
        self.conns()
            .values()
            .filter(|c| !c.evicted.load(Ordering::Acquire))
            .count()
    }

    /// Asks the connection idle the longest (no request in flight) to close. False if every
    /// connection is busy.
    fn evict_idlest(&self) -> bool {
        let conns = self.conns();
        let victim = conns
            .values()
            .filter(|c| {
                c.in_flight.load(Ordering::Acquire) == 0 && !c.evicted.load(Ordering::Acquire)
            })
            .min_by_key(|c| c.idle_since.load(Ordering::Acquire));
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Release);
                // `notify_one` keeps the permit if the task is not waiting right now.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, closes idle
/// connections and waits for the requests in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let tracker = Arc::new(Tracker {
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        conns: Mutex::new(HashMap::new()),
        emptied: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::ZERO;
                a
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or memory: free one if we can, and
                // back off so the loop does not spin on the error.
                let freed = tracker.evict_idlest();
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                tracing::warn!(error = %e, ?backoff, closed_idle = freed, "accept failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // Loopback HTTP with Nagle on stalls keep-alive clients by tens of milliseconds.
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        if tracker.open() >= limits.max_connections && !tracker.evict_idlest() {
            tokio::spawn(refuse(tcp, limits.max_connections));
            continue;
        }
        let state = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(tracker.now_ms()),
            request_started: AtomicU64::new(NONE),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        let id = tracker.next_id.fetch_add(1, Ordering::Relaxed);
        tracker.conns().insert(id, state.clone());
        let conn = Connection {
            tracker: tracker.clone(),
            state,
            limits: limits.clone(),
            peer,
            stop: stop_rx.clone(),
        };
        let router = router.clone();
        let tracker = tracker.clone();
        tokio::spawn(async move {
            conn.run(tcp, router).await;
            let mut conns = tracker.conns();
            conns.remove(&id);
            if conns.is_empty() {
                tracker.emptied.notify_waiters();
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    loop {
        let emptied = tracker.emptied.notified();
        if tracker.open() == 0 {
            return Ok(());
        }
        emptied.await;
    }
}

/// Errors that concern only the connection being accepted; the next accept may succeed.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The answer to a connection over the limit when every open one is busy.
async fn refuse(mut tcp: TcpStream, max: usize) {
    let message =
        format!("the server has {max} connections open and all are busy: retry in a moment");
    let body = serde_json::json!({
        "error": {"code": "too_many_connections", "message": message},
        "message": message,
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         x-amzn-errortype: ServiceException\r\nretry-after: 1\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

struct Connection {
    tracker: Arc<Tracker>,
    state: Arc<ConnState>,
    limits: ConnectionLimits,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream, router: Router) {
        let io = TokioIo::new(Watched {
            inner: tcp,
            state: self.state.clone(),
            tracker: self.tracker.clone(),
        });
        let (tracker, state, peer) = (self.tracker.clone(), self.state.clone(), self.peer);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            let request = InFlight::begin(&tracker, &state);
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                use tower::ServiceExt;
                let resp = router.oneshot(req.map(axum::body::Body::new)).await;
                // The request counts as in flight until hyper drops the response body:
                // a log follow stream is never "idle".
                resp.map(|r| {
                    r.map(|inner| TrackedBody {
                        inner,
                        _request: request,
                    })
                })
            }
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            let deadline = self.deadline();
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = self.state.evict.notified() => {
                    if self.state.in_flight.load(Ordering::Acquire) == 0 {
                        tracing::debug!(peer = %self.peer, "closing an idle connection for a new one");
                        return;
                    }
                    // It became busy in the meantime: it stays, and counts again.
                    self.state.evicted.store(false, Ordering::Release);
                }
                // While a request is in flight there is no deadline, but the timer still
                // comes back to arm the idle one once the response has ended.
                () = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + self.recheck())) => {
                    if self.deadline().is_some_and(|d| d <= Instant::now()) {
                        tracing::debug!(peer = %self.peer, "closing a connection: idle or headers too slow");
                        return;
                    }
                }
                changed = self.stop.changed(), if !stopping => {
                    stopping = true;
                    let _ = changed;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }

    /// How often a busy connection looks again whether it has become idle.
    fn recheck(&self) -> Duration {
        self.limits.header_timeout.min(self.limits.idle_timeout)
    }

    /// When this connection is to be closed if nothing changes; `None` while a request is in
    /// flight.
    fn deadline(&self) -> Option<Instant> {
        if self.state.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let started = self.state.request_started.load(Ordering::Acquire);
        Some(if started != NONE {
            self.tracker.at(started) + self.limits.header_timeout
        } else {
            self.tracker
                .at(self.state.idle_since.load(Ordering::Acquire))
                + self.limits.idle_timeout
        })
    }
}

/// One request in flight on a connection; dropping it (with the response body) makes the
/// connection idle again once nothing else is in flight.
struct InFlight {
    tracker: Arc<Tracker>,
    state: Arc<ConnState>,
}

impl InFlight {
    fn begin(tracker: &Arc<Tracker>, state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.request_started.store(NONE, Ordering::Release);
        Self {
            tracker: tracker.clone(),
            state: state.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state
            .idle_since
            .store(self.tracker.now_ms(), Ordering::Release);
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until hyper drops it. Its size hint is
/// the inner body's, so a response with a known length keeps its `content-length`.
struct TrackedBody {
    inner: axum::body::Body,
    _request: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, noting when a new request's first byte arrives on an idle connection.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
    tracker: Arc<Tracker>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.state.in_flight.load(Ordering::Acquire) == 0
            && self.state.request_started.load(Ordering::Acquire) == NONE
        {
            let now = self.tracker.now_ms();
            self.state.request_started.store(now, Ordering::Release);
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Tracker {
        Tracker {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            emptied: Notify::new(),
        }
    }

    fn conn(t: &Tracker, id: u64, idle_since: u64, in_flight: usize) -> Arc<ConnState> {
        let c = Arc::new(ConnState {
            in_flight: AtomicUsize::new(in_flight),
            idle_since: AtomicU64::new(idle_since),
            request_started: AtomicU64::new(NONE),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        t.conns().insert(id, c.clone());
        c
    }

    #[test]
    fn eviction_takes_the_longest_idle_and_never_a_busy_one() {
        let t = tracker();
        let busy_oldest = conn(&t, 1, 10, 1);
        let idle_old = conn(&t, 2, 20, 0);
        let idle_new = conn(&t, 3, 30, 0);
        assert_eq!(t.open(), 3);
        assert!(t.evict_idlest());
        assert!(idle_old.evicted.load(Ordering::Acquire));
        assert_eq!(t.open(), 2, "an evicted connection no longer counts");
        assert!(t.evict_idlest());
        assert!(idle_new.evicted.load(Ordering::Acquire));
        assert!(!t.evict_idlest(), "only a busy one is left");
        assert!(!busy_oldest.evicted.load(Ordering::Acquire));
    }
}
