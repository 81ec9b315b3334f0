//! Asynchronous invocation against the real daemon: the durable queue survives SIGKILL and
//! SIGTERM, retries and destinations, dead letters and redrive, the maximum event age,
//! throttles that wait without counting, idempotency keys and bad input. The process driver
//! runs these (the queue does not depend on isolation); one test runs on runc.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{create_fn, tail, wait_for, Http, Resp, Server};
use serde_json::{json, Value};

/// Quick backoffs and a short lease, so that a test waits seconds, not minutes.
const FAST: &[(&str, &str)] = &[
    ("SKYSCALE_ASYNC_RETRY_BACKOFF", "200ms"),
    ("SKYSCALE_ASYNC_THROTTLE_BACKOFF", "100ms"),
    ("SKYSCALE_ASYNC_MAX_THROTTLE_BACKOFF", "500ms"),
    ("SKYSCALE_ASYNC_LEASE", "3s"),
    ("SKYSCALE_ASYNC_CONCURRENCY", "4"),
];

/// A handler that sleeps a little and answers its payload's `n`.
const SLOW_OK: &str = r#"
import time

def handler(event, context):
    time.sleep(0.05)
    return {"n": event.get("n")}
"#;

/// Fails `fail_times` times per event (counted in a file under the payload's `dir`), then
/// answers `{"ok": true}`.
const FLAKY: &str = r#"
import os

def handler(event, context):
    path = os.path.join(event["dir"], "count-" + event["key"])
    n = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(n + 1))
    if n < event["fail_times"]:
        raise ValueError("attempt %d fails" % (n + 1))
    return {"ok": True, "attempt": n + 1}
"#;

/// A destination: writes the invocation record it receives to the payload's `dir`.
const DESTINATION: &str = r#"
import json, os

def handler(event, context):
    d = event["requestPayload"]["dir"]
    name = "record-%s-%s" % (event["requestPayload"]["key"], event["requestContext"]["condition"])
    open(os.path.join(d, name + ".tmp"), "w").write(json.dumps(event))
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))
    return {}
"#;

const ALWAYS_FAILS: &str = r#"
def handler(event, context):
    raise RuntimeError("broken on purpose")
"#;

const FIXED: &str = r#"
def handler(event, context):
    return {"fixed": True}
"#;

fn runtime() -> String {
    skyscale_core::Runtimes::discover(Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed")
        .as_str()
        .to_owned()
}

fn server(extra: &[(&str, &str)]) -> Server {
    let mut env: Vec<(&str, &str)> = FAST.to_vec();
    env.extend_from_slice(extra);
    Server::start_with("process", &env)
}

fn create(server: &Server, name: &str, source: &str) {
    let r = create_fn(&server.http(), name, source, json!({"runtime": runtime()}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

/// `POST /v1/functions/{name}/invoke` asynchronously, with headers.
fn invoke_async(http: &Http, name: &str, payload: &Value, headers: &[(&str, &str)]) -> Resp {
    let mut req = http
        .client
        .post(format!("{}/v1/functions/{name}/invoke", http.base))
        .bearer_auth(http.key.as_deref().unwrap())
        .header("x-skyscale-invocation-type", "Event")
        .body(serde_json::to_vec(payload).unwrap());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap();
    Resp {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().unwrap().to_vec(),
    }
}

fn accepted(r: &Resp) -> String {
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["event_id"].as_str().unwrap().to_owned();
    assert_eq!(r.header("x-skyscale-request-id"), Some(id.as_str()));
    id
}

fn records(http: &Http, name: &str) -> Vec<Value> {
    let r = http.get(&format!("/v1/functions/{name}/invocations?limit=10000"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["invocations"].as_array().unwrap().clone()
}

fn events(http: &Http, name: &str, status: Option<&str>) -> Vec<Value> {
    let q = status.map_or_else(String::new, |s| format!("?status={s}"));
    let r = http.get(&format!("/v1/functions/{name}/events{q}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["events"].as_array().unwrap().clone()
}

/// Successful attempts per event id, from the invocation records.
fn successes(records: &[Value]) -> BTreeMap<String, usize> {
    let mut by_event = BTreeMap::new();
    for r in records {
        if r["status"] == "success" {
            if let Some(id) = r["event_id"].as_str() {
                *by_event.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
    }
    by_event
}

/// Accepts 200 events, stops the control plane while they run (`kill`), starts it again and
/// waits until the queue is empty. Returns the accepted ids and the successes per event.
fn interrupted_run(
    kill: impl FnOnce(&mut Server),
) -> (Server, Vec<String>, BTreeMap<String, usize>) {
    let mut server = server(&[]);
    create(&server, "f", SLOW_OK);
    let http = server.http();
    let ids: Vec<String> = (0..200)
        .map(|n| accepted(&invoke_async(&http, "f", &json!({"n": n}), &[])))
        .collect();
    // Some have run, most have not.
    let before = wait_for(&server, Duration::from_secs(60), "the first runs", || {
        let n = successes(&records(&http, "f")).len();
        (n >= 10).then_some(n)
    });
    kill(&mut server);
    assert!(
        before < ids.len(),
        "the stop came too late: every event had run"
    );
    server.start_again();
    let http = server.http();
    let done = wait_for(
        &server,
        Duration::from_secs(180),
        "every event to run",
        || {
            let s = successes(&records(&http, "f"));
            (events(&http, "f", None).is_empty() && ids.iter().all(|id| s.contains_key(id)))
                .then_some(s)
        },
    );
    (server, ids, done)
}

#[test]
fn sigkill_while_200_events_run_loses_none() {
    let (server, ids, done) = interrupted_run(|s| s.crash());
    let lost: Vec<&String> = ids.iter().filter(|id| !done.contains_key(*id)).collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    let twice: Vec<(&String, &usize)> = done.iter().filter(|(_, n)| **n > 1).collect();
    // At-least-once: a SIGKILL between a run and its end runs that event again.
    eprintln!(
        "SIGKILL: {} events accepted, all ran; {} ran more than once: {twice:?}",
        ids.len(),
        twice.len()
    );
    assert!(
        server.log().contains("queued again"),
        "the restart released the dead run's leases\n{}",
        tail(&server.log(), 40)
    );
}

#[test]
fn sigterm_while_200_events_run_loses_none_and_runs_none_twice() {
    let (_server, ids, done) = interrupted_run(|s| {
        let status = s.stop();
        assert!(status.success(), "{}", s.log());
    });
    let lost: Vec<&String> = ids.iter().filter(|id| !done.contains_key(*id)).collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    let twice: Vec<(&String, &usize)> = done.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "ran twice after a graceful stop: {twice:?}"
    );
}

fn put_config(http: &Http, name: &str, body: Value) -> Resp {
    http.send(
        "PUT",
        &format!("/v1/functions/{name}/event-config"),
        Some(serde_json::to_vec(&body).unwrap()),
    )
}

fn read_record(dir: &Path, name: &str, server: &Server) -> Value {
    let path = dir.join(name);
    wait_for(server, Duration::from_secs(60), name, || {
        std::fs::read(&path)
            .ok()
            .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
    })
}

#[test]
fn retries_then_destinations_then_dead_letters_and_redrive() {
    let server = server(&[]);
    let http = server.http();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    create(&server, "flaky", FLAKY);
    create(&server, "dest", DESTINATION);
    create(&server, "broken", ALWAYS_FAILS);

    // Fails twice, then succeeds: three attempts, then OnSuccess gets the record.
    let r = put_config(
        &http,
        "flaky",
        json!({"on_success": "dest", "on_failure": "dest"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["on_success"],
        "arn:aws:lambda:us-east-1:000000000000:function:dest"
    );
    let payload = json!({"dir": d, "key": "a", "fail_times": 2});
    let id = accepted(&invoke_async(&http, "flaky", &payload, &[]));
    let record = read_record(dir.path(), "record-a-Success", &server);
    assert_eq!(record["version"], "1.0");
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(
        record["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:flaky:$LATEST"
    );
    assert_eq!(record["requestPayload"], payload);
    assert_eq!(record["responseContext"]["statusCode"], 200);
    assert_eq!(record["responsePayload"], json!({"ok": true, "attempt": 3}));
    let mut attempts: Vec<(u64, String)> = records(&http, "flaky")
        .iter()
        .filter(|r| r["event_id"] == id.as_str())
        .map(|r| {
            (
                r["attempt"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    attempts.sort();
    assert_eq!(
        attempts,
        [
            (1, "function_error".to_owned()),
            (2, "function_error".to_owned()),
            (3, "success".to_owned())
        ]
    );

    // MaximumRetryAttempts 0 with a failing handler: one attempt, then OnFailure.
    let r = put_config(
        &http,
        "flaky",
        json!({"maximum_retry_attempts": 0, "on_failure": "dest"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["on_success"],
        Value::Null,
        "a put replaces everything"
    );
    let payload = json!({"dir": d, "key": "b", "fail_times": 5});
    let id = accepted(&invoke_async(&http, "flaky", &payload, &[]));
    let record = read_record(dir.path(), "record-b-RetriesExhausted", &server);
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(record["responsePayload"]["errorType"], "ValueError");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("count-b")).unwrap(),
        "1"
    );

    // No destination: the event is a dead letter; fixing the code and redriving runs it.
    let r = put_config(&http, "broken", json!({"maximum_retry_attempts": 1}));
    assert_eq!(r.status, 200);
    let id = accepted(&invoke_async(&http, "broken", &json!({"x": 1}), &[]));
    let dead = wait_for(&server, Duration::from_secs(60), "the dead letter", || {
        events(&http, "broken", Some("dead")).into_iter().next()
    });
    assert_eq!(dead["id"], id.as_str());
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["dead_reason"], "RetriesExhausted");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("RuntimeError: broken on purpose"),
        "{dead}"
    );
    let listed = server.cli_ok(&["function", "events", "--name", "broken", "--status", "dead"]);
    assert!(
        listed.contains(&id) && listed.contains("RetriesExhausted"),
        "{listed}"
    );
    let shown = server.cli_ok(&["--output", "json", "function", "event", "--id", &id]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["payload"], json!({"x": 1}));
    assert_eq!(
        shown["record"]["requestContext"]["condition"],
        "RetriesExhausted"
    );
    assert_eq!(
        shown["record"]["requestContext"]["approximateInvokeCount"],
        2
    );
    let fixed = common::zip_of(&[("handler.py", FIXED)]);
    let r = http.send("PUT", "/v1/functions/broken/code", Some(fixed));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let out = server.cli_ok(&["function", "redrive", "--name", "broken", "--id", &id]);
    assert!(out.contains("redrove 1 event(s)"), "{out}");
    wait_for(
        &server,
        Duration::from_secs(60),
        "the redriven event to run",
        || {
            let ok = records(&http, "broken")
                .iter()
                .any(|r| r["event_id"] == id.as_str() && r["status"] == "success");
            (ok && events(&http, "broken", None).is_empty()).then_some(())
        },
    );
    let gone = http.get(&format!("/v1/events/{id}"));
    assert_eq!(gone.status, 404, "a done event is not kept");
}

#[test]
fn an_event_older_than_its_maximum_age_is_not_run() {
    let server = server(&[]);
    let http = server.http();
    create(&server, "old", SLOW_OK);
    let r = put_config(&http, "old", json!({"maximum_event_age_seconds": 60}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Reserved concurrency 0 holds the event back until it is too old.
    let r = http.send(
        "PUT",
        "/v1/functions/old/concurrency",
        Some(br#"{"reserved_concurrency": 0}"#.to_vec()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let id = accepted(&invoke_async(&http, "old", &json!({"n": 1}), &[]));
    let dead = wait_for(
        &server,
        Duration::from_secs(90),
        "the event to age out",
        || events(&http, "old", Some("dead")).into_iter().next(),
    );
    assert_eq!(dead["id"], id.as_str());
    assert_eq!(dead["dead_reason"], "EventAgeExceeded");
    assert_eq!(dead["attempts"], 0);
    let one = http.get(&format!("/v1/events/{id}")).json();
    assert_eq!(
        one["record"]["requestContext"]["condition"],
        "EventAgeExceeded"
    );
    assert!(one["record"].get("responsePayload").is_none(), "{one}");
    let ran: Vec<Value> = records(&http, "old")
        .into_iter()
        .filter(|r| r["status"] != "throttled")
        .collect();
    assert!(ran.is_empty(), "it never ran: {ran:?}");
}

#[test]
fn throttled_events_wait_without_counting_attempts_then_run() {
    let server = server(&[]);
    let http = server.http();
    create(&server, "held", SLOW_OK);
    let r = http.send(
        "PUT",
        "/v1/functions/held/concurrency",
        Some(br#"{"reserved_concurrency": 0}"#.to_vec()),
    );
    assert_eq!(r.status, 200);
    let ids: Vec<String> = (0..3)
        .map(|n| accepted(&invoke_async(&http, "held", &json!({"n": n}), &[])))
        .collect();
    wait_for(&server, Duration::from_secs(30), "throttled tries", || {
        let e = events(&http, "held", Some("retrying"));
        (e.len() == 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    for e in events(&http, "held", None) {
        assert_eq!(e["attempts"], 0, "throttles are not attempts: {e}");
        assert!(
            e["last_error"].as_str().unwrap().starts_with("throttled"),
            "{e}"
        );
    }
    // Raised: the held events run, on their first attempt.
    let r = http.send(
        "PUT",
        "/v1/functions/held/concurrency",
        Some(br#"{"reserved_concurrency": 2}"#.to_vec()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    wait_for(
        &server,
        Duration::from_secs(60),
        "the held events to run",
        || events(&http, "held", None).is_empty().then_some(()),
    );
    let all = records(&http, "held");
    for id in &ids {
        let ok: Vec<&Value> = all
            .iter()
            .filter(|r| r["event_id"] == id.as_str() && r["status"] == "success")
            .collect();
        assert_eq!(ok.len(), 1, "{id}: {all:?}");
        assert_eq!(ok[0]["attempt"], 1, "the first attempt ran: {:?}", ok[0]);
    }
}

#[test]
fn the_same_idempotency_key_twice_queues_one_event() {
    let server = server(&[]);
    let http = server.http();
    create(&server, "once", SLOW_OK);
    let key = [("idempotency-key", "order-42")];
    let first = invoke_async(&http, "once", &json!({"n": 1}), &key);
    let id = accepted(&first);
    assert_eq!(first.json()["duplicate"], false);
    let again = invoke_async(&http, "once", &json!({"n": 2}), &key);
    assert_eq!(accepted(&again), id);
    assert_eq!(again.json()["duplicate"], true);
    // The CLI's flag, the same key: the same event.
    let out = server.cli_ok(&[
        "function",
        "invoke",
        "--name",
        "once",
        "--async",
        "--idempotency-key",
        "order-42",
    ]);
    assert!(
        out.contains(&id) && out.contains("nothing new queued"),
        "{out}"
    );
    wait_for(&server, Duration::from_secs(30), "the event to run", || {
        events(&http, "once", None).is_empty().then_some(())
    });
    // The key outlives its event.
    let later = invoke_async(&http, "once", &json!({"n": 3}), &key);
    assert_eq!(accepted(&later), id);
    std::thread::sleep(Duration::from_millis(500));
    let ran: Vec<Value> = records(&http, "once")
        .into_iter()
        .filter(|r| r["status"] == "success")
        .collect();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0]["event_id"], id.as_str());
    assert_eq!(ran[0]["trigger"], "event");
}

#[test]
fn bad_async_input_gets_a_clear_error() {
    let server = server(&[]);
    let http = server.http();
    create(&server, "f", SLOW_OK);
    create(&server, "other", SLOW_OK);
    create(&server, "secret", SLOW_OK);
    let cases = [
        (
            json!({"maximum_retry_attempts": 3}),
            400,
            "MaximumRetryAttempts 3 is out of range",
        ),
        (
            json!({"maximum_event_age_seconds": 59}),
            400,
            "MaximumEventAgeInSeconds 59 is out of range",
        ),
        (
            json!({"maximum_event_age_seconds": 21601}),
            400,
            "expected 60 to 21600",
        ),
        (json!({"on_success": "nope"}), 400, "does not exist"),
        (
            json!({"on_failure": "f"}),
            400,
            "cannot be its own destination",
        ),
        (
            json!({"on_failure": "arn:aws:sqs:us-east-1:000000000000:q"}),
            400,
            "not a Lambda function ARN",
        ),
        (
            json!({"on_failure": "bad name!"}),
            400,
            "OnFailure destination: invalid function name",
        ),
        (json!({"retries": 1}), 400, "unknown field"),
    ];
    for (body, status, needle) in cases {
        let r = put_config(&http, "f", body.clone());
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let text = String::from_utf8_lossy(&r.body).to_lowercase();
        assert!(text.contains(&needle.to_lowercase()), "{body}: {text}");
    }
    // Nothing was half-applied: no configuration exists.
    assert_eq!(http.get("/v1/functions/f/event-config").status, 404);

    // A destination the caller's key may not invoke.
    let key = http.post_json(
        "/v1/keys",
        &json!({"role": "developer", "description": "f only", "functions": ["f"]}),
    );
    assert_eq!(key.status, 201, "{}", String::from_utf8_lossy(&key.body));
    let token = key.json()["key"].as_str().unwrap().to_owned();
    let scoped = server.http().with_key(&token);
    let r = put_config(&scoped, "f", json!({"on_success": "secret"}));
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.error_message().contains("may not invoke"),
        "{}",
        r.error_message()
    );

    // Async payloads: 1 MB at most, JSON.
    let big = json!({"pad": "x".repeat(1024 * 1024)});
    let r = invoke_async(&http, "f", &big, &[]);
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.error_message().contains("the limit is 1048576 bytes"),
        "{}",
        r.error_message()
    );
    let r = http
        .client
        .post(format!("{}/v1/functions/f/invoke", http.base))
        .bearer_auth(http.key.as_deref().unwrap())
        .header("x-skyscale-invocation-type", "Event")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .client
        .post(format!("{}/v1/functions/f/invoke", http.base))
        .bearer_auth(http.key.as_deref().unwrap())
        .header("x-skyscale-invocation-type", "Later")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = invoke_async(
        &http,
        "f",
        &json!({}),
        &[("idempotency-key", &"k".repeat(300))],
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let r = invoke_async(&http, "missing", &json!({}), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(events(&http, "f", None).len(), 0, "nothing was queued");

    // Lists, redrives and lookups.
    assert_eq!(http.get("/v1/functions/f/events?status=lost").status, 400);
    let r = http.post_json("/v1/functions/f/events/redrive", &json!({}));
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let r = http.post_json(
        "/v1/functions/f/events/redrive",
        &json!({"id": "0190a0a0-0000-7000-8000-000000000000"}),
    );
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(http.get("/v1/events/not-a-uuid").status, 400);
    server.cli_fails(
        &[
            "function",
            "invoke",
            "--name",
            "f",
            "--idempotency-key",
            "k",
        ],
        1,
        "--idempotency-key needs --async",
    );

    // The CLI's event-config commands, and their errors.
    let out = server.cli_ok(&[
        "function",
        "event-config",
        "put",
        "--name",
        "f",
        "--max-retries",
        "1",
        "--on-failure",
        "other",
    ]);
    assert!(out.contains("max retries     1"), "{out}");
    assert!(out.contains("function:other"), "{out}");
    let got = server.cli_ok(&[
        "--output",
        "json",
        "function",
        "event-config",
        "get",
        "--name",
        "f",
    ]);
    let got: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["maximum_retry_attempts"], 1);
    assert_eq!(got["maximum_event_age_seconds"], Value::Null);
    server.cli_fails(
        &[
            "function",
            "event-config",
            "put",
            "--name",
            "f",
            "--max-retries",
            "5",
        ],
        1,
        "MaximumRetryAttempts 5 is out of range",
    );
    server.cli_fails(
        &[
            "function",
            "event-config",
            "put",
            "--name",
            "f",
            "--max-age",
            "-1",
        ],
        1,
        "--max-age -1 is out of range",
    );
    server.cli_ok(&["function", "event-config", "delete", "--name", "f"]);
    server.cli_fails(
        &["function", "event-config", "get", "--name", "f"],
        1,
        "has no event invoke config",
    );
    server.cli_fails(&["function", "redrive", "--name", "f"], 2, "--id");
}

/// The queue on runc: the same path through a real sandbox, and the metrics.
#[test]
fn events_run_in_runc_sandboxes_and_are_counted() {
    let mut env: Vec<(&str, &str)> = FAST.to_vec();
    env.push(("SKYSCALE_SHUTDOWN_GRACE", "10s"));
    let server = Server::start_with("runc", &env);
    let http = server.http();
    let r = create_fn(&http, "r", FIXED, json!({}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let out = server.cli_ok(&[
        "function",
        "invoke",
        "--name",
        "r",
        "--async",
        "--payload",
        "{}",
    ]);
    let id = out
        .trim()
        .strip_prefix("queued event ")
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let record = wait_for(&server, Duration::from_secs(60), "the event to run", || {
        records(&http, "r")
            .into_iter()
            .find(|r| r["event_id"] == id.as_str())
    });
    assert_eq!(record["status"], "success", "{record}");
    assert_eq!(record["attempt"], 1);
    let metrics = wait_for(&server, Duration::from_secs(10), "the queue gauges", || {
        let m = String::from_utf8(http.get("/metrics").body).unwrap();
        m.contains("skyscale_async_queue_depth{function=\"r\"} 0")
            .then_some(m)
    });
    assert!(
        metrics.contains("skyscale_async_events_received_total{function=\"r\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("skyscale_async_event_age_seconds_count{function=\"r\"} 1"));
}

/// boto3: the EventInvokeConfig operations, Invoke(Event) → 202 and the errors for bad
/// values (`tests/boto3/events.py`).
#[test]
fn boto3_event_invoke_configs_and_event_invokes() {
    let server = server(&[]);
    let (id, secret) = common::ADMIN_KEY.split_once('.').unwrap();
    let script = common::repo_root().join("crates/skyscale-control-plane/tests/boto3/events.py");
    let out = std::process::Command::new(common::test_python())
        .arg(&script)
        .env("SKYSCALE_URL", &server.url)
        .env("SKYSCALE_KEY_ID", id)
        .env("SKYSCALE_SECRET", secret)
        .env("SKYSCALE_RUNTIME", runtime())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "events.py failed ({})\nstdout:\n{stdout}\nstderr:\n{}\nserver log tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&server.log(), 60)
    );
}

/// An event that runs longer than its lease keeps it (renewed while it runs): it runs once,
/// not again when the lease would have run out.
#[test]
fn a_long_event_keeps_its_lease_and_runs_once() {
    let server = server(&[("SKYSCALE_ASYNC_LEASE", "600ms")]);
    let http = server.http();
    let r = create_fn(
        &http,
        "long",
        "import time\n\ndef handler(event, context):\n    time.sleep(2.5)\n    return {}\n",
        json!({"runtime": runtime(), "timeout_s": 10}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = accepted(&invoke_async(&http, "long", &json!({}), &[]));
    wait_for(&server, Duration::from_secs(30), "the event to end", || {
        events(&http, "long", None).is_empty().then_some(())
    });
    let runs: Vec<Value> = records(&http, "long")
        .into_iter()
        .filter(|r| r["event_id"] == id.as_str())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        !server.log().contains("ran out"),
        "{}",
        tail(&server.log(), 30)
    );
}

/// A destination that fails does not lose the record: a destination that runs and fails
/// keeps it as its own dead letter (the record is its payload), and a destination that is
/// gone leaves the event a dead letter of its source (`DestinationFailed`).
#[test]
fn a_failing_destination_keeps_the_record() {
    let server = server(&[]);
    let http = server.http();
    create(&server, "src", ALWAYS_FAILS);
    create(&server, "sink", ALWAYS_FAILS);
    create(&server, "gone", FIXED);
    let r = put_config(&http, "sink", json!({"maximum_retry_attempts": 0}));
    assert_eq!(r.status, 200);
    let r = put_config(
        &http,
        "src",
        json!({"maximum_retry_attempts": 0, "on_failure": "sink"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let id = accepted(&invoke_async(&http, "src", &json!({"k": 1}), &[]));
    let dead = wait_for(
        &server,
        Duration::from_secs(60),
        "the sink's dead letter",
        || events(&http, "sink", Some("dead")).into_iter().next(),
    );
    let one = http
        .get(&format!("/v1/events/{}", dead["id"].as_str().unwrap()))
        .json();
    assert_eq!(one["payload"]["requestContext"]["requestId"], id.as_str());
    assert_eq!(
        one["payload"]["requestContext"]["condition"],
        "RetriesExhausted"
    );
    assert_eq!(one["payload"]["requestPayload"], json!({"k": 1}));
    assert!(
        events(&http, "src", None).is_empty(),
        "the source event was handed over"
    );

    // The destination is deleted: the record stays with the source.
    let r = put_config(
        &http,
        "src",
        json!({"maximum_retry_attempts": 0, "on_failure": "gone"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(http.send("DELETE", "/v1/functions/gone", None).status, 204);
    let id = accepted(&invoke_async(&http, "src", &json!({"k": 2}), &[]));
    let dead = wait_for(
        &server,
        Duration::from_secs(60),
        "the source's dead letter",
        || events(&http, "src", Some("dead")).into_iter().next(),
    );
    assert_eq!(dead["id"], id.as_str());
    assert_eq!(dead["dead_reason"], "DestinationFailed");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("OnFailure destination"),
        "{dead}"
    );
    let one = http.get(&format!("/v1/events/{id}")).json();
    assert_eq!(
        one["record"]["requestContext"]["condition"],
        "RetriesExhausted"
    );
}
