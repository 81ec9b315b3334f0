//! Invocation records and logs against the real daemon and real (runc) sandboxes, read
//! through the real CLI and `/v1`: what a function prints lands in its logs between START
//! and REPORT, `--follow` shows what is printed after it started, each kind of ending gets
//! its status and error type, cold and warm starts are told apart, the logs' size bound
//! holds, and records survive a restart.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{create_fn, tail, workspace_bin, Server, ADMIN_KEY};
use serde_json::{json, Value};

const HANDLER: &str = r#"
import time


def handler(event, context):
    if "say" in event:
        print(event["say"], flush=True)
    if "print_kb" in event:
        line = "x" * 1023
        for _ in range(event["print_kb"]):
            print(line)
        print("last line of", context.aws_request_id, flush=True)
    if event.get("fail"):
        raise ValueError("bad input")
    if "raise_as" in event:
        # An exception class named like a platform error.
        raise type(event["raise_as"], (Exception,), {})("only pretending")
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"#;

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Invokes `name` with `payload`; returns the request id (any status but 429 has one).
fn invoke(server: &Server, name: &str, payload: Value) -> (u16, String) {
    let r = server.http().invoke(name, &payload.to_string());
    let id = r
        .header("x-skyscale-request-id")
        .unwrap_or_default()
        .to_owned();
    (r.status, id)
}

/// Polls `GET /v1/invocations/{id}` until the record is written (it is written in the
/// background, after the answer).
fn record(server: &Server, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = server.http().get(&format!("/v1/invocations/{request_id}"));
        if r.status == 200 {
            return r.json();
        }
        assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            Instant::now() < deadline,
            "no record of {request_id}\n{}",
            tail(&server.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Records of `name` (newest first) through the CLI, once `cond` holds for them.
fn records_until(server: &Server, args: &[&str], cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = vec!["function", "invocations", "--output", "json"];
        all.extend_from_slice(args);
        let list = parse(&server.cli_ok(&all));
        let records = list["invocations"].as_array().unwrap().clone();
        if cond(&records) {
            return records;
        }
        assert!(Instant::now() < deadline, "records never matched: {list}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn records_and_logs_of_every_kind_of_ending() {
    let mut server = Server::start(common::API_DRIVER);
    let http = server.http();
    assert_eq!(
        create_fn(&http, "printer", HANDLER, json!({"timeout_s": 1})).status,
        201
    );

    // Cold, then warm: flagged as such, an init duration on the first only.
    let (status, cold) = invoke(
        &server,
        "printer",
        json!({"say": "hello from the cold one"}),
    );
    assert_eq!(status, 200);
    let (_, warm) = invoke(
        &server,
        "printer",
        json!({"say": "hello from the warm one"}),
    );
    let c = record(&server, &cold);
    let w = record(&server, &warm);
    assert_eq!(
        (&c["status"], &c["cold_start"], &w["cold_start"]),
        (&json!("success"), &json!(true), &json!(false))
    );
    assert!(c["init_duration_ms"].as_f64().unwrap() > 0.0, "{c}");
    assert!(w["init_duration_ms"].is_null(), "{w}");
    // Both ran in the sandbox started on demand for the first.
    assert_eq!(
        (&c["init_type"], &w["init_type"]),
        (&json!("on-demand"), &json!("on-demand"))
    );
    assert!(w["duration_ms"].as_f64().unwrap() > 0.0, "{w}");
    assert_eq!(c["function"], "printer");
    assert_eq!(c["version"], "$LATEST");
    assert_eq!(c["trigger"], "sync");
    assert_eq!(c["caller_key_id"], ADMIN_KEY.split('.').next().unwrap());
    assert_eq!(c["memory_size_mb"], 128);
    assert_eq!(c["response_bytes"], 12);
    assert!(c["started_at"].as_str().unwrap().ends_with('Z'), "{c}");

    // What it printed is in its logs, between START and REPORT.
    let logs = server.cli_ok(&[
        "function",
        "logs",
        "--name",
        "printer",
        "--request-id",
        &cold,
    ]);
    let start = logs
        .find(&format!("START RequestId: {cold}"))
        .unwrap_or_else(|| panic!("{logs}"));
    let said = logs
        .find("hello from the cold one")
        .unwrap_or_else(|| panic!("{logs}"));
    let end = logs
        .find(&format!("END RequestId: {cold}"))
        .unwrap_or_else(|| panic!("{logs}"));
    let report = logs
        .find(&format!("REPORT RequestId: {cold}"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(start < said && said < end && end < report, "{logs}");
    assert!(logs.contains("Init Duration:"), "{logs}");
    assert!(!logs.contains("warm one"), "{logs}");
    // Every invocation's, oldest first.
    let all = server.cli_ok(&["function", "logs", "--name", "printer", "--since", "10m"]);
    let (a, b) = (
        all.find("cold one").unwrap_or_else(|| panic!("{all}")),
        all.find("warm one").unwrap_or_else(|| panic!("{all}")),
    );
    assert!(a < b, "{all}");
    let json_logs = parse(&server.cli_ok(&[
        "function", "logs", "--name", "printer", "--limit", "1", "--output", "json",
    ]));
    let entries = json_logs["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{json_logs}");
    assert_eq!(entries[0]["request_id"], warm.as_str());

    // A handler exception: its type. A timeout: says so.
    let (_, failed) = invoke(&server, "printer", json!({"fail": true}));
    let (_, slow) = invoke(&server, "printer", json!({"sleep": 3}));
    let f = record(&server, &failed);
    assert_eq!(
        (&f["status"], &f["error_type"]),
        (&json!("function_error"), &json!("ValueError"))
    );
    let shown = server.cli_ok(&["function", "invocation", "--id", &failed]);
    assert!(
        shown.contains("status:         function_error\n"),
        "{shown}"
    );
    assert!(shown.contains("error_type:     ValueError\n"), "{shown}");
    let t = record(&server, &slow);
    assert_eq!(
        (&t["status"], &t["error_type"]),
        (&json!("timeout"), &json!("Sandbox.Timedout"))
    );

    // Reserved concurrency 0: a throttled invocation, recorded as such.
    server.cli_ok(&[
        "function",
        "concurrency",
        "--name",
        "printer",
        "--reserved",
        "0",
    ]);
    assert_eq!(http.invoke("printer", "{}").status, 429);
    let throttled = records_until(
        &server,
        &["--name", "printer", "--status", "throttled"],
        |r| !r.is_empty(),
    );
    assert_eq!(
        throttled[0]["error_type"], "reserved_concurrency",
        "{throttled:?}"
    );
    server.cli_ok(&["function", "concurrency", "--name", "printer", "--clear"]);

    // The table: newest first, one line per invocation.
    let table = server.cli_ok(&["function", "invocations", "--name", "printer"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("TIME")
            && lines[0].contains("REQUEST ID")
            && lines[0].ends_with("MEMORY MB"),
        "{table}"
    );
    assert_eq!(lines.len(), 6, "{table}");
    assert!(lines[1].contains("throttled"), "{table}");
    assert!(
        lines[2].contains(&slow) && lines[2].contains("Sandbox.Timedout"),
        "{table}"
    );
    assert!(
        lines[5].contains(&cold) && lines[5].contains(" yes "),
        "{table}"
    );
    let limited = records_until(&server, &["--name", "printer", "--limit", "2"], |_| true);
    assert_eq!(limited.len(), 2);

    // A function's own error named like a platform error is still the function's error.
    for own in ["Sandbox.Timedout", "Runtime.ExitError"] {
        let r = http.invoke("printer", &json!({"raise_as": own}).to_string());
        assert_eq!(
            r.json()["errorType"],
            own,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let id = r.header("x-skyscale-request-id").unwrap().to_owned();
        let p = record(&server, &id);
        assert_eq!(
            (&p["status"], &p["error_type"]),
            (&json!("function_error"), &json!(own))
        );
    }

    // Bad queries say what is wrong; invoker keys may not read records or logs.
    let r = http.get("/v1/functions/printer/invocations?since=yesterday");
    assert_eq!(r.status, 400);
    assert!(
        r.error_message().contains("invalid since"),
        "{}",
        r.error_message()
    );
    let r = http.get("/v1/functions/printer/invocations?status=fine");
    assert_eq!(r.status, 400);
    assert!(
        r.error_message().contains("function_error"),
        "{}",
        r.error_message()
    );
    let out = server.cli(&[
        "function",
        "logs",
        "--name",
        "printer",
        "--since",
        "ten minutes",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid since"));
    assert_eq!(http.get("/v1/invocations/no-such-id").status, 404);
    let key = http
        .post_json("/v1/keys", &json!({"role": "invoker"}))
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let invoker = server.http().with_key(&key);
    assert_eq!(invoker.get(&format!("/v1/invocations/{cold}")).status, 403);
    assert_eq!(invoker.get("/v1/functions/printer/logs").status, 403);
    assert_eq!(invoker.get("/v1/functions/printer/invocations").status, 403);
    let scoped = http
        .post_json(
            "/v1/keys",
            &json!({"role": "developer", "functions": ["other-*"]}),
        )
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Out of scope: a record is "not found", as if it did not exist.
    assert_eq!(
        server
            .http()
            .with_key(&scoped)
            .get(&format!("/v1/invocations/{cold}"))
            .status,
        404
    );

    // Records and logs survive a restart.
    server.restart();
    assert_eq!(record(&server, &cold)["cold_start"], true);
    let logs = server.cli_ok(&[
        "function",
        "logs",
        "--name",
        "printer",
        "--request-id",
        &warm,
    ]);
    assert!(logs.contains("hello from the warm one"), "{logs}");
}

#[test]
fn follow_shows_what_is_printed_after_it_started() {
    let server = Server::start(common::API_DRIVER);
    let http = server.http();
    assert_eq!(create_fn(&http, "chatty", HANDLER, json!({})).status, 201);
    let (_, before) = invoke(
        &server,
        "chatty",
        json!({"say": "printed before following"}),
    );
    record(&server, &before);

    let mut child = Command::new(workspace_bin("skyscale"))
        .args(["function", "logs", "--name", "chatty", "--follow"])
        .env("SKYSCALE_ENDPOINT", &server.url)
        .env("SKYSCALE_API_KEY", ADMIN_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return seen,
                Ok(line) => seen.push(line),
                Err(_) => panic!("{needle:?} never came; saw {seen:?}"),
            }
        }
    };
    // The backlog first: once it is printed, the stream is following.
    wait_for("printed before following");
    let marker = format!("printed while following {}", std::process::id());
    let (status, after) = invoke(&server, "chatty", json!({ "say": marker }));
    assert_eq!(status, 200);
    let seen = wait_for(&marker);
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&format!("START RequestId: {after}"))),
        "{seen:?}"
    );
    wait_for(&format!("REPORT RequestId: {after}"));
    assert!(
        child.try_wait().unwrap().is_none(),
        "follow ended by itself"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // The stream itself: server-sent events, the backlog then new entries.
    let resp = reqwest::blocking::Client::new()
        .get(format!(
            "{}/v1/functions/chatty/logs?follow=true&request_id={after}",
            server.url
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // Following one invocation ends once its entry is sent.
    let body = resp.text().unwrap();
    assert!(body.contains("event: log\n"), "{body}");
    let data = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("{body}"));
    let entry = parse(data);
    assert_eq!(entry["request_id"], after.as_str());
    assert!(entry["text"].as_str().unwrap().contains(&marker), "{entry}");
}

#[test]
fn the_log_size_bound_holds_and_keeps_the_newest() {
    let server = Server::start_with(common::API_DRIVER, &[("SKYSCALE_LOG_MAX_MB", "1")]);
    let http = server.http();
    assert_eq!(
        create_fn(&http, "flood", HANDLER, json!({"timeout_s": 30})).status,
        201
    );
    // Each invocation prints 400 KB: cut to the newest 256 KB with a marker by the agent,
    // so six of them are well over the 1 MB bound.
    let ids: Vec<String> = (0..6)
        .map(|_| {
            let (status, id) = invoke(&server, "flood", json!({"print_kb": 400}));
            assert_eq!(status, 200);
            id
        })
        .collect();
    let newest = ids.last().unwrap();
    record(&server, newest);

    let store = skyscale_store::Store::open(&server.dir.path().join("skyscale.db")).unwrap();
    let totals = store.record_totals().unwrap();
    assert!(totals.log_bytes <= 1024 * 1024, "{totals:?}");
    assert!(totals.log_bytes > 512 * 1024, "{totals:?}");
    assert_eq!(totals.records, 6, "records are not pruned by the log bound");

    let logs = server.cli_ok(&[
        "function",
        "logs",
        "--name",
        "flood",
        "--request-id",
        newest,
    ]);
    assert!(
        logs.contains("bytes of output dropped]"),
        "{}",
        &logs[..200.min(logs.len())]
    );
    assert!(logs.contains(&format!("last line of {newest}")));
    assert!(logs.contains(&format!("REPORT RequestId: {newest}")));
    let oldest = server.cli_ok(&[
        "function",
        "logs",
        "--name",
        "flood",
        "--request-id",
        &ids[0],
    ]);
    assert!(oldest.is_empty(), "the oldest logs should have gone first");
}
