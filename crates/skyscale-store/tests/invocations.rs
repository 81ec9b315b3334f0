#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::TestDb;

use std::time::{Duration, SystemTime};

use skyscale_store::{InvocationQuery, InvocationRecord, LogQuery, RecordTotals};
use skyscale_types::invocation::{InitType, InvocationStatus, Trigger};
use skyscale_types::time::from_epoch_ms;

fn inv(id: &str, function: &str, started_at_ms: u64, status: InvocationStatus) -> InvocationRecord {
    InvocationRecord {
        request_id: id.into(),
        function: function.into(),
        version: "$LATEST".into(),
        caller: Some("SKYKEY".into()),
        trigger: Trigger::Sync,
        started_at: from_epoch_ms(started_at_ms),
        ended_at: from_epoch_ms(started_at_ms + 5),
        status,
        error_type: (status != InvocationStatus::Success).then(|| "ValueError".into()),
        cold_start: started_at_ms == 1000,
        init_type: if id == "b" {
            InitType::SnapStart
        } else {
            InitType::OnDemand
        },
        queue_wait: Duration::from_micros(12),
        init_duration: (started_at_ms == 1000).then_some(Duration::from_millis(120)),
        duration: Duration::from_micros(4_321),
        max_memory_used_mb: 30,
        memory_size_mb: 128,
        response_bytes: 17,
        event: (id == "b").then(|| ("ev1".into(), 2)),
    }
}

fn at(ms: u64) -> SystemTime {
    from_epoch_ms(ms)
}

fn records_and_logs_are_written_queried_and_survive_reopening(db: &TestDb) {
    let store = db.open();
    let a = inv("a", "f", 1000, InvocationStatus::Success);
    let b = inv("b", "f", 2000, InvocationStatus::FunctionError);
    let c = inv("c", "g", 3000, InvocationStatus::Success);
    let t = inv("t", "f", 4000, InvocationStatus::Throttled);
    let ids = store
        .insert_invocations(&[(&a, "log a\n"), (&b, "log b\n"), (&c, "log c\n"), (&t, "")])
        .unwrap();
    assert!(
        matches!(ids[..], [Some(_), Some(_), Some(_), None]),
        "{ids:?}"
    );
    // A request id is recorded once.
    assert_eq!(store.insert_invocations(&[(&a, "again")]).unwrap(), [None]);

    assert_eq!(store.invocation("b").unwrap(), Some(b.clone()));
    assert_eq!(store.invocation("nope").unwrap(), None);
    let q = |status, since: Option<u64>, limit| InvocationQuery {
        function: "f",
        status,
        since: since.map(at),
        limit,
    };
    let ids =
        |rows: Vec<InvocationRecord>| rows.into_iter().map(|r| r.request_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.invocations(&q(None, None, 10)).unwrap()),
        ["t", "b", "a"]
    );
    assert_eq!(ids(store.invocations(&q(None, None, 1)).unwrap()), ["t"]);
    assert_eq!(
        ids(store
            .invocations(&q(Some(InvocationStatus::FunctionError), None, 10))
            .unwrap()),
        ["b"]
    );
    assert_eq!(
        ids(store.invocations(&q(None, Some(2000), 10)).unwrap()),
        ["t", "b"]
    );

    let page = store
        .logs(&LogQuery {
            function: "f",
            request_id: None,
            since: None,
            limit: 10,
            max_bytes: 0,
        })
        .unwrap();
    let texts: Vec<_> = page.entries.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["log a\n", "log b\n"], "oldest first");
    assert_eq!(page.last_id, 3, "the newest log of any function");
    assert_eq!(page.entries[1].bytes, 6);
    let one = store
        .logs(&LogQuery {
            function: "f",
            request_id: Some("b"),
            since: None,
            limit: 1,
            max_bytes: 0,
        })
        .unwrap();
    assert_eq!(one.entries.len(), 1);
    assert_eq!(one.entries[0].request_id, "b");
    // Another function's invocation is not this function's.
    let other = store
        .logs(&LogQuery {
            function: "f",
            request_id: Some("c"),
            since: None,
            limit: 1,
            max_bytes: 0,
        })
        .unwrap();
    assert!(other.entries.is_empty());

    drop(store);
    let store = db.open();
    assert_eq!(store.invocation("a").unwrap(), Some(a));
    assert_eq!(
        store.record_totals().unwrap(),
        RecordTotals {
            records: 4,
            logs: 3,
            log_bytes: 18
        }
    );
}

fn pruning_goes_oldest_first(db: &TestDb) {
    let store = db.open();
    let rows: Vec<_> = (0..10)
        .map(|i| {
            inv(
                &format!("r{i}"),
                "f",
                1000 + i * 1000,
                InvocationStatus::Success,
            )
        })
        .collect();
    let text = "x".repeat(100);
    let batch: Vec<_> = rows.iter().map(|r| (r, text.as_str())).collect();
    store.insert_invocations(&batch).unwrap();

    // By size: freeing 250 bytes takes the three oldest logs, records stay.
    let pruned = store.prune_oldest_logs(250).unwrap();
    assert_eq!((pruned.logs, pruned.log_bytes), (3, 300));
    let totals = store.record_totals().unwrap();
    assert_eq!(
        (totals.records, totals.logs, totals.log_bytes),
        (10, 7, 700)
    );
    let page = store
        .logs(&LogQuery {
            function: "f",
            limit: 100,
            ..LogQuery::default()
        })
        .unwrap();
    assert_eq!(page.entries[0].request_id, "r3");
    // A byte bound keeps the newest that fit, and always the newest one.
    let fit = |max_bytes| {
        let page = store
            .logs(&LogQuery {
                function: "f",
                limit: 100,
                max_bytes,
                ..LogQuery::default()
            })
            .unwrap();
        page.entries
            .into_iter()
            .map(|e| e.request_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(fit(250), ["r8", "r9"]);
    assert_eq!(fit(10), ["r9"]);

    // By count: the two oldest records.
    assert_eq!(store.prune_oldest_invocations(2).unwrap().records, 2);
    assert_eq!(store.invocation("r1").unwrap(), None);
    assert!(store.invocation("r2").unwrap().is_some());

    // By age: everything that started before 6000 ms, records and logs.
    let pruned = store.prune_invocations_before(at(6000)).unwrap();
    assert_eq!((pruned.records, pruned.logs, pruned.log_bytes), (3, 2, 200));
    let totals = store.record_totals().unwrap();
    assert_eq!((totals.records, totals.logs, totals.log_bytes), (5, 5, 500));
    assert_eq!(store.prune_oldest_logs(10_000).unwrap().logs, 5);
    assert_eq!(store.record_totals().unwrap().log_bytes, 0);
}

/// Records are written on their own connection while functions change on the main one: a
/// read-then-write transaction must wait for the other writer, never fail with "database
/// is locked" (a deferred transaction cannot wait when it upgrades to a write).
fn function_writes_wait_for_record_batches_instead_of_failing(db: &TestDb) {
    use skyscale_store::{FunctionUpdate, NewFunction};
    use skyscale_types::{FunctionName, Handler, MemoryMb, Runtime, TimeoutSecs};
    let store = db.open();
    let store = std::sync::Arc::new(store);
    let name = FunctionName::parse("busy").unwrap();
    store
        .create_function(&NewFunction {
            name: name.clone(),
            runtime: Runtime::parse("python3.11").unwrap(),
            handler: Handler::parse("handler.handler").unwrap(),
            memory: MemoryMb::DEFAULT,
            timeout: TimeoutSecs::DEFAULT,
            environment: Default::default(),
            description: String::new(),
            code: None,
            network: false,
            ephemeral_mb: 512,
            layers: Vec::new(),
            snap_start: Default::default(),
        })
        .unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for batch in 0..200 {
                let rows: Vec<InvocationRecord> = (0..50)
                    .map(|i| {
                        inv(
                            &format!("r{batch}-{i}"),
                            "busy",
                            1000 + i,
                            InvocationStatus::Success,
                        )
                    })
                    .collect();
                let with_logs: Vec<(&InvocationRecord, &str)> =
                    rows.iter().map(|r| (r, "a log line\n")).collect();
                store.insert_invocations(&with_logs).unwrap();
            }
        })
    };
    for i in 0..200 {
        let update = FunctionUpdate {
            description: Some(format!("update {i}")),
            ..FunctionUpdate::default()
        };
        store
            .update_function(&name, &update)
            .unwrap_or_else(|e| panic!("update {i} failed while records were written: {e}"));
    }
    writer.join().unwrap();
}

store_tests!(
    records_and_logs_are_written_queried_and_survive_reopening,
    pruning_goes_oldest_first,
    function_writes_wait_for_record_batches_instead_of_failing
);
