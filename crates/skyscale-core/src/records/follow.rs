//! Following a function's logs live: the backlog, then each entry as the writer stores it,
//! until the stream ends for one of the reasons in [`Followed`].

use std::sync::Arc;
use std::time::Duration;

use skyscale_store::LogEntry;
use skyscale_types::KeyId;
use tokio::sync::{broadcast, watch};

use super::queries::LogFilter;
use crate::auth::Principal;
use crate::keys::Keys;
use crate::{ControlPlane, CoreError};

/// What a follower gets next.
#[derive(Debug)]
pub enum Followed {
    Entry(Arc<LogEntry>),
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
    rx: broadcast::Receiver<Arc<LogEntry>>,
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
                    return Followed::Entry(row);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => return Followed::Skipped(n),
                Err(broadcast::error::RecvError::Closed) => return Followed::End,
            }
        }
    }
}

impl ControlPlane {
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
}
