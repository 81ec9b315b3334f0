//! Reading request bodies: each route's own size limit, a deadline for the whole body, and a
//! host-wide budget for the bytes of requests nobody has authenticated yet.
//!
//! A bearer key (`/v1`) is checked from the headers, before any body byte is read. A SigV4
//! signature (the Lambda API, `AWS_IAM` function URLs) covers the body, so the body must be
//! read before the caller is known; so must a public function URL's. Those reads take their
//! bytes from one [`Budget`]: however many such requests arrive, together they never hold
//! more than the budget. A request declaring its length reserves it whole before reading (so
//! two large uploads cannot each hold half and wait for the other); a chunked one reserves as
//! its chunks arrive. A request that cannot get its bytes within [`BUDGET_WAIT`] is refused
//! as busy (a 429 the SDKs retry), and nothing is allocated for bytes that have not arrived.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use futures_util::StreamExt;
use skyscale_core::{CoreError, Throttle};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The longest a request waits for budget before it is refused as busy.
const BUDGET_WAIT: Duration = Duration::from_secs(5);

/// Bodies larger than this are reserved a chunk at a time when they do not declare a length.
const CHUNK_RESERVATION: usize = 64 * 1024;

/// A body over its limit is still read (and thrown away, holding no memory) up to this many
/// bytes past the limit before the 413 is sent: most clients read no answer until they have
/// sent their whole body, and would report a broken pipe instead of the clear error. Past
/// this, the connection is closed on them.
const DRAIN_BEYOND_LIMIT: u64 = 64 * 1024 * 1024;

/// What reading a request body may take, shared by every route.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// The whole body must have arrived this long after the handler started reading it.
    pub timeout: Duration,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

impl BodyLimits {
    /// `unauthenticated_bytes` bounds what all requests that are not yet authenticated may
    /// hold together; it must be at least the largest single body a route accepts.
    pub fn new(timeout: Duration, unauthenticated_bytes: usize) -> Self {
        Self {
            timeout,
            budget: Arc::new(Semaphore::new(
                unauthenticated_bytes.min(Semaphore::MAX_PERMITS),
            )),
            budget_bytes: unauthenticated_bytes,
        }
    }

    /// Bytes of the unauthenticated budget not in use right now.
    pub fn budget_available(&self) -> usize {
        self.budget.available_permits()
    }

    /// The budget's size.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }
}

/// Who is sending the body: decides whether it is charged to the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// Authenticated before the body was read.
    Known,
    /// Not (yet) authenticated: the bytes come from the shared budget.
    Unauthenticated,
}

/// A body read whole. Unauthenticated bytes stay charged to the budget until this is
/// dropped or [`Buffered::release`] is called.
pub(crate) struct Buffered {
    pub bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Buffered {
    /// The bytes, returning their share of the budget (once they belong to someone known).
    pub fn release(self) -> Bytes {
        self.bytes
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: &'static str, limit: usize },
    #[error("{what} did not arrive within {timeout:?}")]
    TimedOut {
        what: &'static str,
        timeout: Duration,
    },
    #[error(
        "the server is reading too many unauthenticated request bodies ({budget} bytes): \
         retry in a few seconds"
    )]
    Busy { budget: usize },
    #[error("reading {what}: {source}")]
    Read {
        what: &'static str,
        #[source]
        source: axum::Error,
    },
}

impl From<BodyError> for CoreError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { .. } => CoreError::PayloadTooLarge(e.to_string()),
            BodyError::TimedOut { .. } => CoreError::RequestTimeout(e.to_string()),
            BodyError::Busy { .. } => CoreError::TooManyRequests {
                limit: Throttle::ServerBusy,
                message: e.to_string(),
            },
            BodyError::Read { .. } => CoreError::InvalidRequest(e.to_string()),
        }
    }
}

/// The length a request declares, if any.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads `body` whole: at most `limit` bytes, within the limits' timeout, and from the
/// unauthenticated budget when the sender is not known yet. A declared length over the
/// limit is refused before a byte is read.
pub(crate) async fn read(
    limits: &BodyLimits,
    body: Body,
    declared: Option<u64>,
    limit: usize,
    sender: Sender,
    what: &'static str,
) -> Result<Buffered, BodyError> {
    let deadline = Instant::now() + limits.timeout;
    let declared = match declared.map(usize::try_from) {
        Some(Ok(n)) if n <= limit => Some(n),
        Some(Ok(n)) if (n as u64) <= limit as u64 + DRAIN_BEYOND_LIMIT => {
            drain(body, deadline).await;
            return Err(BodyError::TooLarge { what, limit });
        }
        Some(_) => return Err(BodyError::TooLarge { what, limit }),
        None => None,
    };
    let mut reservation = Reservation {
        limits,
        sender,
        permit: None,
        deadline,
    };
    // A declared length is reserved whole up front and allocated once: no doubling copies,
    // and pages that are never written (a sender that stops) are never resident.
    if let Some(n) = declared {
        reservation.grow_to(n).await?;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(BodyError::TimedOut {
                    what,
                    timeout: limits.timeout,
                })
            }
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(source)) => return Err(BodyError::Read { what, source }),
        };
        let len = buf.len() + chunk.len();
        if len > limit {
            drop(buf);
            drop(reservation);
            drain_stream(stream, deadline, DRAIN_BEYOND_LIMIT).await;
            return Err(BodyError::TooLarge { what, limit });
        }
        reservation.grow_to(len).await?;
        buf.extend_from_slice(&chunk);
    }
    Ok(Buffered {
        bytes: Bytes::from(buf),
        _permit: reservation.permit,
    })
}

/// Reads and discards the rest of a body that will be refused, within the deadline.
async fn drain(body: Body, deadline: Instant) {
    drain_stream(body.into_data_stream(), deadline, u64::MAX).await;
}

async fn drain_stream(mut stream: axum::body::BodyDataStream, deadline: Instant, at_most: u64) {
    let mut seen = 0u64;
    while seen <= at_most {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => seen += chunk.len() as u64,
            _ => return,
        }
    }
}

/// The part of the budget one body holds.
struct Reservation<'a> {
    limits: &'a BodyLimits,
    sender: Sender,
    permit: Option<OwnedSemaphorePermit>,
    deadline: Instant,
}

impl Reservation<'_> {
    /// Makes sure `len` bytes are reserved (a no-op for known senders).
    async fn grow_to(&mut self, len: usize) -> Result<(), BodyError> {
        if self.sender == Sender::Known {
            return Ok(());
        }
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits());
        if len <= held {
            return Ok(());
        }
        // Chunked bodies reserve ahead a little, so each chunk does not wait on its own.
        let want = (len - held).max(CHUNK_RESERVATION.min(len));
        let want = u32::try_from(want).map_err(|_| self.busy())?;
        let wait = BUDGET_WAIT.min(self.deadline.saturating_duration_since(Instant::now()));
        let more = tokio::time::timeout(wait, self.limits.budget.clone().acquire_many_owned(want))
            .await
            .map_err(|_| self.busy())?
            .map_err(|_| self.busy())?;
        match &mut self.permit {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
        Ok(())
    }

    fn busy(&self) -> BodyError {
        BodyError::Busy {
            budget: self.limits.budget_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget: usize) -> BodyLimits {
        BodyLimits::new(Duration::from_secs(5), budget)
    }

    #[tokio::test]
    async fn reads_within_the_limit_and_returns_the_budget() {
        let l = limits(1024);
        let got = read(
            &l,
            Body::from(vec![7u8; 1000]),
            Some(1000),
            1000,
            Sender::Unauthenticated,
            "body",
        )
        .await
        .expect("read");
        assert_eq!(got.bytes.len(), 1000);
        assert_eq!(l.budget_available(), 24);
        drop(got);
        assert_eq!(l.budget_available(), 1024);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let l = limits(1024);
        let err = read(&l, Body::empty(), Some(2000), 1000, Sender::Known, "body")
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, BodyError::TooLarge { limit: 1000, .. }));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_without_being_buffered() {
        let l = limits(1024);
        let (mut tx, rx) = futures_channel();
        tx.send_chunk(&[0u8; 3000]);
        drop(tx);
        let err = read(
            &l,
            Body::from_stream(rx),
            Some(3000),
            1000,
            Sender::Unauthenticated,
            "body",
        )
        .await
        .err()
        .expect("refused");
        assert!(matches!(err, BodyError::TooLarge { limit: 1000, .. }));
        assert_eq!(l.budget_available(), 1024, "drained bytes are not buffered");
    }

    #[tokio::test]
    async fn an_undeclared_body_is_cut_at_the_limit() {
        let l = limits(1 << 20);
        let err = read(
            &l,
            Body::from(vec![0u8; 5000]),
            None,
            4096,
            Sender::Unauthenticated,
            "body",
        )
        .await
        .err()
        .expect("refused");
        assert!(matches!(err, BodyError::TooLarge { limit: 4096, .. }));
        assert_eq!(l.budget_available(), 1 << 20, "the budget is returned");
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_makes_unauthenticated_readers_wait_then_refuses_them() {
        let l = limits(1000);
        let held = read(
            &l,
            Body::from(vec![1u8; 800]),
            Some(800),
            1000,
            Sender::Unauthenticated,
            "body",
        )
        .await
        .expect("first");
        let err = read(
            &l,
            Body::from(vec![1u8; 500]),
            Some(500),
            1000,
            Sender::Unauthenticated,
            "body",
        )
        .await
        .err()
        .expect("busy");
        assert!(matches!(err, BodyError::Busy { .. }));
        // Known senders do not use the budget.
        let known = read(
            &l,
            Body::from(vec![1u8; 500]),
            Some(500),
            1000,
            Sender::Known,
            "body",
        )
        .await
        .expect("known");
        assert_eq!(known.bytes.len(), 500);
        drop(held);
        assert_eq!(l.budget_available(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_times_out() {
        let l = limits(1 << 20);
        let (mut tx, body) = {
            let (tx, rx) = futures_channel();
            (tx, Body::from_stream(rx))
        };
        tx.send_chunk(b"partial");
        let err = read(&l, body, Some(100), 1000, Sender::Unauthenticated, "body")
            .await
            .err()
            .expect("timed out");
        assert!(matches!(err, BodyError::TimedOut { .. }));
        assert_eq!(l.budget_available(), 1 << 20);
        drop(tx);
    }

    /// A body stream fed by hand that never ends on its own.
    struct Feeder(tokio::sync::mpsc::UnboundedSender<Result<Bytes, std::io::Error>>);

    impl Feeder {
        fn send_chunk(&mut self, b: &'static [u8]) {
            let _ = self.0.send(Ok(Bytes::from_static(b)));
        }
    }

    fn futures_channel() -> (
        Feeder,
        impl futures_util::Stream<Item = Result<Bytes, std::io::Error>>,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        (Feeder(tx), stream)
    }
}
