//! The one task that writes records and logs, tells followers and prunes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use skyscale_store::{InvocationRecord, LogEntry, RecordTotals, Store};
use tokio::sync::{broadcast, mpsc};

use super::{Message, RecordSettings, BATCH_LINGER, BATCH_LOG_BYTES, BATCH_RECORDS};
use crate::singleton::ChoreLock;
use crate::{blocking, CoreError};

/// The writer task's state.
pub(super) struct Writer {
    store: Arc<Store>,
    settings: RecordSettings,
    queued_log_bytes: Arc<AtomicU64>,
    live: broadcast::Sender<Arc<LogEntry>>,
    /// What is stored; only this task writes, so it stays right without a lock.
    totals: RecordTotals,
}

impl Writer {
    pub(super) fn new(
        store: Arc<Store>,
        settings: RecordSettings,
        queued_log_bytes: Arc<AtomicU64>,
        live: broadcast::Sender<Arc<LogEntry>>,
    ) -> Self {
        Self {
            store,
            settings,
            queued_log_bytes,
            live,
            totals: RecordTotals::default(),
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let store = self.store.clone();
        match blocking(move || Ok(store.record_totals()?)).await {
            Ok(t) => self.totals = t,
            Err(e) => tracing::error!(error = %e, "reading the stored invocation totals"),
        }
        let mut prune = tokio::time::interval(self.settings.prune_interval);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // On a shared store one node prunes (see `singleton.rs`), at each tick, from the
        // totals of every node's records read afresh; alone, this writer's running totals
        // are exact and it prunes by size after each batch too.
        let lock = ChoreLock::new(self.store.clone(), "records");
        loop {
            tokio::select! {
                first = rx.recv() => match first {
                    Some(first) => {
                        let batch = self.take_batch(first, &mut rx).await;
                        self.write(batch).await;
                    }
                    None => break,
                },
                _ = prune.tick() => {
                    if self.store.is_shared() {
                        if lock.runs_here().await {
                            let store = self.store.clone();
                            match blocking(move || Ok(store.record_totals()?)).await {
                                Ok(t) => self.totals = t,
                                Err(e) => tracing::error!(error = %e, "reading the stored invocation totals"),
                            }
                            self.prune_by_age().await;
                            self.prune_by_size().await;
                        }
                    } else {
                        self.prune_by_age().await;
                    }
                }
            }
        }
    }

    /// `first` and what follows it, up to a batch: after a record, whatever arrives within
    /// `BATCH_LINGER` (one transaction for many invocations under load); but as soon as a
    /// flush arrives, someone is waiting, so only what is already queued joins it.
    async fn take_batch(&self, first: Message, rx: &mut mpsc::Receiver<Message>) -> Vec<Message> {
        let mut linger_until =
            matches!(first, Message::Record(_)).then(|| tokio::time::Instant::now() + BATCH_LINGER);
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match &m {
                Message::Record(inv) => {
                    let n = inv.logs.len() as u64;
                    self.queued_log_bytes.fetch_sub(n, Ordering::Relaxed);
                    bytes += n;
                }
                Message::Flush(_) => linger_until = None,
            }
            batch.push(m);
            if batch.len() >= BATCH_RECORDS || bytes >= BATCH_LOG_BYTES {
                break;
            }
            next = match rx.try_recv() {
                Ok(m) => Some(m),
                Err(_) => match linger_until {
                    Some(t) => tokio::time::timeout_at(t, rx.recv()).await.ok().flatten(),
                    None => None,
                },
            };
        }
        batch
    }

    async fn write(&mut self, batch: Vec<Message>) {
        let mut rows = Vec::with_capacity(batch.len());
        let mut acks = Vec::new();
        for m in batch {
            match m {
                Message::Record(inv) => rows.push((inv.record, inv.logs)),
                Message::Flush(ack) => acks.push(ack),
            }
        }
        if !rows.is_empty() {
            let store = self.store.clone();
            let written = blocking(move || {
                let refs: Vec<(&InvocationRecord, &str)> =
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
                            let _ = self.live.send(Arc::new(LogEntry {
                                id,
                                request_id: r.request_id,
                                function: r.function,
                                started_at: r.started_at,
                                bytes: text.len() as u64,
                                text,
                            }));
                        }
                    }
                    if !self.store.is_shared() {
                        self.prune_by_size().await;
                    }
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
        let pruned = blocking(move || Ok(store.prune_invocations_before(cutoff)?)).await;
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
