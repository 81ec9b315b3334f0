//! Singletons: a chore (schedules, record pruning, the database's code collection) that
//! runs on one node of a cluster at a time.
//!
//! On PostgreSQL a singleton is a session-level advisory lock (`pg_try_advisory_lock`) held
//! by a connection of its own: it is released when the holder drops it, or when its session
//! ends (the node died, or lost the database), and then another node's next try takes it.
//! [`Singleton::held`] checks that the session is alive (one round trip). A store of its
//! own (SQLite) has one control plane: its singletons are always held.
//!
//! A singleton keeps two nodes from doing the same work at once; it is not what makes the
//! chores correct. For a moment two nodes may both think they hold one (a session that
//! ended but whose node has not checked yet), so every chore stays correct when run twice at
//! once: fires are guarded by the schedule's `through`, pruning and collection delete what
//! is already past its limit.

use std::sync::Mutex;
use std::time::Duration;

use crate::db::{Store, StoreError};

/// The first key of the two-key advisory locks of singletons ("skys"), apart from the
/// migrations' one-key lock (PostgreSQL keeps the two key spaces apart).
const SINGLETON_CLASS: i32 = 0x736b_7973;

/// A held singleton (see the module's doc); released when dropped.
pub struct Singleton {
    inner: Inner,
}

enum Inner {
    Local,
    /// The session holding the lock; `None` once found dead.
    Postgres(Box<Mutex<Option<postgres::Client>>>),
}

impl std::fmt::Debug for Singleton {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Local => "Singleton(local)",
            Inner::Postgres(_) => "Singleton(advisory lock)",
        })
    }
}

impl Store {
    /// Takes the singleton `name` if no other node holds it (`None`: another does; try again
    /// later). Always taken on a store of its own (SQLite).
    pub fn try_singleton(&self, name: &str) -> Result<Option<Singleton>, StoreError> {
        let Some(config) = self.pg_config() else {
            return Ok(Some(Singleton {
                inner: Inner::Local,
            }));
        };
        let mut config = config.clone();
        config.application_name(&format!("skyscale singleton {name}"));
        let mut client = config.connect(postgres::NoTls)?;
        let taken: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&SINGLETON_CLASS, &name],
            )?
            .get(0);
        if taken {
            Ok(Some(Singleton {
                inner: Inner::Postgres(Box::new(Mutex::new(Some(client)))),
            }))
        } else {
            crate::sql::close_client(client);
            Ok(None)
        }
    }
}

impl Singleton {
    /// Whether this node still holds it: on PostgreSQL, whether the session holding the lock
    /// is alive (one round trip, at most a few seconds). `false` is final: take it again
    /// with [`Store::try_singleton`].
    pub fn held(&self) -> bool {
        match &self.inner {
            Inner::Local => true,
            Inner::Postgres(m) => {
                let mut client = m.lock().unwrap_or_else(|p| p.into_inner());
                let alive = client
                    .as_mut()
                    .is_some_and(|c| c.is_valid(Duration::from_secs(5)).is_ok());
                if !alive {
                    if let Some(c) = client.take() {
                        crate::sql::close_client(c);
                    }
                }
                alive
            }
        }
    }
}

impl Drop for Singleton {
    fn drop(&mut self) {
        if let Inner::Postgres(m) = &mut self.inner {
            let client = m.get_mut().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(c) = client {
                // Ending the session releases the lock.
                crate::sql::close_client(c);
            }
        }
    }
}
