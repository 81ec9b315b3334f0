#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::{create_function, TestDb};

use std::time::Duration;

use skyscale_store::{
    Enqueued, EventConfigRecord, EventConfigUpdate, EventEnd, EventFilter, EventState, Idempotency,
    InvocationRecord, NewEvent, Retry, StoreError,
};
use skyscale_types::invocation::{InvocationStatus, Trigger};
use skyscale_types::time::from_epoch_ms;
use skyscale_types::FunctionName;

fn event<'a>(id: &'a str, function: &'a str) -> NewEvent<'a> {
    NewEvent {
        id,
        function,
        qualifier: None,
        payload: b"{\"n\":1}",
        caller: Some("SKYKEY"),
        idempotency: None,
    }
}

const LEASE: Duration = Duration::from_secs(30);

fn an_enqueued_event_survives_reopening_and_is_claimed_once(db: &TestDb) {
    {
        let store = db.open();
        let out = store.enqueue_event(&event("e1", "f")).unwrap();
        assert_eq!(out, Enqueued::New { id: "e1".into() });
        assert!(matches!(
            store.enqueue_event(&event("e1", "f")),
            Err(StoreError::Exists(_))
        ));
    }
    let store = db.open();
    let got = store.event("e1").unwrap().unwrap();
    assert_eq!(got.state, EventState::Queued);
    assert_eq!(got.payload, b"{\"n\":1}");
    assert_eq!(got.caller.as_deref(), Some("SKYKEY"));
    assert!(!got.leased());
    let claimed = store.claim_events("a", 10, LEASE).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].lease_owner.as_deref(), Some("a"));
    assert!(claimed[0].leased());
    assert!(
        store.claim_events("b", 10, LEASE).unwrap().is_empty(),
        "a leased event is not claimed again"
    );
    assert!(
        !store.finish_event("e1", "b", EventEnd::Done, None).unwrap(),
        "only the owner ends it"
    );
    assert!(store.finish_event("e1", "a", EventEnd::Done, None).unwrap());
    assert!(store.event("e1").unwrap().is_none(), "a done event is gone");
}

fn an_expired_lease_puts_the_event_back_and_fences_the_old_owner(db: &TestDb) {
    let store = db.open();
    store.enqueue_event(&event("e1", "f")).unwrap();
    let first = store
        .claim_events("a", 10, Duration::from_millis(50))
        .unwrap();
    assert_eq!(first.len(), 1);
    std::thread::sleep(Duration::from_millis(80));
    let again = store.claim_events("b", 10, LEASE).unwrap();
    assert_eq!(
        again.len(),
        1,
        "the expired lease lets another owner claim it"
    );
    assert_eq!(
        store
            .renew_event_leases("a", &["e1".to_owned()], LEASE)
            .unwrap(),
        0,
        "the old owner cannot renew"
    );
    let retry = Retry {
        delay: Duration::ZERO,
        attempts: 1,
        throttles: 0,
        last_error: Some("x"),
    };
    assert!(!store.reschedule_event("e1", "a", &retry).unwrap());
    assert_eq!(
        store
            .renew_event_leases("b", &["e1".to_owned()], LEASE)
            .unwrap(),
        1
    );
    assert!(store.finish_event("e1", "b", EventEnd::Done, None).unwrap());
}

fn rescheduled_events_wait_for_their_time_and_keep_their_counts(db: &TestDb) {
    let store = db.open();
    store.enqueue_event(&event("e1", "f")).unwrap();
    store.claim_events("a", 10, LEASE).unwrap();
    let retry = Retry {
        delay: Duration::from_millis(300),
        attempts: 1,
        throttles: 0,
        last_error: Some("ValueError: boom"),
    };
    assert!(store.reschedule_event("e1", "a", &retry).unwrap());
    assert!(
        store.claim_events("a", 10, LEASE).unwrap().is_empty(),
        "not due yet"
    );
    assert!(store
        .events("f", EventFilter::Queued, 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.events("f", EventFilter::Retrying, 10).unwrap().len(),
        1
    );
    let queued = store.event("e1").unwrap().unwrap();
    assert_eq!(queued.attempts, 1);
    assert_eq!(queued.last_error.as_deref(), Some("ValueError: boom"));
    assert!(queued.next_at_ms > queued.now_ms);
    std::thread::sleep(Duration::from_millis(350));
    let due = store.claim_events("a", 10, LEASE).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    // A throttle keeps the attempts and the last error.
    let throttle = Retry {
        delay: Duration::ZERO,
        attempts: 1,
        throttles: 1,
        last_error: None,
    };
    assert!(store.reschedule_event("e1", "a", &throttle).unwrap());
    let e = store.event("e1").unwrap().unwrap();
    assert_eq!((e.attempts, e.throttles), (1, 1));
    assert_eq!(e.last_error.as_deref(), Some("ValueError: boom"));
}

fn claims_are_bounded_and_oldest_first(db: &TestDb) {
    let store = db.open();
    for i in 0..5 {
        store.enqueue_event(&event(&format!("e{i}"), "f")).unwrap();
    }
    assert_eq!(store.events("f", EventFilter::Queued, 10).unwrap().len(), 5);
    assert_eq!(store.events("f", EventFilter::Queued, 2).unwrap().len(), 2);
    assert!(store
        .events("f", EventFilter::Retrying, 10)
        .unwrap()
        .is_empty());
    let first = store.claim_events("a", 3, LEASE).unwrap();
    let ids: Vec<_> = first.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e0", "e1", "e2"]);
    let rest = store.claim_events("a", 3, LEASE).unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(store.release_all_event_leases().unwrap(), 5);
    assert_eq!(store.claim_events("b", 10, LEASE).unwrap().len(), 5);
}

fn an_idempotency_key_answers_the_first_event_within_its_window(db: &TestDb) {
    let store = db.open();
    let with_key = |id: &'static str, function: &'static str, window| NewEvent {
        idempotency: Some(Idempotency { key: "k1", window }),
        ..event(id, function)
    };
    let hour = Duration::from_secs(3600);
    assert_eq!(
        store.enqueue_event(&with_key("e1", "f", hour)).unwrap(),
        Enqueued::New { id: "e1".into() }
    );
    assert_eq!(
        store.enqueue_event(&with_key("e2", "f", hour)).unwrap(),
        Enqueued::Existing { id: "e1".into() }
    );
    assert!(store.event("e2").unwrap().is_none(), "nothing was enqueued");
    // The key belongs to one function.
    assert_eq!(
        store.enqueue_event(&with_key("e3", "g", hour)).unwrap(),
        Enqueued::New { id: "e3".into() }
    );
    // The key outlives its event.
    store.claim_events("a", 10, LEASE).unwrap();
    store.finish_event("e1", "a", EventEnd::Done, None).unwrap();
    assert_eq!(
        store
            .enqueue_event(&with_key("e4", "f", hour))
            .unwrap()
            .id(),
        "e1"
    );
    // After its window, it is free again.
    let short = Duration::from_millis(20);
    store
        .enqueue_event(&NewEvent {
            idempotency: Some(Idempotency {
                key: "k2",
                window: short,
            }),
            ..event("e5", "f")
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(store.prune_idempotency_keys().unwrap(), 1);
    let again = store
        .enqueue_event(&NewEvent {
            idempotency: Some(Idempotency {
                key: "k2",
                window: short,
            }),
            ..event("e6", "f")
        })
        .unwrap();
    assert_eq!(again, Enqueued::New { id: "e6".into() });
}

fn dead_letters_are_listed_redriven_and_deleted(db: &TestDb) {
    let store = db.open();
    for id in ["e1", "e2", "e3"] {
        store.enqueue_event(&event(id, "f")).unwrap();
    }
    store.claim_events("a", 10, LEASE).unwrap();
    let dead = EventEnd::Dead {
        reason: "RetriesExhausted",
        record: "{\"version\":\"1.0\"}",
        error: None,
        attempts: 3,
    };
    assert!(store.finish_event("e1", "a", dead, None).unwrap());
    assert!(store.finish_event("e2", "a", dead, None).unwrap());
    let e1 = store.event("e1").unwrap().unwrap();
    assert_eq!(e1.state, EventState::Dead);
    assert_eq!(e1.dead_reason.as_deref(), Some("RetriesExhausted"));
    assert_eq!(e1.record.as_deref(), Some("{\"version\":\"1.0\"}"));
    assert!(!e1.leased());
    let listed = store.events("f", EventFilter::Dead, 100).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(store.events("f", EventFilter::All, 100).unwrap().len(), 3);
    assert!(
        store.claim_events("b", 10, LEASE).unwrap().is_empty(),
        "dead letters are never claimed (e3 is still leased)"
    );
    let stats = store.queue_stats().unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].queued, stats[0].dead), (1, 2));
    // One redriven: due now, attempts and age start over.
    assert_eq!(store.redrive_events("f", Some("e1")).unwrap(), ["e1"]);
    let e1 = store.event("e1").unwrap().unwrap();
    assert_eq!(
        (e1.state, e1.attempts, e1.record),
        (EventState::Queued, 0, None)
    );
    assert!(
        store.redrive_events("f", Some("e3")).unwrap().is_empty(),
        "not dead"
    );
    assert!(
        store.redrive_events("g", Some("e2")).unwrap().is_empty(),
        "another function's"
    );
    assert!(
        !store.delete_dead_letter("f", "e1").unwrap(),
        "not dead any more"
    );
    assert!(store.delete_dead_letter("f", "e2").unwrap());
    assert!(store.event("e2").unwrap().is_none());
    assert_eq!(store.claim_events("b", 10, LEASE).unwrap().len(), 1);
}

fn finishing_forwards_the_record_in_the_same_transaction(db: &TestDb) {
    let store = db.open();
    store.enqueue_event(&event("e1", "f")).unwrap();
    store.enqueue_event(&event("d1", "dest")).unwrap();
    store.claim_events("a", 10, LEASE).unwrap();
    // A forward that cannot be enqueued (its id is taken) leaves the source as it was.
    let clash = NewEvent {
        payload: b"{}",
        ..event("d1", "dest")
    };
    assert!(store
        .finish_event("e1", "a", EventEnd::Done, Some(&clash))
        .is_err());
    assert!(store.event("e1").unwrap().is_some(), "nothing half-applied");
    let forward = NewEvent {
        payload: b"{\"record\":1}",
        idempotency: Some(Idempotency {
            key: "destination:e1",
            window: Duration::from_secs(60),
        }),
        ..event("d2", "dest")
    };
    assert!(store
        .finish_event("e1", "a", EventEnd::Done, Some(&forward))
        .unwrap());
    assert!(store.event("e1").unwrap().is_none());
    assert_eq!(
        store.event("d2").unwrap().unwrap().payload,
        b"{\"record\":1}"
    );
}

fn deleting_a_function_turns_its_queued_events_into_dead_letters_and_drops_its_configs(
    db: &TestDb,
) {
    let store = db.open();
    let f = create_function(&store, "f", None);
    store.enqueue_event(&event("e1", "f")).unwrap();
    store
        .put_event_config(&EventConfigRecord {
            function: f.clone(),
            qualifier: "$LATEST".into(),
            max_retries: Some(0),
            max_age_s: None,
            on_success: None,
            on_failure: None,
            last_modified_ms: 0,
        })
        .unwrap();
    store.delete_function(&f).unwrap();
    let e1 = store.event("e1").unwrap().unwrap();
    assert_eq!(e1.state, EventState::Dead);
    assert_eq!(e1.dead_reason.as_deref(), Some("FunctionDeleted"));
    assert!(store.event_configs("f").unwrap().is_empty());
}

fn event_invoke_configs_are_put_updated_listed_and_deleted(db: &TestDb) {
    let store = db.open();
    let f = create_function(&store, "f", None);
    let base = EventConfigRecord {
        function: f.clone(),
        qualifier: "$LATEST".into(),
        max_retries: Some(1),
        max_age_s: Some(120),
        on_success: Some("arn:aws:lambda:us-east-1:000000000000:function:ok".into()),
        on_failure: None,
        last_modified_ms: 0,
    };
    let put = store.put_event_config(&base).unwrap();
    assert!(put.last_modified_ms > 0);
    assert_eq!(put.max_retries, Some(1));
    // Put replaces everything.
    let replaced = store
        .put_event_config(&EventConfigRecord {
            max_retries: None,
            on_success: None,
            ..base.clone()
        })
        .unwrap();
    assert_eq!((replaced.max_retries, replaced.on_success), (None, None));
    // Update changes only what it names.
    let updated = store
        .update_event_config(
            &f,
            "$LATEST",
            &EventConfigUpdate {
                max_retries: Some(Some(0)),
                on_failure: Some(Some("arn:f".into())),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(updated.max_retries, Some(0));
    assert_eq!(updated.max_age_s, Some(120));
    assert_eq!(updated.on_failure.as_deref(), Some("arn:f"));
    assert!(matches!(
        store.update_event_config(&f, "live", &EventConfigUpdate::default()),
        Err(StoreError::NotFound(_))
    ));
    store
        .put_event_config(&EventConfigRecord {
            qualifier: "live".into(),
            ..base.clone()
        })
        .unwrap();
    let all = store.event_configs("f").unwrap();
    let qualifiers: Vec<_> = all.iter().map(|c| c.qualifier.as_str()).collect();
    assert_eq!(qualifiers, ["$LATEST", "live"]);
    assert_eq!(
        store.event_config("f", "live").unwrap().unwrap().max_age_s,
        Some(120)
    );
    assert!(store.delete_event_config("f", "live").unwrap());
    assert!(!store.delete_event_config("f", "live").unwrap());
    assert!(matches!(
        store.put_event_config(&EventConfigRecord {
            function: FunctionName::parse("nope").unwrap(),
            ..base
        }),
        Err(StoreError::FunctionNotFound(_))
    ));
}

fn invocation_records_name_their_event_and_attempt(db: &TestDb) {
    let store = db.open();
    let row = InvocationRecord {
        request_id: "r1".into(),
        function: "f".into(),
        version: "$LATEST".into(),
        caller: None,
        trigger: Trigger::Event,
        started_at: from_epoch_ms(1),
        ended_at: from_epoch_ms(2),
        status: InvocationStatus::Success,
        error_type: None,
        cold_start: false,
        init_type: Default::default(),
        queue_wait: Duration::ZERO,
        init_duration: None,
        duration: Duration::from_micros(1),
        max_memory_used_mb: 1,
        memory_size_mb: 128,
        response_bytes: 0,
        event: Some(("e1".into(), 3)),
    };
    store.insert_invocations(&[(&row, "")]).unwrap();
    assert_eq!(
        store.invocation("r1").unwrap().unwrap().event,
        Some(("e1".into(), 3))
    );
}

store_tests!(
    an_enqueued_event_survives_reopening_and_is_claimed_once,
    an_expired_lease_puts_the_event_back_and_fences_the_old_owner,
    rescheduled_events_wait_for_their_time_and_keep_their_counts,
    claims_are_bounded_and_oldest_first,
    an_idempotency_key_answers_the_first_event_within_its_window,
    dead_letters_are_listed_redriven_and_deleted,
    finishing_forwards_the_record_in_the_same_transaction,
    deleting_a_function_turns_its_queued_events_into_dead_letters_and_drops_its_configs,
    event_invoke_configs_are_put_updated_listed_and_deleted,
    invocation_records_name_their_event_and_attempt
);
