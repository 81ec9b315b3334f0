//! Singletons: on PostgreSQL one holder at a time across store handles (nodes), released
//! when dropped or when the holder's session ends; on SQLite (one control plane) always
//! held.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::{Backend, TestDb};

fn one_node_at_a_time_holds_a_singleton(db: &TestDb) {
    let (a, b) = (db.open(), db.open());
    let held = a.try_singleton("schedules").unwrap().unwrap();
    assert!(held.held());
    let other = b.try_singleton("schedules").unwrap();
    // Another name is another singleton.
    assert!(b.try_singleton("records").unwrap().unwrap().held());
    match db.backend {
        Backend::Sqlite => {
            // One control plane per database: every singleton is its own.
            assert!(other.unwrap().held());
        }
        Backend::Postgres => {
            assert!(other.is_none(), "two nodes hold one singleton");
            // Dropped: released, the other node takes it.
            drop(held);
            let taken = b.try_singleton("schedules").unwrap().unwrap();
            assert!(taken.held());
            assert!(a.try_singleton("schedules").unwrap().is_none());
            // The holder's session ends (its node lost the database): it no longer holds
            // it, and another node takes it.
            let killed: i64 = db
                .pg_client()
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = current_database() \
                     AND application_name = 'skyscale singleton schedules'",
                    &[],
                )
                .unwrap()
                .get(0);
            assert_eq!(killed, 1);
            assert!(!taken.held());
            // The server releases the lock as the terminated session exits (soon after the
            // signal): another node's try takes it within a moment.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let retaken = loop {
                if let Some(s) = a.try_singleton("schedules").unwrap() {
                    break s;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the lock was never released"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            };
            assert!(retaken.held());
        }
    }
}

store_tests!(one_node_at_a_time_holds_a_singleton);
