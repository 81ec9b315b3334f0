//! The cache epoch: every committed change of a cached row moves it, other writes do not;
//! on PostgreSQL a listener on another connection hears of a change made through another
//! store handle (another node). Against real SQLite and PostgreSQL databases.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::{new_function, some_code, Backend, TestDb};

use std::time::Duration;

use skyscale_store::{NewApiKey, NewEvent, Store};
use skyscale_types::{ApiKey, FunctionName};

/// Runs `change` and returns whether the epoch moved.
fn moves(s: &Store, change: impl FnOnce(&Store)) -> bool {
    let before = s.cache_epoch().unwrap();
    change(s);
    let after = s.cache_epoch().unwrap();
    assert!(after >= before, "the epoch went back: {before} -> {after}");
    after > before
}

fn every_change_of_a_cached_row_moves_the_epoch_and_nothing_else_does(db: &TestDb) {
    let s = db.open();
    let f = FunctionName::parse("epoch").unwrap();
    assert!(moves(&s, |s| {
        s.create_function(&new_function("epoch", some_code()))
            .unwrap();
    }));
    assert!(moves(&s, |s| {
        s.set_reserved_concurrency(&f, Some(3)).unwrap();
    }));
    assert!(moves(&s, |s| {
        s.publish_version(&f, None).unwrap();
    }));
    assert!(moves(&s, |s| {
        s.create_alias(&f, "live", Some(1), "", None).unwrap();
    }));
    let key = ApiKey::generate();
    assert!(moves(&s, |s| {
        s.insert_api_key(&NewApiKey {
            id: &key.id,
            secret_sha256: &"0".repeat(64),
            secret_sealed: b"sealed",
            role: "developer",
            functions: None,
            description: "",
        })
        .unwrap();
    }));
    assert!(moves(&s, |s| {
        s.revoke_api_key(&key.id).unwrap();
    }));
    // The queue is not cached: enqueueing an event leaves the epoch alone.
    assert!(!moves(&s, |s| {
        s.enqueue_event(&NewEvent {
            id: &uuid::Uuid::now_v7().to_string(),
            function: "epoch",
            qualifier: None,
            payload: b"{}",
            caller: None,
            idempotency: None,
        })
        .unwrap();
    }));
    // Deleting the function (its versions and aliases with it) moves it.
    assert!(moves(&s, |s| {
        s.delete_function(&f).unwrap();
    }));
    // A change that fails changes nothing, the epoch included.
    assert!(!moves(&s, |s| {
        assert!(s.set_reserved_concurrency(&f, Some(1)).is_err());
    }));
}

store_tests!(every_change_of_a_cached_row_moves_the_epoch_and_nothing_else_does);

/// SQLite has no listener: its one process invalidates its own caches.
#[test]
fn sqlite_has_no_listener() {
    let db = TestDb::new(Backend::Sqlite);
    assert!(db.open().listen_cache().unwrap().is_none());
}

/// A change committed through one node's store is heard by another node's listener, and
/// the epoch that node then reads has moved.
#[test]
fn another_node_hears_of_a_change_at_its_commit() {
    let db = TestDb::new(Backend::Postgres);
    let (a, b) = (db.open(), db.open());
    let mut listener = b.listen_cache().unwrap().expect("PostgreSQL listens");
    assert!(!listener.wait(Duration::from_millis(50)).unwrap());
    let before = b.cache_epoch().unwrap();
    a.create_function(&new_function("heard", some_code()))
        .unwrap();
    assert!(
        listener.wait(Duration::from_secs(5)).unwrap(),
        "no notification"
    );
    assert!(b.cache_epoch().unwrap() > before);
    // Consumed: nothing more is pending.
    assert!(!listener.wait(Duration::from_millis(50)).unwrap());
}
