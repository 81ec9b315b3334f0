//! What only a shared store (PostgreSQL) has to get right: several store handles (nodes)
//! at once on one database, and a server that closes connections. Each test runs on a fresh
//! database of its own (see `common`); without `SKYSCALE_TEST_DATABASE_URL` they fail and say
//! to run `scripts/test-postgres`.
#![allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly by design

mod common;
use common::{create_function, some_code, Backend, TestDb};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use skyscale_store::{NewApiKey, NewEvent, Revocation, Store};
use skyscale_types::ApiKey;

fn pg() -> TestDb {
    TestDb::new(Backend::Postgres)
}

/// Terminates every other session on the test's database (the store's connections), as a
/// restarted server or a network cut would.
fn kill_sessions(db: &TestDb) -> i64 {
    let mut c = db.pg_client();
    let row = c
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    row.get(0)
}

#[test]
fn two_nodes_claiming_at_once_never_claim_the_same_event() {
    let db = pg();
    let setup = db.open();
    let ids: Vec<String> = (0..300).map(|i| format!("e{i:04}")).collect();
    for id in &ids {
        setup
            .enqueue_event(&NewEvent {
                id,
                function: "f",
                qualifier: None,
                payload: b"{}",
                caller: None,
                idempotency: None,
            })
            .unwrap();
    }
    let barrier = Arc::new(Barrier::new(3));
    let nodes: Vec<_> = (0..3)
        .map(|n| {
            let store = db.open();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                loop {
                    // A long lease: nothing is claimed twice because a lease ran out.
                    let got = store
                        .claim_events(&format!("node-{n}"), 7, Duration::from_secs(600))
                        .unwrap();
                    if got.is_empty() {
                        break;
                    }
                    assert!(got
                        .iter()
                        .all(|e| e.lease_owner.as_deref() == Some(format!("node-{n}").as_str())));
                    mine.extend(got.into_iter().map(|e| e.id));
                }
                mine
            })
        })
        .collect();
    let claimed: Vec<Vec<String>> = nodes.into_iter().map(|t| t.join().unwrap()).collect();
    let total: usize = claimed.iter().map(Vec::len).sum();
    let distinct: BTreeSet<&String> = claimed.iter().flatten().collect();
    assert_eq!(total, ids.len(), "every event claimed exactly once in all");
    assert_eq!(distinct.len(), ids.len(), "no event claimed by two nodes");
    assert!(
        claimed.iter().filter(|c| !c.is_empty()).count() >= 2,
        "the nodes claimed side by side: {:?}",
        claimed.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn nodes_starting_together_migrate_once() {
    let db = pg();
    let url = db.url();
    let barrier = Arc::new(Barrier::new(4));
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Store::connect(&url).map(|_| ())
            })
        })
        .collect();
    for s in starts {
        s.join().unwrap().unwrap();
    }
    let mut c = db.pg_client();
    let versions: Vec<i64> = c
        .query("SELECT version FROM schema_version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        vec![skyscale_store::SCHEMA_VERSION],
        "one row, at the last migration"
    );
    // The schema works after all that.
    let store = db.open();
    create_function(&store, "after", some_code());
    assert_eq!(store.list_functions().unwrap().len(), 1);
}

#[test]
fn a_newer_schema_is_refused() {
    let db = pg();
    drop(db.open());
    db.pg_client()
        .batch_execute("UPDATE schema_version SET version = 999")
        .unwrap();
    match Store::connect(&db.url()) {
        Err(skyscale_store::StoreError::TooNew { found: 999, known }) => assert!(known < 999),
        Err(e) => panic!("expected TooNew, got {e}"),
        Ok(_) => panic!("a database from a newer build was opened"),
    }
}

#[test]
fn the_store_reconnects_after_the_server_closes_its_connections() {
    let db = pg();
    let store = db.open();
    let name = create_function(&store, "survivor", some_code());

    // A transaction begun on a closed connection begins again on a new one: no error.
    assert!(kill_sessions(&db) >= 1);
    let tags = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
    store.tag_function(&name, &tags).unwrap();
    assert_eq!(store.tags(&name).unwrap(), tags);

    // A connection that sat idle is checked before use: a server restarted meanwhile costs
    // no failed operation, and statements prepared on the old connection are prepared
    // again on the new one (this one was prepared just before).
    assert!(store.get_function(&name).unwrap().is_some());
    assert!(kill_sessions(&db) >= 1);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(store.get_function(&name).unwrap().is_some());
    assert_eq!(store.list_functions().unwrap().len(), 1);

    // A single statement sent on a connection closed under it may fail (it is not retried:
    // it may have been applied), and the next operation runs on a new connection.
    assert!(kill_sessions(&db) >= 1);
    let _maybe_failed = store.get_function(&name);
    assert!(store.get_function(&name).unwrap().is_some());
    // The other roles' connections, idle since the store opened, are checked before use and
    // come back without an error.
    store
        .enqueue_event(&NewEvent {
            id: "after-restart",
            function: "survivor",
            qualifier: None,
            payload: b"{}",
            caller: None,
            idempotency: None,
        })
        .unwrap();
    let claimed = store
        .claim_events("node", 10, Duration::from_secs(30))
        .unwrap();
    assert_eq!(claimed.len(), 1);
}

#[test]
fn the_last_admin_key_survives_concurrent_revocations_from_two_nodes() {
    for round in 0..5 {
        // Two admin keys, revoked at once from two nodes: one of them must stay.
        let db = pg();
        let (a, b) = (db.open(), db.open());
        let keys: Vec<ApiKey> = (0..2)
            .map(|_| {
                let key = ApiKey::generate();
                a.insert_api_key(&NewApiKey {
                    id: &key.id,
                    secret_sha256: &"0".repeat(64),
                    secret_sealed: b"sealed",
                    role: "admin",
                    functions: None,
                    description: "",
                })
                .unwrap();
                key
            })
            .collect();
        let barrier = Arc::new(Barrier::new(2));
        let outcomes: Vec<Revocation> = [(a, keys[0].id.clone()), (b, keys[1].id.clone())]
            .into_iter()
            .map(|(store, id)| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    store.revoke_api_key(&id).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let revoked = outcomes
            .iter()
            .filter(|o| matches!(o, Revocation::Revoked(_)))
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Revocation::LastAdmin))
            .count();
        assert_eq!(
            (revoked, refused),
            (1, 1),
            "round {round}: one revocation passes, the other finds the last admin: {outcomes:?}"
        );
        assert_eq!(db.open().count_active_api_keys().unwrap(), 1);
    }
}

#[test]
fn versions_published_from_two_nodes_at_once_get_distinct_numbers() {
    use skyscale_store::FunctionUpdate;
    let db = pg();
    let setup = db.open();
    let name = create_function(&setup, "versioned", some_code());
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|n| {
            let (store, name, barrier) = (db.open(), name.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut numbers = Vec::new();
                for i in 0..10 {
                    // A change, then a publish: each publish has something new to snapshot.
                    store
                        .update_function(
                            &name,
                            &FunctionUpdate {
                                environment: Some(BTreeMap::from([(
                                    "N".to_owned(),
                                    format!("{n}-{i}"),
                                )])),
                                ..FunctionUpdate::default()
                            },
                        )
                        .unwrap();
                    let (v, _) = store.publish_version(&name, None).unwrap();
                    numbers.push(v.version.unwrap());
                }
                numbers
            })
        })
        .collect();
    let all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let listed: Vec<u64> = setup
        .list_versions(&name)
        .unwrap()
        .iter()
        .map(|v| v.version.unwrap())
        .collect();
    let distinct: BTreeSet<u64> = listed.iter().copied().collect();
    assert_eq!(distinct.len(), listed.len(), "no number given twice");
    assert!(all.iter().all(|n| distinct.contains(n)));
    assert_eq!(listed, (1..=listed.len() as u64).collect::<Vec<_>>());
}
