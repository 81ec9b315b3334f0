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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skyscale_store::{InvocationQuery, InvocationRow, LogQuery, LogRow, RecordTotals, Store};
use skyscale_types::api::{InvocationRecord, LogEntry};
use skyscale_types::KeyId;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::auth::{Action, Principal};
use crate::keys::Keys;
use crate::observe::Invocation;
use crate::since::{parse_since, rfc3339};
use crate::{blocking, ControlPlane, CoreError, InvocationStatus};

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
/// Log entries a follower may fall behind by before it is told some were skipped.
const FOLLOW_BUFFER: usize = 1024;
/// How often a dropped record is warned about, at most.
const DROP_WARNING_EVERY_MS: u64 = 10_000;
/// Lists: the default and the most returned at once.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
/// Most bytes of logs in one answer (the newest entries that fit): a page of big logs
/// must not cost the control plane hundreds of MB.
const MAX_LOG_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

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

/// Which records to list (`GET /v1/functions/{name}/invocations`).
#[derive(Debug, Clone, Default)]
pub struct InvocationFilter {
    /// One of the statuses (`success`, `function_error`, …).
    pub status: Option<String>,
    /// RFC 3339 or a duration before now (`10m`).
    pub since: Option<String>,
    pub limit: Option<usize>,
}

/// Which logs to read (`GET /v1/functions/{name}/logs`).
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// RFC 3339 or a duration before now (`10m`): invocations that started since.
    pub since: Option<String>,
    /// Only this invocation's.
    pub request_id: Option<String>,
    /// The newest this many (default 100).
    pub limit: Option<usize>,
}

// Nearly every message is a record: boxing it would add an allocation per invocation.
#[allow(clippy::large_enum_variant)]
enum Message {
    Record(Invocation),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The submitting side of the writer, held by the control plane.
pub(crate) struct Records {
    tx: mpsc::Sender<Message>,
    queued_log_bytes: Arc<AtomicU64>,
    dropped: AtomicU64,
    last_warning_ms: AtomicU64,
    live: broadcast::Sender<Arc<LogRow>>,
    closing: watch::Sender<bool>,
}

impl Records {
    /// Starts the writer (which also prunes). Must run inside a tokio runtime.
    pub(crate) fn start(store: Arc<Store>, settings: RecordSettings) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (live, _) = broadcast::channel(FOLLOW_BUFFER);
        let queued_log_bytes = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            store,
            settings,
            queued_log_bytes: queued_log_bytes.clone(),
            live: live.clone(),
            totals: RecordTotals::default(),
        };
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
            return self.count_drop(&inv.request_id, "too many bytes of logs are waiting");
        }
        if let Err(e) = self.tx.try_send(Message::Record(inv)) {
            self.queued_log_bytes.fetch_sub(bytes, Ordering::Relaxed);
            let (why, inv) = match e {
                mpsc::error::TrySendError::Full(m) => ("the queue is full", m),
                mpsc::error::TrySendError::Closed(m) => ("the writer has stopped", m),
            };
            if let Message::Record(inv) = inv {
                self.count_drop(&inv.request_id, why);
            }
        }
    }

    fn count_drop(&self, request_id: &str, why: &'static str) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = epoch_ms(SystemTime::now()).max(0) as u64;
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
    async fn barrier(&self) {
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

/// The writer task's state.
struct Writer {
    store: Arc<Store>,
    settings: RecordSettings,
    queued_log_bytes: Arc<AtomicU64>,
    live: broadcast::Sender<Arc<LogRow>>,
    /// What is stored; only this task writes, so it stays right without a lock.
    totals: RecordTotals,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let store = self.store.clone();
        match blocking(move || Ok(store.record_totals()?)).await {
            Ok(t) => self.totals = t,
            Err(e) => tracing::error!(error = %e, "reading the stored invocation totals"),
        }
        let mut prune = tokio::time::interval(self.settings.prune_interval);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                first = rx.recv() => match first {
                    Some(first) => {
                        if matches!(first, Message::Record(_)) {
                            tokio::time::sleep(BATCH_LINGER).await;
                        }
                        let batch = self.take_batch(first, &mut rx);
                        self.write(batch).await;
                    }
                    None => break,
                },
                _ = prune.tick() => self.prune_by_age().await,
            }
        }
    }

    /// `first` and whatever else is queued, up to a batch.
    fn take_batch(&self, first: Message, rx: &mut mpsc::Receiver<Message>) -> Vec<Message> {
        let mut batch = vec![first];
        let mut bytes = 0;
        loop {
            if let Some(Message::Record(inv)) = batch.last() {
                let n = inv.logs.len() as u64;
                self.queued_log_bytes.fetch_sub(n, Ordering::Relaxed);
                bytes += n;
            }
            if batch.len() >= BATCH_RECORDS || bytes >= BATCH_LOG_BYTES {
                return batch;
            }
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => return batch,
            }
        }
    }

    async fn write(&mut self, batch: Vec<Message>) {
        let mut rows = Vec::with_capacity(batch.len());
        let mut acks = Vec::new();
        for m in batch {
            match m {
                Message::Record(inv) => rows.push((row(&inv), inv.logs)),
                Message::Flush(ack) => acks.push(ack),
            }
        }
        if !rows.is_empty() {
            let store = self.store.clone();
            let written = blocking(move || {
                let refs: Vec<(&InvocationRow, &str)> =
                    rows.iter().map(|(r, l)| (r, l.as_str())).collect();
                let ids = store.insert_invocations(&refs)?;
                Ok((rows, ids))
            })
            .await;
            match written {
                Ok((rows, ids)) => {
                    self.totals.records += rows.len() as u64;
                    let following = self.live.receiver_count() > 0;
                    for ((r, text), id) in rows.into_iter().zip(ids) {
                        let Some(id) = id else { continue };
                        self.totals.logs += 1;
                        self.totals.log_bytes += text.len() as u64;
                        if following {
                            let _ = self.live.send(Arc::new(LogRow {
                                id,
                                request_id: r.request_id,
                                function: r.function,
                                started_at_ms: r.started_at_ms,
                                bytes: text.len() as u64,
                                text,
                            }));
                        }
                    }
                    self.prune_by_size().await;
                }
                Err(e) => tracing::error!(error = %e, "writing invocation records"),
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }

    async fn prune_by_size(&mut self) {
        let excess_bytes = self
            .totals
            .log_bytes
            .saturating_sub(self.settings.max_log_bytes);
        let excess_records = self
            .totals
            .records
            .saturating_sub(self.settings.max_records);
        if excess_bytes == 0 && excess_records == 0 {
            return;
        }
        let store = self.store.clone();
        let pruned = blocking(move || {
            let mut pruned = RecordTotals::default();
            if excess_bytes > 0 {
                pruned = store.prune_oldest_logs(excess_bytes)?;
            }
            if excess_records > 0 {
                pruned.records = store.prune_oldest_invocations(excess_records)?.records;
            }
            Ok(pruned)
        })
        .await;
        self.subtract(pruned, "size");
    }

    async fn prune_by_age(&mut self) {
        let cutoff = SystemTime::now()
            .checked_sub(self.settings.retention)
            .unwrap_or(UNIX_EPOCH);
        let store = self.store.clone();
        let pruned = blocking(move || Ok(store.prune_invocations_before(epoch_ms(cutoff))?)).await;
        self.subtract(pruned, "age");
    }

    fn subtract(&mut self, pruned: Result<RecordTotals, CoreError>, rule: &'static str) {
        match pruned {
            Ok(p) => {
                self.totals.records = self.totals.records.saturating_sub(p.records);
                self.totals.logs = self.totals.logs.saturating_sub(p.logs);
                self.totals.log_bytes = self.totals.log_bytes.saturating_sub(p.log_bytes);
                if p != RecordTotals::default() {
                    tracing::debug!(
                        rule,
                        records = p.records,
                        logs = p.logs,
                        log_bytes = p.log_bytes,
                        "pruned invocation records"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, rule, "pruning invocation records"),
        }
    }
}

fn epoch_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn from_epoch_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn row(inv: &Invocation) -> InvocationRow {
    InvocationRow {
        request_id: inv.request_id.clone(),
        function: inv.function.clone(),
        version: inv.version.clone(),
        caller: inv.caller.clone(),
        trigger: inv.trigger.as_str().to_owned(),
        started_at_ms: epoch_ms(inv.started_at),
        ended_at_ms: epoch_ms(inv.ended_at),
        status: inv.status.as_str().to_owned(),
        error_type: inv.error_type.clone(),
        cold_start: inv.cold_start,
        queue_wait_us: micros(inv.queue_wait),
        init_duration_us: inv.init_duration.map(micros),
        duration_us: micros(inv.duration),
        max_memory_used_mb: inv.max_memory_used_mb,
        memory_size_mb: inv.memory_size_mb,
        response_bytes: inv.response_bytes,
        event: inv.event.as_ref().map(|e| (e.id.clone(), e.attempt)),
    }
}

fn record(r: InvocationRow) -> InvocationRecord {
    InvocationRecord {
        started_at: rfc3339(from_epoch_ms(r.started_at_ms)),
        ended_at: rfc3339(from_epoch_ms(r.ended_at_ms)),
        request_id: r.request_id,
        function: r.function,
        version: r.version,
        caller_key_id: r.caller,
        trigger: r.trigger,
        status: r.status,
        error_type: r.error_type,
        cold_start: r.cold_start,
        queue_wait_ms: ms(r.queue_wait_us),
        init_duration_ms: r.init_duration_us.map(ms),
        duration_ms: ms(r.duration_us),
        max_memory_used_mb: r.max_memory_used_mb,
        memory_size_mb: r.memory_size_mb,
        response_bytes: r.response_bytes,
        event_id: r.event.as_ref().map(|(id, _)| id.clone()),
        attempt: r.event.map(|(_, n)| n),
    }
}

fn entry(r: &LogRow) -> LogEntry {
    LogEntry {
        id: r.id,
        request_id: r.request_id.clone(),
        function: r.function.clone(),
        started_at: rfc3339(from_epoch_ms(r.started_at_ms)),
        bytes: r.bytes,
        text: r.text.clone(),
    }
}

fn limit(n: Option<usize>) -> Result<usize, CoreError> {
    match n {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(n) => Err(CoreError::InvalidParameter(format!(
            "invalid limit {n}: must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

fn since_ms(since: Option<&str>) -> Result<Option<i64>, CoreError> {
    since
        .map(|s| parse_since(s, SystemTime::now()).map(epoch_ms))
        .transpose()
}

/// Request ids are UUIDs; anything that could not be one is refused before a lookup.
fn check_request_id(id: &str) -> Result<(), CoreError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(CoreError::InvalidParameter(
            "invalid request id: expected the id an invocation answered with, e.g. \
             6c0f4d1e-8a3b-4c2d-9e5f-0a1b2c3d4e5f"
                .into(),
        ));
    }
    Ok(())
}

/// What a follower gets next.
#[derive(Debug)]
pub enum Followed {
    Entry(LogEntry),
    /// The follower fell behind: this many entries were skipped.
    Skipped(u64),
    /// Nothing more will come (the control plane is stopping, or the one invocation
    /// followed has been delivered).
    End,
    /// The key that opened the stream was revoked (or deleted) meanwhile.
    KeyRevoked,
    /// The stream reached its maximum lifetime; a client that wants more reconnects (and
    /// is authenticated again).
    Expired(Duration),
}

/// How often a follower checks that its key is still valid: a revocation ends the stream
/// within about this long.
const KEY_RECHECK: Duration = Duration::from_secs(1);

/// New log entries of one function (or one invocation) as they are stored.
pub struct LogFollower {
    rx: broadcast::Receiver<Arc<LogRow>>,
    closing: watch::Receiver<bool>,
    function: String,
    request_id: Option<String>,
    /// Entries at or below this id were in the backlog (or deliberately left out of it).
    after: u64,
    done: bool,
    /// The key the stream was opened with (`None`: no key, e.g. a public caller), and the
    /// table to check it against while the stream lives.
    key: Option<KeyId>,
    keys: Arc<Keys>,
    lifetime: Duration,
    ends_at: tokio::time::Instant,
    recheck: tokio::time::Interval,
}

impl LogFollower {
    pub async fn next(&mut self) -> Followed {
        loop {
            if self.done || *self.closing.borrow() {
                return Followed::End;
            }
            let got = tokio::select! {
                got = self.rx.recv() => got,
                changed = self.closing.changed() => match changed {
                    Ok(()) => continue,
                    // The control plane is gone.
                    Err(_) => return Followed::End,
                },
                _ = self.recheck.tick() => {
                    if self.key.as_ref().is_some_and(|k| !self.keys.is_live(k)) {
                        self.done = true;
                        return Followed::KeyRevoked;
                    }
                    continue;
                }
                () = tokio::time::sleep_until(self.ends_at) => {
                    self.done = true;
                    return Followed::Expired(self.lifetime);
                }
            };
            match got {
                Ok(row) => {
                    if row.id <= self.after || row.function != self.function {
                        continue;
                    }
                    if let Some(id) = &self.request_id {
                        if &row.request_id != id {
                            continue;
                        }
                        self.done = true;
                    }
                    return Followed::Entry(entry(&row));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => return Followed::Skipped(n),
                Err(broadcast::error::RecvError::Closed) => return Followed::End,
            }
        }
    }
}

impl ControlPlane {
    /// Invocation records dropped because the writer could not keep up.
    pub fn records_dropped(&self) -> u64 {
        self.records.dropped.load(Ordering::Relaxed)
    }

    /// One invocation's record. Developer and admin keys, for functions in their scope; a
    /// record of a function out of scope is "not found", like one that does not exist.
    pub async fn invocation(
        &self,
        by: &Principal,
        request_id: &str,
    ) -> Result<InvocationRecord, CoreError> {
        by.authorize(Action::ReadFunction, None)?;
        check_request_id(request_id)?;
        self.records.barrier().await;
        let store = self.store.clone();
        let id = request_id.to_owned();
        let found = blocking(move || Ok(store.invocation(&id)?)).await?;
        match found {
            Some(r)
                if skyscale_types::FunctionName::parse(&r.function)
                    .is_ok_and(|f| by.may_see(&f)) =>
            {
                Ok(record(r))
            }
            _ => Err(CoreError::NotFound(format!(
                "invocation {request_id} not found"
            ))),
        }
    }

    /// A function's invocation records, newest first (they outlive a deleted function
    /// until retention removes them).
    pub async fn invocations(
        &self,
        by: &Principal,
        name: &str,
        filter: &InvocationFilter,
    ) -> Result<Vec<InvocationRecord>, CoreError> {
        let name = self.authorize_on(by, Action::ReadFunction, name)?;
        let status = match filter.status.as_deref() {
            None => None,
            Some(s) => Some(InvocationStatus::parse(s).ok_or_else(|| {
                CoreError::InvalidParameter(format!(
                    "invalid status {s:?}: expected success, function_error, timeout, \
                     throttled or crashed"
                ))
            })?),
        };
        let limit = limit(filter.limit)?;
        let since_ms = since_ms(filter.since.as_deref())?;
        self.records.barrier().await;
        let store = self.store.clone();
        let rows = blocking(move || {
            Ok(store.invocations(&InvocationQuery {
                function: name.as_str(),
                status: status.map(InvocationStatus::as_str),
                since_ms,
                limit,
            })?)
        })
        .await?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// A function's logs: the newest `limit` invocations' (since `since`, or one
    /// invocation's), oldest first.
    pub async fn logs(
        &self,
        by: &Principal,
        name: &str,
        filter: &LogFilter,
    ) -> Result<Vec<LogEntry>, CoreError> {
        Ok(self.read_logs(by, name, filter).await?.0)
    }

    /// Like [`Self::logs`], then every new entry as it is stored, until the control plane
    /// stops (or, following one request id, until its entry came).
    pub async fn follow_logs(
        &self,
        by: &Principal,
        name: &str,
        filter: &LogFilter,
    ) -> Result<(Vec<LogEntry>, LogFollower), CoreError> {
        // Subscribed before the backlog is read, so nothing falls in between; what the
        // backlog could have held is skipped by id.
        let rx = self.records.live.subscribe();
        let (backlog, last_id, function) = self.read_logs(by, name, filter).await?;
        let done = filter.request_id.is_some() && !backlog.is_empty();
        let lifetime = self.settings.records.follow_max_lifetime;
        let mut recheck = tokio::time::interval(KEY_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let follower = LogFollower {
            rx,
            closing: self.records.closing.subscribe(),
            function,
            request_id: filter.request_id.clone(),
            after: last_id,
            done,
            key: by.key_id.clone(),
            keys: self.keys.clone(),
            lifetime,
            ends_at: tokio::time::Instant::now() + lifetime,
            recheck,
        };
        Ok((backlog, follower))
    }

    async fn read_logs(
        &self,
        by: &Principal,
        name: &str,
        filter: &LogFilter,
    ) -> Result<(Vec<LogEntry>, u64, String), CoreError> {
        let name = self.authorize_on(by, Action::ReadFunction, name)?;
        if let Some(id) = &filter.request_id {
            check_request_id(id)?;
        }
        let limit = limit(filter.limit)?;
        let since_ms = since_ms(filter.since.as_deref())?;
        self.records.barrier().await;
        let store = self.store.clone();
        let request_id = filter.request_id.clone();
        let function = name.to_string();
        let page = blocking(move || {
            Ok(store.logs(&LogQuery {
                function: name.as_str(),
                request_id: request_id.as_deref(),
                since_ms,
                limit,
                max_bytes: MAX_LOG_ANSWER_BYTES,
            })?)
        })
        .await?;
        Ok((
            page.entries.iter().map(entry).collect(),
            page.last_id,
            function,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_milliseconds_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        assert_eq!(epoch_ms(t), 1_800_000_000_123);
        assert_eq!(from_epoch_ms(epoch_ms(t)), t);
        assert_eq!(from_epoch_ms(-5), UNIX_EPOCH - Duration::from_millis(5));
    }

    fn invocation(id: &str, started_at: SystemTime, logs: String) -> Invocation {
        Invocation {
            request_id: id.into(),
            function: "f".into(),
            version: "$LATEST".into(),
            caller: None,
            trigger: crate::Trigger::Sync,
            started_at,
            ended_at: started_at,
            status: InvocationStatus::Success,
            error_type: None,
            cold_start: false,
            queue_wait: Duration::ZERO,
            init_duration: None,
            duration: Duration::from_millis(1),
            max_memory_used_mb: 1,
            memory_size_mb: 128,
            response_bytes: 2,
            logs,
            event: None,
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

    #[test]
    fn request_ids_and_limits_are_checked() {
        assert!(check_request_id("6c0f4d1e-8a3b-4c2d-9e5f-0a1b2c3d4e5f").is_ok());
        for bad in ["", "a/b", "x y", &"a".repeat(65)] {
            assert!(check_request_id(bad).is_err(), "{bad}");
        }
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
    }
}
