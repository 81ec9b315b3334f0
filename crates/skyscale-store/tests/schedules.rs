#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::{create_function, TestDb};

use std::time::Duration;

use skyscale_store::{
    Enqueued, EventFilter, Fire, Fired, Idempotency, NewEvent, ScheduleFields, StoreError, Through,
};
use skyscale_types::schedules::{MissedFires, ScheduleState};
use skyscale_types::FunctionName;

fn fields(function: &str) -> ScheduleFields<'_> {
    ScheduleFields {
        function,
        qualifier: None,
        expression: "rate(2 seconds)",
        timezone: "UTC",
        payload: None,
        state: ScheduleState::Enabled,
        missed: MissedFires::RunOnce,
        anchor_ms: 1_000,
        through: Through::Keep,
        caller: Some("SKYKEY"),
    }
}

fn event<'a>(id: &'a str, key: &'a str) -> NewEvent<'a> {
    NewEvent {
        id,
        function: "f",
        qualifier: None,
        payload: b"{}",
        caller: Some("SKYKEY"),
        idempotency: Some(Idempotency {
            key,
            window: Duration::from_secs(3600),
        }),
    }
}

fn create_get_list_update_delete(db: &TestDb) {
    let store = db.open();
    create_function(&store, "f", None);
    let s = store
        .create_schedule("id1", "nightly", &fields("f"))
        .unwrap();
    assert_eq!(
        (s.name.as_str(), s.revision, s.state, s.through_ms),
        ("nightly", 1, ScheduleState::Enabled, None)
    );
    // Names are unique; the function must exist.
    assert!(matches!(
        store.create_schedule("id2", "nightly", &fields("f")),
        Err(StoreError::Exists(m)) if m.contains("schedule nightly already exists")
    ));
    assert!(matches!(
        store.create_schedule("id3", "other", &fields("nope")),
        Err(StoreError::FunctionNotFound(f)) if f == "nope"
    ));
    let mut paused = fields("f");
    paused.state = ScheduleState::Paused;
    paused.missed = MissedFires::Skip;
    let u = store.update_schedule("nightly", 1, &paused).unwrap();
    assert_eq!(
        (u.revision, u.state, u.missed),
        (2, ScheduleState::Paused, MissedFires::Skip)
    );
    // A change made from an old read is refused.
    assert!(matches!(
        store.update_schedule("nightly", 1, &fields("f")),
        Err(StoreError::InUse(_))
    ));
    assert!(matches!(
        store.update_schedule("gone", 1, &fields("f")),
        Err(StoreError::NotFound(_))
    ));
    store
        .create_schedule("id4", "a-first", &fields("f"))
        .unwrap();
    let names: Vec<String> = store
        .schedules(false)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a-first", "nightly"]);
    let enabled: Vec<String> = store
        .schedules(true)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(enabled, ["a-first"]);
    assert!(store.delete_schedule("nightly").unwrap());
    assert!(!store.delete_schedule("nightly").unwrap());
    assert!(store.schedule("nightly").unwrap().is_none());
}

fn a_slot_fires_once_with_its_event_in_one_transaction(db: &TestDb) {
    {
        let store = db.open();
        create_function(&store, "f", None);
        let s = store.create_schedule("sid", "s", &fields("f")).unwrap();
        let fire = Fire {
            schedule_id: "sid",
            through_before: None,
            revision: s.revision,
            slot_ms: 3_000,
            event: Some(event("e1", "schedule:sid:3000")),
        };
        assert_eq!(
            store.fire_schedule(&fire).unwrap(),
            Fired::Done(Some(Enqueued::New { id: "e1".into() }))
        );
        // The same fire again (a second firer with the same read): nothing.
        let again = Fire {
            event: Some(event("e2", "schedule:sid:3000")),
            ..fire
        };
        assert_eq!(store.fire_schedule(&again).unwrap(), Fired::Stale);
        // An older slot after a newer one: nothing.
        let older = Fire {
            through_before: Some(3_000),
            slot_ms: 3_000,
            event: Some(event("e3", "schedule:sid:3000b")),
            ..fire
        };
        assert_eq!(store.fire_schedule(&older).unwrap(), Fired::Stale);
        // Passing a slot over moves `through` but not `last_fired`, and enqueues nothing.
        let skip = Fire {
            through_before: Some(3_000),
            slot_ms: 5_000,
            event: None,
            ..fire
        };
        assert_eq!(store.fire_schedule(&skip).unwrap(), Fired::Done(None));
    }
    // Reopened (a restart): the bookkeeping and the one event are there.
    let store = db.open();
    let s = store.schedule("s").unwrap().unwrap();
    assert_eq!((s.through_ms, s.last_fired_ms), (Some(5_000), Some(3_000)));
    let events = store.events("f", EventFilter::All, 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "e1");
    // A changed schedule (another revision) or a paused one does not fire.
    let mut paused = fields("f");
    paused.state = ScheduleState::Paused;
    let p = store.update_schedule("s", s.revision, &paused).unwrap();
    let fire = Fire {
        schedule_id: "sid",
        through_before: Some(5_000),
        revision: s.revision,
        slot_ms: 7_000,
        event: Some(event("e4", "schedule:sid:7000")),
    };
    assert_eq!(store.fire_schedule(&fire).unwrap(), Fired::Stale);
    let fire = Fire {
        revision: p.revision,
        ..fire
    };
    assert_eq!(store.fire_schedule(&fire).unwrap(), Fired::Stale);
    assert_eq!(store.events("f", EventFilter::All, 10).unwrap().len(), 1);
}

fn an_update_keeps_what_a_fire_moved_unless_told(db: &TestDb) {
    let store = db.open();
    create_function(&store, "f", None);
    let mut f = fields("f");
    f.through = Through::Set(1_000);
    let read = store.create_schedule("sid", "s", &f).unwrap();
    assert_eq!(read.through_ms, Some(1_000));
    // A fire commits after the schedule was read for an update...
    let fire = Fire {
        schedule_id: "sid",
        through_before: Some(1_000),
        revision: read.revision,
        slot_ms: 3_000,
        event: Some(event("e1", "schedule:sid:3000")),
    };
    assert!(matches!(
        store.fire_schedule(&fire).unwrap(),
        Fired::Done(_)
    ));
    // ...and the update (of the payload, say) does not put `through` back: the slot would
    // fire again.
    let mut u = fields("f");
    u.payload = Some(b"{\"a\":1}");
    let s = store.update_schedule("s", read.revision, &u).unwrap();
    assert_eq!(s.through_ms, Some(3_000));
    // A resume moves it to now unless it is later already.
    u.through = Through::AtLeast(2_000);
    let s = store.update_schedule("s", s.revision, &u).unwrap();
    assert_eq!(s.through_ms, Some(3_000));
    u.through = Through::AtLeast(9_000);
    let s = store.update_schedule("s", s.revision, &u).unwrap();
    assert_eq!(s.through_ms, Some(9_000));
    // A new expression starts afresh.
    u.through = Through::Set(4_000);
    let s = store.update_schedule("s", s.revision, &u).unwrap();
    assert_eq!(s.through_ms, Some(4_000));
}

fn a_schedule_goes_with_its_function(db: &TestDb) {
    let store = db.open();
    create_function(&store, "f", None);
    store.create_schedule("sid", "s", &fields("f")).unwrap();
    store
        .delete_function(&FunctionName::parse("f").unwrap())
        .unwrap();
    assert!(store.schedule("s").unwrap().is_none());
}

store_tests!(
    create_get_list_update_delete,
    a_slot_fires_once_with_its_event_in_one_transaction,
    an_update_keeps_what_a_fire_moved_unless_told,
    a_schedule_goes_with_its_function
);
