//! Cluster membership (workers, generations, leases on the database's clock, API nodes),
//! against real SQLite and PostgreSQL databases.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::TestDb;

use std::time::Duration;

use skyscale_store::{WarmKey, WorkerRow, WorkerStatus};

fn generations_only_grow_and_fence_the_old_one(db: &TestDb) {
    let s = db.open();
    let status = WorkerStatus {
        sandboxes: 2,
        busy: 1,
        load: 0.5,
        warm: vec![WarmKey {
            function: "f".into(),
            revision: 3,
            version: None,
            idle: 1,
        }],
    };
    let lease = Duration::from_secs(3);
    let a = s
        .register_worker("127.0.0.2:9000", "a", 8, lease, &status)
        .unwrap();
    let b = s
        .register_worker("127.0.0.3:9000", "b", 8, lease, &status)
        .unwrap();
    assert!(b.generation > a.generation);
    assert!(s
        .renew_worker("127.0.0.2:9000", a.generation, lease, &status)
        .unwrap()
        .is_some());
    // A restart at the same address: a new generation; the old one can no longer renew.
    let a2 = s
        .register_worker("127.0.0.2:9000", "a", 8, lease, &WorkerStatus::default())
        .unwrap();
    assert!(a2.generation > b.generation);
    assert_eq!(
        s.renew_worker("127.0.0.2:9000", a.generation, lease, &status)
            .unwrap(),
        None
    );
    let live = s.live_workers().unwrap();
    assert_eq!(live.len(), 2);
    assert_eq!(live[0].generation, a2.generation);
    assert_eq!(live[1].status, status);
    assert!(live.iter().all(WorkerRow::is_live));
    // A released lease is over: not live, and it cannot be renewed.
    assert!(s.release_worker("127.0.0.3:9000", b.generation).unwrap());
    assert_eq!(s.live_workers().unwrap().len(), 1);
    assert_eq!(
        s.renew_worker("127.0.0.3:9000", b.generation, lease, &status)
            .unwrap(),
        None
    );
    let all = s.all_workers().unwrap();
    assert_eq!(all.len(), 2);
    assert!(!all[1].is_live());
}

fn a_lapsed_lease_cannot_be_renewed(db: &TestDb) {
    let s = db.open();
    let st = WorkerStatus::default();
    let w = s
        .register_worker("127.0.0.2:9000", "a", 1, Duration::from_millis(20), &st)
        .unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert!(s.live_workers().unwrap().is_empty());
    assert_eq!(
        s.renew_worker("127.0.0.2:9000", w.generation, Duration::from_secs(3), &st)
            .unwrap(),
        None
    );
}

fn generations_are_never_reused_across_stores(db: &TestDb) {
    // Two nodes of one database register at once: every generation distinct.
    let stores: Vec<_> = (0..2).map(|_| db.open()).collect();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..10 {
        let s = &stores[i % 2];
        let g = s
            .register_worker(
                &format!("127.0.0.{}:9000", 2 + i % 3),
                "w",
                4,
                Duration::from_secs(3),
                &WorkerStatus::default(),
            )
            .unwrap()
            .generation;
        assert!(seen.insert(g), "generation {g} handed out twice");
        assert!(seen.iter().all(|&o| o <= g), "{seen:?}");
    }
}

fn api_nodes_are_listed_while_seen(db: &TestDb) {
    let s = db.open();
    s.touch_api_node("n1", "host-a", "127.0.0.1:8080").unwrap();
    s.touch_api_node("n1", "host-a", "127.0.0.1:8080").unwrap();
    s.touch_api_node("n2", "host-b", "127.0.0.1:8081").unwrap();
    let nodes = s.api_nodes(Duration::from_secs(10)).unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n.last_seen_ms <= n.now_ms));
}

fn a_home_moves_only_when_its_holder_lapsed(db: &TestDb) {
    let s = db.open();
    let st = WorkerStatus::default();
    let short = Duration::from_millis(300);
    let a = s
        .register_worker("127.0.0.2:9000", "a", 4, short, &st)
        .unwrap();
    let b = s
        .register_worker("127.0.0.3:9000", "b", 4, Duration::from_secs(30), &st)
        .unwrap();
    assert!(s.claim_home("f", "127.0.0.2:9000", a.generation).unwrap());
    // Claiming again is a no-op success; another live worker is refused.
    assert!(s.claim_home("f", "127.0.0.2:9000", a.generation).unwrap());
    assert!(!s.claim_home("f", "127.0.0.3:9000", b.generation).unwrap());
    assert_eq!(
        s.live_homes().unwrap(),
        vec![("f".to_owned(), "127.0.0.2:9000".to_owned(), a.generation)]
    );
    // Its holder's lease runs out: no live home, and another worker may take it.
    std::thread::sleep(Duration::from_millis(400));
    assert!(s.live_homes().unwrap().is_empty());
    assert!(s.claim_home("f", "127.0.0.3:9000", b.generation).unwrap());
    // The old holder, registered again, cannot take it back while b is live.
    let a2 = s
        .register_worker("127.0.0.2:9000", "a", 4, Duration::from_secs(30), &st)
        .unwrap();
    assert!(!s.claim_home("f", "127.0.0.2:9000", a2.generation).unwrap());
    assert!(s.claim_home("g", "127.0.0.2:9000", a2.generation).unwrap());
    let mut homes = s.live_homes().unwrap();
    homes.sort();
    assert_eq!(
        homes,
        vec![
            ("f".to_owned(), "127.0.0.3:9000".to_owned(), b.generation),
            ("g".to_owned(), "127.0.0.2:9000".to_owned(), a2.generation),
        ]
    );
}

store_tests!(
    a_home_moves_only_when_its_holder_lapsed,
    generations_only_grow_and_fence_the_old_one,
    a_lapsed_lease_cannot_be_renewed,
    generations_are_never_reused_across_stores,
    api_nodes_are_listed_while_seen
);
