//! Schedules against the real daemon on the process driver: a `rate(2 seconds)` schedule
//! (Skyscale's seconds extension) fires repeatedly with EventBridge's Scheduled Event
//! document, stops when paused and goes on when resumed; restarts (SIGTERM and SIGKILL)
//! neither lose nor double a slot, `run-once` fires one catch-up slot for the time the
//! control plane was down and `skip` none; bad input gets clear errors.
//!
//! The function writes every event it receives to a file of its own (the process driver
//! runs it as this user), so the test reads exactly what each run was given.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{create_fn, tail, wait_for, Http, Server};
use serde_json::{json, Value};

/// Writes each event it receives to `$OUT_DIR/run-<request id>.json`.
const RECORDER: &str = r#"
import json, os

def handler(event, context):
    d = os.environ["OUT_DIR"]
    path = os.path.join(d, "run-%s" % context.aws_request_id)
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(event))
    os.rename(path + ".tmp", path + ".json")
    return {}
"#;

const PERIOD_MS: i64 = 2000;

fn runtime() -> String {
    skyscale_core::Runtimes::discover(Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed")
        .as_str()
        .to_owned()
}

fn server() -> Server {
    Server::start_with(
        "process",
        &[
            ("SKYSCALE_ASYNC_RETRY_BACKOFF", "200ms"),
            ("SKYSCALE_ASYNC_LEASE", "3s"),
        ],
    )
}

fn recorder(server: &Server, name: &str, out: &Path) {
    let r = create_fn(
        &server.http(),
        name,
        RECORDER,
        json!({"runtime": runtime(), "environment": {"OUT_DIR": out.to_str().unwrap()}}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

/// Every event the function received, in no particular order.
fn runs(out: &Path) -> Vec<Value> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(out).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            v.push(serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap());
        }
    }
    v
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn slot_ms(event: &Value) -> i64 {
    let t = event["time"].as_str().unwrap();
    t.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("time {t:?}: {e}"))
        .as_millisecond()
}

/// The slots a schedule (by ARN) fired, each with the event ids that carried it and how
/// many runs each had.
fn slots(out: &Path, arn: &str) -> BTreeMap<i64, BTreeMap<String, usize>> {
    let mut by_slot: BTreeMap<i64, BTreeMap<String, usize>> = BTreeMap::new();
    for e in runs(out) {
        if e["resources"][0] == arn {
            let id = e["id"].as_str().unwrap().to_owned();
            *by_slot
                .entry(slot_ms(&e))
                .or_default()
                .entry(id)
                .or_insert(0) += 1;
        }
    }
    by_slot
}

/// Waits until the function's queue is empty (every fire committed so far has run) and
/// no dead letter is there.
fn drained(server: &Server, http: &Http, function: &str) {
    wait_for(server, Duration::from_secs(30), "an empty queue", || {
        let r = http.get(&format!("/v1/functions/{function}/events"));
        assert_eq!(r.status, 200);
        r.json()["events"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
}

fn create_schedule(http: &Http, body: Value) -> Value {
    let r = http.post_json("/v1/schedules", &body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Consecutive fired slots are one period apart, except across the `gaps` allowed.
fn contiguous_except(slots: &[i64], allowed: &[(i64, i64)]) {
    for w in slots.windows(2) {
        if w[1] - w[0] != PERIOD_MS {
            assert!(
                allowed.iter().any(|&(from, to)| w[0] < from && w[1] > to),
                "slots {} and {} are not one period apart and no restart lies between them: \
                 a slot was lost ({slots:?})",
                w[0],
                w[1]
            );
        }
    }
}

#[test]
fn a_rate_schedule_fires_the_scheduled_event_and_pauses_and_resumes() {
    let server = server();
    let out = tempfile::tempdir().unwrap();
    recorder(&server, "tick", out.path());
    let http = server.http();

    let text = server.cli_ok(&[
        "schedule",
        "create",
        "--name",
        "every2",
        "--function",
        "tick",
        "--expression",
        "rate(2 seconds)",
    ]);
    assert!(
        text.contains("every2") && text.contains("rate(2 seconds)"),
        "{text}"
    );
    let custom = create_schedule(
        &http,
        json!({"name": "custom", "function": "tick", "expression": "rate(2 seconds)",
               "payload": {"job": "report", "n": 1}}),
    );
    assert_eq!(custom["payload"], json!({"job": "report", "n": 1}));
    let info: Value = serde_json::from_str(
        &server.cli_ok(&["--output", "json", "schedule", "get", "--name", "every2"]),
    )
    .unwrap();
    let arn = info["arn"].as_str().unwrap().to_owned();
    assert_eq!(arn, "arn:aws:events:us-east-1:000000000000:rule/every2");
    assert_eq!(
        (
            info["state"].as_str(),
            info["missed"].as_str(),
            info["timezone"].as_str()
        ),
        (Some("enabled"), Some("run-once"), Some("UTC"))
    );
    assert!(info["next_fire_at"].is_string(), "{info}");

    // It fires repeatedly, one event per slot, each slot one period after the last.
    let fired = wait_for(&server, Duration::from_secs(30), "three fires", || {
        let s = slots(out.path(), &arn);
        (s.len() >= 3).then_some(s)
    });
    for (slot, ids) in &fired {
        assert_eq!(ids.len(), 1, "slot {slot} fired as {ids:?}");
    }
    let first: Vec<i64> = fired.keys().copied().collect();
    contiguous_except(&first, &[]);
    // The payload is EventBridge's Scheduled Event document.
    let event = runs(out.path())
        .into_iter()
        .find(|e| e["resources"][0] == arn.as_str())
        .unwrap();
    assert_eq!(event["version"], "0");
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["account"], "000000000000");
    assert_eq!(event["region"], "us-east-1");
    assert_eq!(event["detail"], json!({}));
    assert_eq!(event["resources"], json!([arn]));
    assert!(
        uuid::Uuid::parse_str(event["id"].as_str().unwrap()).is_ok(),
        "{event}"
    );
    let t = event["time"].as_str().unwrap();
    assert!(
        t.len() == 20 && t.ends_with('Z'),
        "time is yyyy-mm-ddThh:mm:ssZ: {t}"
    );
    // The custom payload is sent as given.
    wait_for(&server, Duration::from_secs(30), "a custom fire", || {
        runs(out.path())
            .iter()
            .any(|e| *e == json!({"job": "report", "n": 1}))
            .then_some(())
    });
    // Each fire is an asynchronous event: its invocation record names the event.
    let recs = http.get("/v1/functions/tick/invocations?limit=1000").json();
    let ids: BTreeSet<&str> = recs["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["event_id"].as_str())
        .collect();
    assert!(ids.contains(event["id"].as_str().unwrap()), "{recs}");

    // Paused, it stops.
    let text = server.cli_ok(&["schedule", "pause", "--name", "every2"]);
    assert!(text.contains("paused"), "{text}");
    let paused_at = now_ms();
    drained(&server, &http, "tick");
    let before = slots(out.path(), &arn);
    let info = http.get("/v1/schedules/every2").json();
    assert_eq!(info["state"], "paused");
    assert!(info["next_fire_at"].is_null(), "{info}");
    // Three periods pass: nothing fires (waiting for an absence).
    std::thread::sleep(Duration::from_millis(3 * PERIOD_MS as u64));
    let after = slots(out.path(), &arn);
    assert_eq!(before, after, "a paused schedule fired");
    assert!(
        before.keys().all(|&s| s <= paused_at),
        "{before:?} {paused_at}"
    );

    // Resumed, it goes on with the slots after now; those passed while paused are not
    // caught up.
    let resumed_at = now_ms();
    server.cli_ok(&["schedule", "resume", "--name", "every2"]);
    let more = wait_for(
        &server,
        Duration::from_secs(30),
        "fires after resume",
        || {
            let s = slots(out.path(), &arn);
            (s.len() >= before.len() + 2).then_some(s)
        },
    );
    let new: Vec<i64> = more
        .keys()
        .copied()
        .filter(|s| !before.contains_key(s))
        .collect();
    assert!(
        new.iter().all(|&s| s > resumed_at),
        "{new:?} after {resumed_at}"
    );
    contiguous_except(&new, &[]);
    for (slot, ids) in &more {
        assert_eq!(ids.len(), 1, "slot {slot} fired as {ids:?}");
    }

    // list, and delete: it fires no more.
    let list = server.cli_ok(&["schedule", "list"]);
    assert!(list.contains("every2") && list.contains("custom"), "{list}");
    server.cli_ok(&["schedule", "delete", "--name", "every2"]);
    server.cli_ok(&["schedule", "delete", "--name", "custom"]);
    assert_eq!(http.get("/v1/schedules/every2").status, 404);
    // The audit log has each change.
    let audit = http.get("/v1/audit?limit=100").json();
    let actions: BTreeSet<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "schedule.create",
        "schedule.pause",
        "schedule.resume",
        "schedule.delete",
    ] {
        assert!(actions.contains(a), "{a} missing from {actions:?}");
    }
}

/// A restart between fires (SIGTERM, then SIGKILL): no slot fires twice, none is lost
/// while the control plane runs, `run-once` fires exactly one slot for each time it was
/// down (the latest one missed) and `skip` none.
#[test]
fn restarts_neither_lose_nor_double_a_slot() {
    let mut server = server();
    let out = tempfile::tempdir().unwrap();
    recorder(&server, "tick", out.path());
    let http = server.http();
    let once = create_schedule(
        &http,
        json!({"name": "once", "function": "tick", "expression": "rate(2 seconds)"}),
    )["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let skip = create_schedule(
        &http,
        json!({"name": "skip", "function": "tick", "expression": "rate(2 seconds)",
               "missed": "skip"}),
    )["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let fired_at_least = |server: &Server, n: usize, after: i64| {
        wait_for(server, Duration::from_secs(40), "fires", || {
            let a = slots(out.path(), &once).range(after..).count();
            let b = slots(out.path(), &skip).range(after..).count();
            (a >= n && b >= n).then_some(())
        })
    };
    fired_at_least(&server, 2, 0);

    // (down: the old process has exited, spawn: the new one is being started,
    // listening: it answers)
    let mut downtimes = Vec::new();
    for kill in ["SIGTERM", "SIGKILL"] {
        if kill == "SIGTERM" {
            let status = server.stop();
            assert!(status.success(), "{status}\n{}", tail(&server.log(), 40));
        } else {
            server.crash();
        }
        let down = now_ms();
        // Three and a half periods pass while it is down.
        std::thread::sleep(Duration::from_millis(7 * PERIOD_MS as u64 / 2));
        let spawn = now_ms();
        server.start_again();
        let listening = now_ms();
        downtimes.push((kill, down, spawn, listening));
        fired_at_least(&server, 2, listening);
    }
    let http = server.http();
    for name in ["once", "skip"] {
        let r = http.send("POST", &format!("/v1/schedules/{name}/pause"), None);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    drained(&server, &http, "tick");
    let dead = http.get("/v1/functions/tick/events?status=dead").json();
    assert_eq!(dead["events"], json!([]), "no fire became a dead letter");

    // A gap in the slots may only straddle a stop.
    let gaps: Vec<(i64, i64)> = downtimes.iter().map(|d| (d.1, d.1)).collect();
    eprintln!("downtimes (kill, down, spawn, listening): {downtimes:?}");
    for (arn, policy) in [(&once, "run-once"), (&skip, "skip")] {
        let by_slot = slots(out.path(), arn);
        // No slot fired twice: one event per slot. (An event may run twice after a
        // SIGKILL: the queue delivers at least once; that is reported, not a double fire.)
        let mut reruns = 0;
        for (slot, ids) in &by_slot {
            assert_eq!(ids.len(), 1, "{policy}: slot {slot} fired as {ids:?}");
            reruns += ids.values().map(|n| n - 1).sum::<usize>();
        }
        if reruns > 0 {
            eprintln!("{policy}: {reruns} event(s) ran again after the SIGKILL (at-least-once)");
        }
        let s: Vec<i64> = by_slot.keys().copied().collect();
        // Nothing lost while the control plane ran.
        contiguous_except(&s, &gaps);
        for &(kill, down, spawn, listening) in &downtimes {
            let last_before = *s.iter().filter(|&&t| t < down).max().unwrap();
            let first_after = *s.iter().find(|&&t| t > down).unwrap();
            let missed = (first_after - last_before) / PERIOD_MS - 1;
            assert!(
                missed >= 1,
                "{policy}/{kill}: every slot of the downtime fired ({last_before}, {first_after})"
            );
            match policy {
                // The latest slot missed fires once at start: it is not later than the
                // moment the restarted control plane answered.
                "run-once" => assert!(
                    first_after <= listening,
                    "{policy}/{kill}: no catch-up fire (first slot after the restart \
                     {first_after}, listening at {listening})\n{}",
                    tail(&server.log(), 60)
                ),
                // None of the missed slots fires: the first is one after the start.
                _ => assert!(
                    first_after > spawn,
                    "{policy}/{kill}: a missed slot fired ({first_after}, started at {spawn})"
                ),
            }
        }
    }
}

#[test]
fn bad_schedules_get_clear_errors() {
    let server = server();
    let out = tempfile::tempdir().unwrap();
    recorder(&server, "tick", out.path());
    recorder(&server, "other", out.path());
    let http = server.http();
    let base = json!({"name": "s", "function": "tick", "expression": "rate(5 minutes)"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, status, needle) in [
        (
            with("expression", json!("cron(0 3 * * *)")),
            400,
            "expected 6 fields",
        ),
        (
            with("expression", json!("cron(0 3 * * * *)")),
            400,
            "must be ?",
        ),
        (
            with("expression", json!("cron(0 25 * * ? *)")),
            400,
            "hours: 25 is out of range",
        ),
        (
            with("expression", json!("rate(5 minute)")),
            400,
            "rate(5 minutes)",
        ),
        (
            with("expression", json!("rate(0 hours)")),
            400,
            "at least 1",
        ),
        (
            with("expression", json!("every day")),
            400,
            "expected cron(",
        ),
        (
            with("expression", json!("at(2020-01-01T00:00:00)")),
            400,
            "never fires after now",
        ),
        (
            with("timezone", json!("Mars/Olympus")),
            400,
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            with("missed", json!("all")),
            400,
            "expected run-once or skip",
        ),
        (
            with("name", json!("bad name")),
            400,
            "invalid schedule name",
        ),
        (
            with("function", json!("nope")),
            404,
            "function nope not found",
        ),
        (with("qualifier", json!("prod")), 404, "prod"),
        (
            with("payload", json!("x".repeat(1024 * 1024 + 1))),
            413,
            "1048576",
        ),
    ] {
        let r = http.post_json("/v1/schedules", &body);
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.error_message().contains(needle),
            "{body}: {}",
            r.error_message()
        );
    }
    create_schedule(&http, base.clone());
    let r = http.post_json("/v1/schedules", &base);
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.error_message().contains("schedule s already exists"));
    // Nothing half-applied: the failed attempts left one schedule.
    assert_eq!(
        http.get("/v1/schedules").json()["schedules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = http.send(
        "PATCH",
        "/v1/schedules/s",
        Some(br#"{"timezone": "Nowhere/Land"}"#.to_vec()),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(http.get("/v1/schedules/s").json()["timezone"], "UTC");
    let r = http.send(
        "PATCH",
        "/v1/schedules/s",
        Some(br#"{"bogus": 1}"#.to_vec()),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(http.get("/v1/schedules/nope").status, 404);

    // A key that may not invoke (or change) the function.
    for (role, functions) in [
        ("developer", json!(["other"])),
        ("invoker", json!(["tick"])),
    ] {
        let key = http.post_json(
            "/v1/keys",
            &json!({"role": role, "description": "limited", "functions": functions}),
        );
        assert_eq!(key.status, 201, "{}", String::from_utf8_lossy(&key.body));
        let scoped = server.http().with_key(key.json()["key"].as_str().unwrap());
        let r = scoped.post_json("/v1/schedules", &with("name", json!("mine")));
        assert_eq!(
            r.status,
            403,
            "{role}: {}",
            String::from_utf8_lossy(&r.body)
        );
        // Someone else's schedule is not even seen by a key that may not read its function.
        if role == "developer" {
            assert_eq!(scoped.get("/v1/schedules/s").status, 404);
            assert_eq!(
                scoped.get("/v1/schedules").json()["schedules"],
                json!([]),
                "listed a schedule of a function the key may not read"
            );
            let r = scoped.send("DELETE", "/v1/schedules/s", None);
            assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
            // Nor may it point a schedule of its own function at one it may not invoke.
            let r = scoped.post_json(
                "/v1/schedules",
                &json!({"name": "mine", "function": "other", "expression": "rate(1 day)"}),
            );
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            let r = scoped.send(
                "PATCH",
                "/v1/schedules/mine",
                Some(br#"{"function": "tick"}"#.to_vec()),
            );
            assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        }
    }

    // The CLI says what is wrong and exits 1.
    server.cli_fails(
        &[
            "schedule",
            "create",
            "--name",
            "c",
            "--function",
            "tick",
            "--expression",
            "cron(0 3 ? * ? *)",
        ],
        1,
        "cannot both be ?",
    );
    server.cli_fails(
        &[
            "schedule",
            "create",
            "--name",
            "c",
            "--function",
            "tick",
            "--expression",
            "rate(1 day)",
            "--timezone",
            "Europe/Pariss",
        ],
        1,
        "unknown time zone",
    );
    server.cli_fails(
        &[
            "schedule",
            "create",
            "--name",
            "c",
            "--function",
            "tick",
            "--expression",
            "rate(1 day)",
            "--payload",
            "{not json",
        ],
        1,
        "--payload is not valid JSON",
    );
    server.cli_fails(
        &["schedule", "get", "--name", "nope"],
        1,
        "schedule nope not found",
    );
    // A zone and a cron expression are taken, and the next fire is 03:00 in Paris.
    let s: Value = serde_json::from_str(&server.cli_ok(&[
        "--output",
        "json",
        "schedule",
        "create",
        "--name",
        "nightly",
        "--function",
        "tick",
        "--expression",
        "cron(0 3 * * ? *)",
        "--timezone",
        "Europe/Paris",
        "--missed",
        "skip",
    ]))
    .unwrap();
    assert_eq!(s["missed"], "skip");
    let next: jiff::Timestamp = s["next_fire_at"].as_str().unwrap().parse().unwrap();
    let local = next.to_zoned(jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    assert_eq!((local.hour(), local.minute()), (3, 0), "{next}");

    // Updates through the CLI: the options given change, the others stay.
    let u: Value = serde_json::from_str(&server.cli_ok(&[
        "--output",
        "json",
        "schedule",
        "update",
        "--name",
        "nightly",
        "--expression",
        "cron(30 4 ? * MON-FRI *)",
        "--payload",
        r#"{"k": 1}"#,
    ]))
    .unwrap();
    assert_eq!(
        (
            &u["expression"],
            &u["timezone"],
            &u["missed"],
            &u["payload"]
        ),
        (
            &json!("cron(30 4 ? * MON-FRI *)"),
            &json!("Europe/Paris"),
            &json!("skip"),
            &json!({"k": 1})
        )
    );
    let u: Value = serde_json::from_str(&server.cli_ok(&[
        "--output",
        "json",
        "schedule",
        "update",
        "--name",
        "nightly",
        "--default-payload",
        "--missed",
        "run-once",
    ]))
    .unwrap();
    assert!(u["payload"].is_null(), "{u}");
    assert_eq!(u["missed"], "run-once");
    let text = server.cli_ok(&["schedule", "get", "--name", "nightly"]);
    assert!(
        text.contains("EventBridge Scheduled Event document"),
        "{text}"
    );
}
