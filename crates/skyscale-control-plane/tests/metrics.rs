//! Metrics against the real daemon and real (runc) sandboxes: a known mix of invocations,
//! then `GET /metrics` parsed by Prometheus's own Python parser (`prometheus_client`, from
//! the test virtualenv), `GET /v1/functions/{name}/metrics` and `skyscale function metrics`
//! must all count exactly those invocations; keys see only what their role and patterns
//! allow.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{create_fn, tail, test_python, Http, Server};
use serde_json::{json, Value};

const HANDLER: &str = r#"
import time


def handler(event, context):
    if event.get("fail"):
        raise ValueError("bad input")
    if event.get("weird"):
        # A class name can be any string: error types come from user code.
        raise type('Odd"Error\\ with\nnewline', (Exception,), {})("odd")
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"#;

/// One sample as the parser saw it.
#[derive(Debug)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses an exposition with `prometheus_client.parser.text_string_to_metric_families`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "kind": fam.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = Command::new(test_python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .iter()
        .map(|s| Sample {
            family: s["family"].as_str().unwrap().to_owned(),
            kind: s["kind"].as_str().unwrap().to_owned(),
            name: s["name"].as_str().unwrap().to_owned(),
            labels: s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

fn scrape(http: &Http) -> (String, Vec<Sample>) {
    let resp = http.get("/metrics");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(resp.body).unwrap();
    let samples = parse_exposition(&text);
    (text, samples)
}

fn invoke(http: &Http, payload: &str) -> common::Resp {
    http.invoke("metered", payload)
}

fn create_key(http: &Http, role: &str, functions: &[&str]) -> String {
    let resp = http.post_json("/v1/keys", &json!({"role": role, "functions": functions}));
    assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    resp.json()["key"].as_str().unwrap().to_owned()
}

#[test]
fn metrics_count_exactly_the_invocations_made() {
    let server = Server::start_with(common::API_DRIVER, &[("WARM_POOL_SIZE", "1")]);
    let http = server.http();
    let created = create_fn(&http, "metered", HANDLER, json!({"timeout_s": 1}));
    assert_eq!(created.status, 201);

    // 5 successes: cold, then warm.
    for i in 0..5 {
        let r = invoke(&http, "{}");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-skyscale-cold-start"),
            Some(["false", "true"][usize::from(i == 0)])
        );
    }
    // 2 handler errors.
    for _ in 0..2 {
        let r = invoke(&http, r#"{"fail": true}"#);
        assert_eq!(r.header("x-skyscale-function-error"), Some("Unhandled"));
        assert_eq!(r.json()["errorType"], "ValueError");
    }
    // 2 throttled: reserved concurrency 0 disables the function (its warm sandbox stays).
    let put = |n: Option<u32>| {
        let path = "/v1/functions/metered/concurrency";
        let r = match n {
            Some(n) => http.send(
                "PUT",
                path,
                Some(serde_json::to_vec(&json!({ "reserved_concurrency": n })).unwrap()),
            ),
            None => http.send("DELETE", path, None),
        };
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    put(Some(0));
    for _ in 0..2 {
        assert_eq!(invoke(&http, "{}").status, 429);
    }
    put(None);
    // 1 timeout (1 s timeout): its sandbox is destroyed, so the next success is cold.
    let r = invoke(&http, r#"{"sleep": 3}"#);
    assert_eq!(r.json()["errorType"], "Sandbox.Timedout");
    let r = invoke(&http, "{}");
    assert_eq!(r.header("x-skyscale-cold-start"), Some("true"));

    // Invocations: 6 successes, 2 function errors, 1 timeout, 2 throttled = 11; 9 of them
    // ran in a sandbox; 2 cold starts; one warm sandbox left.
    let (text, samples) = scrape(&http);
    let f = ("function", "metered");
    for (status, n) in [
        ("success", 6.0),
        ("function_error", 2.0),
        ("timeout", 1.0),
        ("throttled", 2.0),
        ("crashed", 0.0),
    ] {
        assert_eq!(
            value(
                &samples,
                "skyscale_invocations_total",
                &[f, ("status", status)]
            ),
            n,
            "{status}\n{text}"
        );
    }
    assert_eq!(
        value(
            &samples,
            "skyscale_errors_total",
            &[f, ("error_type", "ValueError")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "skyscale_errors_total",
            &[f, ("error_type", "Sandbox.Timedout")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "skyscale_throttles_total",
            &[f, ("reason", "reserved_concurrency")]
        ),
        2.0
    );
    assert_eq!(value(&samples, "skyscale_cold_starts_total", &[f]), 2.0);
    assert_eq!(
        value(&samples, "skyscale_duration_seconds_count", &[f]),
        9.0
    );
    assert_eq!(
        value(
            &samples,
            "skyscale_duration_seconds_bucket",
            &[f, ("le", "+Inf")]
        ),
        9.0
    );
    // The timeout ran for at least its 1 s: the 0.5 s bucket does not hold all nine.
    assert!(
        value(
            &samples,
            "skyscale_duration_seconds_bucket",
            &[f, ("le", "0.5")]
        ) <= 8.0
    );
    assert!(value(&samples, "skyscale_duration_seconds_sum", &[f]) >= 1.0);
    assert_eq!(
        value(&samples, "skyscale_init_duration_seconds_count", &[f]),
        2.0
    );
    assert_eq!(value(&samples, "skyscale_warm_sandboxes", &[f]), 1.0);
    assert_eq!(value(&samples, "skyscale_concurrent_executions", &[f]), 0.0);
    // The families have the types Prometheus expects.
    let kind = |family: &str| {
        samples
            .iter()
            .find(|s| s.family == family)
            .map(|s| s.kind.clone())
            .unwrap_or_else(|| panic!("no family {family}"))
    };
    assert_eq!(kind("skyscale_invocations"), "counter");
    assert_eq!(kind("skyscale_duration_seconds"), "histogram");
    assert_eq!(kind("skyscale_sandboxes"), "gauge");
    // Host gauges.
    for state in ["idle", "busy", "generic", "booting"] {
        value(&samples, "skyscale_sandboxes", &[("state", state)]);
    }
    assert_eq!(
        value(&samples, "skyscale_sandboxes", &[("state", "idle")]),
        1.0
    );
    assert_eq!(value(&samples, "skyscale_warm_pool_target", &[]), 1.0);
    assert!(value(&samples, "skyscale_warm_pool_size", &[]) <= 1.0);
    assert!(value(&samples, "skyscale_sandboxes_max", &[]) > 0.0);
    assert!(value(&samples, "skyscale_memory_used_bytes", &[]) >= 128.0 * 1024.0 * 1024.0);
    assert!(value(&samples, "skyscale_memory_budget_bytes", &[]) > 0.0);

    // The JSON summary says the same.
    let m = http.get("/v1/functions/metered/metrics?since=10m");
    assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
    let m = m.json();
    for (field, n) in [
        ("invocations", 11),
        ("successes", 6),
        ("function_errors", 2),
        ("timeouts", 1),
        ("crashes", 0),
        ("throttles", 2),
        ("cold_starts", 2),
        ("concurrent_executions", 0),
        ("warm_sandboxes", 1),
    ] {
        assert_eq!(m[field], n, "{field}: {m}");
    }
    assert_eq!(
        m["errors_by_type"],
        json!({"ValueError": 2, "Sandbox.Timedout": 1})
    );
    assert_eq!(m["duration_ms"]["count"], 9);
    assert_eq!(m["init_duration_ms"]["count"], 2);
    assert_eq!(m["complete"], true);
    let p = |q: &str| m["duration_ms"][q].as_f64().unwrap();
    assert!(p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("max"));
    // The slowest of nine is the timeout.
    assert!(p("max") >= 1000.0, "{m}");
    assert!(m["max_memory_used_mb"].as_u64().unwrap() > 0, "{m}");

    // The CLI shows the same numbers, as a table and as JSON.
    let text = server.cli_ok(&["function", "metrics", "--name", "metered", "--since", "10m"]);
    let field = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .trim()
            .to_owned()
    };
    assert_eq!(field("invocations"), "11", "{text}");
    assert_eq!(field("successes"), "6");
    assert_eq!(field("function errors"), "2");
    assert_eq!(field("timeouts"), "1");
    assert_eq!(field("throttles"), "2");
    assert_eq!(field("cold starts"), "2");
    assert_eq!(field("warm sandboxes"), "1");
    let row = |first: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(first))
            .unwrap_or_else(|| panic!("no {first} row in\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("run")[1], "9", "{text}");
    assert_eq!(row("init")[1], "2", "{text}");
    assert_eq!(row("ValueError")[1], "2", "{text}");
    assert_eq!(row("Sandbox.Timedout")[1], "1", "{text}");
    let json_out: Value = serde_json::from_str(&server.cli_ok(&[
        "function", "metrics", "--name", "metered", "--output", "json",
    ]))
    .unwrap();
    assert_eq!(json_out["invocations"], 11);
    assert_eq!(json_out["errors_by_type"]["ValueError"], 2);

    // An error type from user code with a quote, a backslash and a newline survives the
    // exposition and the real parser.
    assert_eq!(
        create_fn(&http, "odd-errors", HANDLER, json!({})).status,
        201
    );
    let r = http.invoke("odd-errors", r#"{"weird": true}"#);
    let odd = r.json()["errorType"].as_str().unwrap().to_owned();
    assert!(
        odd.contains('"') && odd.contains('\n') && odd.contains('\\'),
        "{odd}"
    );
    let (_, samples) = scrape(&http);
    assert_eq!(
        value(
            &samples,
            "skyscale_errors_total",
            &[("function", "odd-errors"), ("error_type", &odd)]
        ),
        1.0
    );
}

#[test]
fn metrics_need_a_key_that_may_read_them() {
    let server = Server::start_with(common::API_DRIVER, &[("WARM_POOL_SIZE", "0")]);
    let http = server.http();
    assert_eq!(create_fn(&http, "team-a-f", HANDLER, json!({})).status, 201);
    assert_eq!(create_fn(&http, "team-b-f", HANDLER, json!({})).status, 201);
    assert_eq!(http.invoke("team-a-f", "{}").status, 200);
    assert_eq!(http.invoke("team-b-f", "{}").status, 200);

    // No key: 401. An invoker key: 403, on both endpoints.
    let anonymous = server.http().without_key();
    assert_eq!(anonymous.get("/metrics").status, 401);
    let invoker = server.http().with_key(&create_key(&http, "invoker", &[]));
    let refused = invoker.get("/metrics");
    assert_eq!(
        refused.status,
        403,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(refused.error_code(), "forbidden");
    assert_eq!(invoker.get("/v1/functions/team-a-f/metrics").status, 403);

    // A developer key sees the series of its functions only, and the host's gauges.
    let dev = server
        .http()
        .with_key(&create_key(&http, "developer", &["team-a-*"]));
    let (text, samples) = scrape(&dev);
    assert!(!text.contains("team-b-f"), "{text}");
    assert_eq!(
        value(
            &samples,
            "skyscale_invocations_total",
            &[("function", "team-a-f"), ("status", "success")]
        ),
        1.0
    );
    value(&samples, "skyscale_memory_budget_bytes", &[]);
    assert_eq!(dev.get("/v1/functions/team-a-f/metrics").status, 200);
    let other = dev.get("/v1/functions/team-b-f/metrics");
    assert_eq!(
        other.status,
        403,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    // The admin sees both.
    let (text, _) = scrape(&http);
    assert!(
        text.contains("team-a-f") && text.contains("team-b-f"),
        "{text}"
    );

    // Bad windows and unknown functions.
    for (query, needle) in [
        ("since=yesterday", "invalid since \"yesterday\""),
        ("since=10", "30s, 10m, 2h or 1d"),
        ("since=2999-01-01T00:00:00Z", "in the future"),
        ("window=10m", "accepted: since"),
    ] {
        let r = http.get(&format!("/v1/functions/team-a-f/metrics?{query}"));
        assert_eq!(
            r.status,
            400,
            "{query}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.error_message().contains(needle),
            "{query}: {}",
            r.error_message()
        );
    }
    let r = http.get("/v1/functions/nope/metrics");
    assert_eq!(r.status, 404);
    let out = server.cli(&["function", "metrics", "--name", "team-a-f", "--since", "5x"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid since"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An RFC 3339 since works; a deleted function's series go away.
    let r = http.get("/v1/functions/team-a-f/metrics?since=2020-01-01T00:00:00Z");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["invocations"], 1);
    assert_eq!(
        http.send("DELETE", "/v1/functions/team-b-f", None).status,
        204
    );
    let (text, _) = scrape(&http);
    assert!(!text.contains("team-b-f"), "{}", tail(&text, 40));
}
