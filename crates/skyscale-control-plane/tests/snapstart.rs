//! SnapStart against the real daemon and real sandboxes: gVisor snapshots a function after
//! its init and restores it on cold starts (hooks, fresh randomness, a new identity, the
//! record and REPORT line saying so); a code change invalidates the snapshot; a broken
//! snapshot falls back to a normal cold start and says so; runc reports SnapStart `Off`
//! with its reason and cold-starts normally.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{create_fn, tail, wait_for, zip_of, Http, Resp, Server};
use serde_json::{json, Value};

/// State made at import (a token, an import count kept in `/tmp`, a module-level random
/// value), hooks that record themselves, and a handler that reports all of it.
const SNAPPY: &str = r#"
import os, random, time, uuid
import snapshot_restore_py

VERSION = "v1"
TOKEN = uuid.uuid4().hex
try:
    with open("/tmp/imports") as f:
        IMPORTS = int(f.read()) + 1
except FileNotFoundError:
    IMPORTS = 1
with open("/tmp/imports", "w") as f:
    f.write(str(IMPORTS))
VALUE = random.random()
BEFORE = []
AFTER = []


@snapshot_restore_py.register_before_snapshot
def before():
    BEFORE.append(1)
    print("before-snapshot hook ran")


def after():
    global VALUE
    VALUE = random.random()
    AFTER.append(1)
    print("after-restore hook ran")


snapshot_restore_py.register_after_restore(after)


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {
        "version": VERSION,
        "token": TOKEN,
        "imports": IMPORTS,
        "value": VALUE,
        "before": len(BEFORE),
        "after": len(AFTER),
        "stream": context.log_stream_name,
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
    }
"#;

fn gvisor() -> Server {
    Server::start_with("gvisor", &[("WARM_POOL_SIZE", "0")])
}

/// Invokes with the log tail; returns the answer and the decoded logs.
fn invoke_tail(http: &Http, name: &str, payload: &str) -> (Resp, String) {
    let resp = http
        .client
        .post(format!("{}/v1/functions/{name}/invoke", http.base))
        .bearer_auth(http.key.as_deref().unwrap())
        .header("x-skyscale-log-type", "Tail")
        .body(payload.to_owned())
        .send()
        .unwrap();
    let resp = Resp {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().unwrap().to_vec(),
    };
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let logs = resp
        .header("x-skyscale-log-result")
        .map(|b64| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
            .unwrap()
        })
        .unwrap();
    (resp, logs)
}

/// The stored record of an invocation (written in the background, after the answer).
fn record(server: &Server, request_id: &str) -> Value {
    wait_for(server, Duration::from_secs(10), "the record", || {
        let r = server.http().get(&format!("/v1/invocations/{request_id}"));
        (r.status == 200).then(|| r.json())
    })
}

/// The `snap_start` of a function (`/v1/functions/<name>`) or of one of its versions
/// (`/v1/functions/<name>/versions/<n>`, read from the list).
fn snap_start(http: &Http, path: &str) -> Value {
    let (path, version) = match path.split_once("/versions/") {
        Some((f, n)) => (format!("{f}/versions"), Some(n.parse::<u64>().unwrap())),
        None => (path.to_owned(), None),
    };
    let r = http.get(&path);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let doc = r.json();
    let info = match version {
        Some(n) => doc["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["version"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no version {n} in {doc}")),
        None => doc,
    };
    info["snap_start"].clone()
}

/// Waits until the function (or version) at `path` reports its snapshot ready.
fn wait_snapshot(server: &Server, path: &str) {
    wait_for(server, Duration::from_secs(60), "the snapshot", || {
        let s = snap_start(&server.http(), path);
        (s["optimization_status"] == "On").then_some(())
    });
}

/// A cold start of `name` while a warm sandbox is busy: runs `n` invocations at once, each
/// sleeping, and returns every answer with its logs.
fn concurrent(server: &Server, name: &str, n: usize) -> Vec<(Resp, String)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let http = server.http();
                s.spawn(move || invoke_tail(&http, name, r#"{"sleep": 1.5}"#))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn cold(answers: &[(Resp, String)]) -> Vec<&(Resp, String)> {
    answers
        .iter()
        .filter(|(r, _)| r.header("x-skyscale-cold-start") == Some("true"))
        .collect()
}

/// The restore path whole: a first cold start is normal and leaves a snapshot behind; the
/// next cold starts restore it, with the state initialised before it (one import, the same
/// token), the before-snapshot hook run once, the after-restore hook run in each, a fresh
/// random value and log stream in each, and the record and REPORT line saying `snap-start`.
#[test]
fn a_function_with_snap_start_is_restored_with_its_initialised_state() {
    let server = gvisor();
    let http = server.http();
    let r = create_fn(
        &http,
        "snappy",
        SNAPPY,
        json!({"snap_start": "PublishedVersions"}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let s = r.json()["snap_start"].clone();
    assert_eq!(s["apply_on"], "PublishedVersions");
    assert_eq!(
        s["optimization_status"], "Off",
        "no snapshot before a cold start: {s}"
    );

    let started = Instant::now();
    let (first, logs) = invoke_tail(&http, "snappy", "{}");
    let fresh_ms = started.elapsed().as_millis();
    let first_id = first.header("x-skyscale-request-id").unwrap().to_owned();
    assert!(logs.contains("Init Duration"), "{logs}");
    assert_eq!(record(&server, &first_id)["init_type"], "on-demand");
    assert_eq!(first.json()["init_type"], "on-demand");
    wait_snapshot(&server, "/v1/functions/snappy");

    let answers = concurrent(&server, "snappy", 3);
    let restored = cold(&answers);
    assert_eq!(restored.len(), 2, "one warm sandbox, two cold starts");
    let mut values = Vec::new();
    let mut streams = Vec::new();
    let mut tokens = Vec::new();
    for (r, logs) in &restored {
        let body = r.json();
        let id = r.header("x-skyscale-request-id").unwrap();
        assert_eq!(record(&server, id)["init_type"], "snap-start", "{body}");
        assert_eq!(body["init_type"], "snap-start");
        assert_eq!(
            body["imports"], 1,
            "init ran once, before the snapshot: {body}"
        );
        assert_eq!(body["before"], 1, "{body}");
        assert_eq!(body["after"], 1, "{body}");
        assert!(logs.contains("after-restore hook ran"), "{logs}");
        assert!(logs.contains("Restore Duration: "), "{logs}");
        assert!(!logs.contains("Init Duration"), "{logs}");
        let restore_ms = r.header("x-skyscale-init-duration-ms").unwrap().to_owned();
        eprintln!(
            "restore to ready: {restore_ms} ms (a fresh cold start answered in {fresh_ms} ms)"
        );
        values.push(body["value"].as_f64().unwrap());
        streams.push(body["stream"].as_str().unwrap().to_owned());
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        tokens[0], tokens[1],
        "both restored the same initialised state"
    );
    assert_ne!(
        tokens[0],
        first.json()["token"].as_str().unwrap(),
        "the snapshot's sandbox is not the one that served the first call"
    );
    assert_ne!(
        values[0], values[1],
        "random is reseeded after each restore"
    );
    assert_ne!(
        streams[0], streams[1],
        "each restored sandbox has its own log stream"
    );
    let metrics = http.get("/metrics").body;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("skyscale_snapshot_restores_total 2"),
        "{}",
        tail(&metrics, 30)
    );
}

/// A new deploy is a new revision: its snapshot is gone (`Off`), the next cold start runs
/// the new code normally, and the snapshot taken after it restores the new code.
#[test]
fn a_code_change_invalidates_the_snapshot() {
    let server = gvisor();
    let http = server.http();
    let r = create_fn(
        &http,
        "changing",
        SNAPPY,
        json!({"snap_start": "PublishedVersions"}),
    );
    assert_eq!(r.status, 201);
    invoke_tail(&http, "changing", "{}");
    wait_snapshot(&server, "/v1/functions/changing");
    let snapshots = server.sandbox_root().join("task/.snapshots");
    let images = || {
        std::fs::read_dir(&snapshots)
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(images(), 1);

    let v2 = SNAPPY.replace("VERSION = \"v1\"", "VERSION = \"v2\"");
    let r = http.send(
        "PUT",
        "/v1/functions/changing/code",
        Some(zip_of(&[("handler.py", &v2)])),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let s = snap_start(&http, "/v1/functions/changing");
    assert_eq!(s["optimization_status"], "Off", "{s}");
    wait_for(
        &server,
        Duration::from_secs(10),
        "the old image gone",
        || (images() == 0).then_some(()),
    );
    let (r, _) = invoke_tail(&http, "changing", "{}");
    assert_eq!(r.json()["version"], "v2");
    assert_eq!(r.json()["init_type"], "on-demand");
    wait_snapshot(&server, "/v1/functions/changing");
    let answers = concurrent(&server, "changing", 2);
    let restored = cold(&answers);
    assert_eq!(restored.len(), 1);
    let body = restored[0].0.json();
    assert_eq!(body["init_type"], "snap-start", "{body}");
    assert_eq!(body["version"], "v2", "the restore runs the new code");
    // Images do not outlive their control plane.
    let mut server = server;
    server.stop();
    assert_eq!(images(), 0, "the snapshots are removed at shutdown");
}

/// A snapshot whose files were truncated fails to restore: that cold start falls back to a
/// normal one, its logs and the metric say so, and a new snapshot is taken.
#[test]
fn a_broken_snapshot_falls_back_to_a_normal_cold_start() {
    let server = gvisor();
    let http = server.http();
    let r = create_fn(
        &http,
        "broken",
        SNAPPY,
        json!({"snap_start": "PublishedVersions"}),
    );
    assert_eq!(r.status, 201);
    invoke_tail(&http, "broken", "{}");
    wait_snapshot(&server, "/v1/functions/broken");
    let root = server.sandbox_root().join("task/.snapshots");
    let image = std::fs::read_dir(&root)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for file in std::fs::read_dir(&image).unwrap().flatten() {
        let len = file.metadata().unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(file.path())
            .unwrap();
        f.set_len(len / 4).unwrap();
    }

    let answers = concurrent(&server, "broken", 2);
    let fell_back = cold(&answers);
    assert_eq!(fell_back.len(), 1);
    let (r, logs) = fell_back[0];
    let body = r.json();
    assert_eq!(body["init_type"], "on-demand", "{body}");
    assert_eq!(body["imports"], 1, "a normal init ran: {body}");
    assert!(
        logs.contains("SnapStart: restoring the snapshot failed"),
        "{logs}"
    );
    assert!(logs.contains("Init Duration"), "{logs}");
    let id = r.header("x-skyscale-request-id").unwrap();
    assert_eq!(record(&server, id)["init_type"], "on-demand");
    let metrics = String::from_utf8_lossy(&http.get("/metrics").body).into_owned();
    assert!(
        metrics.contains("skyscale_snapshot_restore_fallbacks_total 1"),
        "{}",
        tail(&metrics, 30)
    );
    // The broken image is gone and a new one is taken.
    wait_snapshot(&server, "/v1/functions/broken");
    assert!(!image.exists(), "the broken image was removed");
    let answers = concurrent(&server, "broken", 3);
    let restored = cold(&answers);
    assert!(!restored.is_empty());
    for (r, _) in restored {
        assert_eq!(r.json()["init_type"], "snap-start");
    }
}

/// A published version's snapshot is taken at publish; its cold starts restore it.
#[test]
fn a_published_version_is_snapshotted_at_publish() {
    let server = gvisor();
    let http = server.http();
    let r = create_fn(
        &http,
        "pub",
        SNAPPY,
        json!({"snap_start": "PublishedVersions"}),
    );
    assert_eq!(r.status, 201);
    let r = http.post_json("/v1/functions/pub/versions", &json!({}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["snap_start"]["apply_on"], "PublishedVersions");
    wait_snapshot(&server, "/v1/functions/pub/versions/1");
    let resp = http
        .client
        .post(format!("{}/v1/functions/pub/invoke?qualifier=1", http.base))
        .bearer_auth(http.key.as_deref().unwrap())
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["init_type"], "snap-start", "{body}");
    assert_eq!(body["before"], 1);
    // $LATEST has none yet: it never had a cold start.
    let s = snap_start(&http, "/v1/functions/pub");
    assert_eq!(s["optimization_status"], "Off", "{s}");
}

/// runc cannot snapshot here (CRIU fails on this kernel): SnapStart is accepted, reported
/// `Off` with the reason, and every cold start is a normal one.
#[test]
fn runc_reports_snap_start_off_and_cold_starts_normally() {
    let server = Server::start_with("runc", &[("WARM_POOL_SIZE", "0")]);
    let http = server.http();
    let r = create_fn(
        &http,
        "plain",
        SNAPPY,
        json!({"snap_start": "PublishedVersions"}),
    );
    assert_eq!(r.status, 201);
    let s = r.json()["snap_start"].clone();
    assert_eq!(s["optimization_status"], "Off");
    assert!(
        s["reason"].as_str().unwrap().contains("CRIU"),
        "the reason names what is missing: {s}"
    );
    let (r, logs) = invoke_tail(&http, "plain", "{}");
    assert_eq!(r.json()["init_type"], "on-demand");
    assert!(logs.contains("Init Duration"), "{logs}");
    let text = server.cli_ok(&["function", "get", "--name", "plain"]);
    assert!(
        text.contains("snap_start:  PublishedVersions (Off: "),
        "{text}"
    );
    // The CLI sets it too.
    server.cli_ok(&[
        "function",
        "update",
        "--name",
        "plain",
        "--snap-start",
        "None",
    ]);
    let text = server.cli_ok(&["function", "get", "--name", "plain"]);
    assert!(text.contains("snap_start:  None\n"), "{text}");
    server.cli_fails(
        &[
            "function",
            "update",
            "--name",
            "plain",
            "--snap-start",
            "Always",
        ],
        1,
        "not one of: PublishedVersions, None",
    );
    server.cli_ok(&[
        "function",
        "update",
        "--name",
        "plain",
        "--snap-start",
        "PublishedVersions",
    ]);
    let answers = concurrent(&server, "plain", 2);
    for (r, _) in cold(&answers) {
        assert_eq!(r.json()["init_type"], "on-demand");
    }
    assert!(
        std::fs::read_dir(server.sandbox_root().join("task/.snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "no image is ever taken"
    );
}

const HOOKED: &str = r#"
import os, time
import snapshot_restore_py

@snapshot_restore_py.register_before_snapshot
def before():
    if os.environ.get("FAIL") == "before":
        raise ValueError("cannot close the pool")

@snapshot_restore_py.register_after_restore
def after():
    if os.environ.get("FAIL") == "after":
        raise RuntimeError("cannot reconnect")

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"#;

/// A before-snapshot hook that raises means no snapshot (`Off`, with the hook's error as the
/// reason); an after-restore hook that raises fails that restore: the invocation falls back
/// to a normal cold start, its log shows the traceback, and the snapshot is not used again.
/// A function with network cannot be snapshotted on gVisor, and says so.
#[test]
fn failing_hooks_mean_no_snapshot_or_a_fallback() {
    let server = gvisor();
    let http = server.http();
    let on = json!({"snap_start": "PublishedVersions", "environment": {"FAIL": "before"}});
    assert_eq!(create_fn(&http, "before", HOOKED, on).status, 201);
    invoke_tail(&http, "before", "{}");
    let s = wait_for(&server, Duration::from_secs(60), "the failed build", || {
        let s = snap_start(&http, "/v1/functions/before");
        s["reason"]
            .as_str()
            .is_some_and(|r| r.contains("before-snapshot hook failed"))
            .then_some(s)
    });
    assert_eq!(s["optimization_status"], "Off");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("ValueError: cannot close the pool"),
        "{s}"
    );

    let on = json!({"snap_start": "PublishedVersions", "environment": {"FAIL": "after"}});
    assert_eq!(create_fn(&http, "after", HOOKED, on).status, 201);
    invoke_tail(&http, "after", "{}");
    wait_snapshot(&server, "/v1/functions/after");
    let answers = concurrent(&server, "after", 2);
    let fell_back = cold(&answers);
    assert_eq!(fell_back.len(), 1);
    let (r, logs) = fell_back[0];
    assert_eq!(r.json()["init_type"], "on-demand");
    assert!(
        logs.contains("an after-restore hook failed: RuntimeError: cannot reconnect"),
        "{logs}"
    );
    assert!(logs.contains("Traceback"), "{logs}");
    let s = snap_start(&http, "/v1/functions/after");
    assert_eq!(s["optimization_status"], "Off", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("after-restore hook failed"),
        "{s}"
    );

    let net = json!({"snap_start": "PublishedVersions", "network": true});
    let r = create_fn(&http, "networked", HOOKED, net);
    assert_eq!(r.status, 201);
    let s = r.json()["snap_start"].clone();
    assert_eq!(s["optimization_status"], "Off");
    assert!(s["reason"].as_str().unwrap().contains("network"), "{s}");
}
