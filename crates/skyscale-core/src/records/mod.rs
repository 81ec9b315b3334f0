//! Invocation records and logs: every observed invocation is handed to a background writer
//! that stores it, its logs are passed on to live followers, and retention keeps the store
//! bounded.
//!
//! The invoke path never waits for the store. `submit` puts the invocation on a bounded
//! channel with `try_send`: when the channel is full (or holds too many bytes of logs) the
//! record is dropped, counted and warned about, instead of making an invocation wait for
//! SQLite. One writer task takes everything queued within a few ms (up to a batch),
//! writes it in one transaction on the store's records connection, then tells followers
//! (a `broadcast` channel). The same task prunes, so the running totals it keeps need no
//! lock:
//! - the logs' total size is held at `max_log_bytes` after every batch, oldest logs first;
//! - the records' count is held at `max_records` after every batch, oldest first;
//! - every `prune_interval`, records and logs older than `retention` go.
//!
//! Both bounds are for the whole host, not per function: one noisy function can push a
//! quiet one's old logs out, never past the total.
//!
//! Queries read their own writes: before it reads, a query of records or logs puts a flush
//! message on the writer's queue and waits until the writer has committed everything
//! queued before it. `observe` runs before an invocation's answer is sent, so whatever
//! answered before the query began is in the query's answer (unless its record was
//! dropped because the writer could not keep up, which is counted). The invoke path
//! itself still never waits for the store.

mod follow;
mod queries;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use skyscale_store::{LogEntry, Store};
use skyscale_types::time::epoch_ms;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::observe::Invocation;
use crate::ControlPlane;
pub use follow::{Followed, LogFollower};
pub use queries::{InvocationFilter, LogFilter};
use writer::Writer;

/// Invocations waiting for the writer, at most. At a few hundred bytes a record (plus its
/// logs, bounded below) this is a few MB, and a writer that keeps up never gets near it.
const QUEUE_CAPACITY: usize = 4096;
/// Bytes of logs waiting for the writer, at most (one invocation's logs are at most
/// `MAX_LOG_BYTES` of output plus its init output and the framing).
const QUEUE_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// After the first record of a batch arrives, the writer waits this long for more: under
/// load that makes one transaction (and one wake-up) per few ms instead of one per
/// invocation, at the cost of followers seeing a line a few ms later.
const BATCH_LINGER: Duration = Duration::from_millis(5);
/// Most invocations, and bytes of logs, written in one transaction.
const BATCH_RECORDS: usize = 512;
const BATCH_LOG_BYTES: u64 = 8 * 1024 * 1024;
/// Longest a query of records or logs waits for the writer to store what was observed
/// before it (normally one batch, a few ms).
const READ_BARRIER_WAIT: Duration = Duration::from_secs(5);
/// How often a dropped record is warned about, at most.
const DROP_WARNING_EVERY_MS: u64 = 10_000;
/// Log entries a follower may fall behind by before it is told some were skipped.
const FOLLOW_BUFFER: usize = 1024;
/// How long and how much is kept.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    /// Records and logs of invocations that started longer ago than this are deleted.
    pub retention: Duration,
    /// Most bytes of logs kept (all functions together); the oldest go first.
    pub max_log_bytes: u64,
    /// Most invocation records kept; the oldest go first.
    pub max_records: u64,
    /// How often the age limit is applied.
    pub prune_interval: Duration,
    /// The longest a log follower lives; the client reconnects for more.
    pub follow_max_lifetime: Duration,
}

impl Default for RecordSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            max_log_bytes: 256 * 1024 * 1024,
            max_records: 1_000_000,
            prune_interval: Duration::from_secs(60),
            follow_max_lifetime: Duration::from_secs(3600),
        }
    }
}

// Nearly every message is a record: boxing it would add an allocation per invocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Message {
    Record(Invocation),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The submitting side of the writer, held by the control plane.
pub(crate) struct Records {
    tx: mpsc::Sender<Message>,
    queued_log_bytes: Arc<AtomicU64>,
    pub(super) dropped: AtomicU64,
    last_warning_ms: AtomicU64,
    pub(super) live: broadcast::Sender<Arc<LogEntry>>,
    pub(super) closing: watch::Sender<bool>,
}

impl Records {
    /// Starts the writer (which also prunes). Must run inside a tokio runtime.
    pub(crate) fn start(store: Arc<Store>, settings: RecordSettings) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (live, _) = broadcast::channel(FOLLOW_BUFFER);
        let queued_log_bytes = Arc::new(AtomicU64::new(0));
        let writer = Writer::new(store, settings, queued_log_bytes.clone(), live.clone());
        tokio::spawn(writer.run(rx));
        Self {
            tx,
            queued_log_bytes,
            dropped: AtomicU64::new(0),
            last_warning_ms: AtomicU64::new(0),
            live,
            closing: watch::channel(false).0,
        }
    }

    /// Queues one invocation for the writer without waiting.
    pub(crate) fn submit(&self, inv: Invocation) {
        let bytes = inv.logs.len() as u64;
        if self.queued_log_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > QUEUE_LOG_BYTES {
            self.queued_log_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return self.count_drop(&inv.record.request_id, "too many bytes of logs are waiting");
        }
        if let Err(e) = self.tx.try_send(Message::Record(inv)) {
            self.queued_log_bytes.fetch_sub(bytes, Ordering::Relaxed);
            let (why, inv) = match e {
                mpsc::error::TrySendError::Full(m) => ("the queue is full", m),
                mpsc::error::TrySendError::Closed(m) => ("the writer has stopped", m),
            };
            if let Message::Record(inv) = inv {
                self.count_drop(&inv.record.request_id, why);
            }
        }
    }

    fn count_drop(&self, request_id: &str, why: &'static str) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = epoch_ms(SystemTime::now());
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= DROP_WARNING_EVERY_MS
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                request_id,
                dropped_total = total,
                "invocation record and logs dropped: {why} (the store is not keeping up)"
            );
        }
    }

    /// Waits (at most `within`) until everything submitted so far is written; whether it
    /// was. The flush message waits for room on the queue rather than being dropped like a
    /// record: it is a barrier, so it must arrive.
    pub(crate) async fn flush(&self, within: Duration) -> bool {
        let (done, written) = oneshot::channel();
        let flushed = async {
            if self.tx.send(Message::Flush(done)).await.is_ok() {
                let _ = written.await;
            }
        };
        tokio::time::timeout(within, flushed).await.is_ok()
    }

    /// Before a query of records or logs: waits until every invocation observed so far is
    /// written (read-your-writes: an invocation that answered before the query began is
    /// in its answer). A writer stuck for `READ_BARRIER_WAIT` gets the query answered
    /// without the newest records rather than never.
    pub(super) async fn barrier(&self) {
        if !self.flush(READ_BARRIER_WAIT).await {
            tracing::warn!(
                wait = ?READ_BARRIER_WAIT,
                "the records writer did not catch up: answering a query without the newest invocations"
            );
        }
    }

    /// Ends every live follower (at shutdown: an open stream would hold the server up).
    pub(crate) fn close_followers(&self) {
        self.closing.send_replace(true);
    }
}

impl ControlPlane {
    /// Invocation records dropped because the writer could not keep up.
    pub fn records_dropped(&self) -> u64 {
        self.records.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyscale_store::InvocationRecord;

    fn invocation(id: &str, started_at: SystemTime, logs: String) -> Invocation {
        Invocation {
            record: InvocationRecord {
                request_id: id.into(),
                function: "f".into(),
                version: "$LATEST".into(),
                caller: None,
                trigger: crate::Trigger::Sync,
                started_at,
                ended_at: started_at,
                status: crate::InvocationStatus::Success,
                error_type: None,
                cold_start: false,
                init_type: Default::default(),
                queue_wait: Duration::ZERO,
                init_duration: None,
                duration: Duration::from_millis(1),
                max_memory_used_mb: 1,
                memory_size_mb: 128,
                response_bytes: 2,
                event: None,
            },
            logs,
        }
    }

    #[tokio::test]
    async fn the_writer_stores_tells_followers_and_keeps_the_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let settings = RecordSettings {
            retention: Duration::from_secs(3600),
            max_log_bytes: 1000,
            max_records: 5,
            prune_interval: Duration::from_millis(20),
            ..RecordSettings::default()
        };
        let records = Records::start(store.clone(), settings);
        let mut live = records.live.subscribe();
        for n in 0..8 {
            records.submit(invocation(
                &format!("r{n}"),
                SystemTime::now(),
                "x".repeat(300),
            ));
        }
        assert!(records.flush(Duration::from_secs(10)).await);
        let totals = store.record_totals().unwrap();
        assert!(totals.log_bytes <= 1000, "{totals:?}");
        assert_eq!((totals.records, totals.logs), (5, 3), "{totals:?}");
        assert!(store.invocation("r7").unwrap().is_some());
        assert!(store.invocation("r2").unwrap().is_none());
        for n in 0..8 {
            let row = live.recv().await.unwrap();
            assert_eq!(row.request_id, format!("r{n}"));
        }

        // Older than the retention: gone at the next prune.
        let old = SystemTime::now() - Duration::from_secs(7200);
        records.submit(invocation("old", old, "old".into()));
        assert!(records.flush(Duration::from_secs(10)).await);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.invocation("old").unwrap().is_some() {
            assert!(std::time::Instant::now() < deadline, "never pruned");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(records.dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn after_the_barrier_every_submitted_record_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let records = Records::start(store.clone(), RecordSettings::default());
        for n in 0..20 {
            let id = format!("r{n}");
            records.submit(invocation(&id, SystemTime::now(), format!("said {n}\n")));
            records.barrier().await;
            assert!(store.invocation(&id).unwrap().is_some(), "{id} not stored");
        }
    }
}
