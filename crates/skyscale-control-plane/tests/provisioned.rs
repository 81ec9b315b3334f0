//! Provisioned concurrency against the real daemon and real runc and gVisor sandboxes:
//! initialised sandboxes kept ready for an alias, warm first invocations, a killed sandbox
//! replaced, spillover to on-demand, a restart, deletion; a handler that raises at import;
//! an alias that moves; and the `/v1` and CLI surface. (The Lambda API's shapes and errors:
//! `boto3/provisioned.py`.)
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{create_fn, tail, wait_for, Resp, Server};
use serde_json::{json, Value};

/// Says how its sandbox was initialised, from the environment at import and now, which
/// sandbox ran it (a token chosen at import) and sleeps for `event["sleep"]` seconds.
const HANDLER: &str = r#"
import os, time, uuid

TOKEN = uuid.uuid4().hex
AT_IMPORT = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")
print("initialising", TOKEN)


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {
        "token": TOKEN,
        "at_import": AT_IMPORT,
        "now": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
    }
"#;

fn config(server: &Server, qualifier: &str) -> Value {
    let r = server
        .http()
        .get(&format!("/v1/functions/pc/provisioned/{qualifier}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn wait_status(server: &Server, qualifier: &str, status: &str, within: Duration) -> Value {
    wait_for(
        server,
        within,
        &format!("{qualifier} to be {status}"),
        || {
            let c = config(server, qualifier);
            (c["status"] == status).then_some(c)
        },
    )
}

fn invoke(server: &Server, qualifier: &str, sleep: f64) -> Resp {
    let r = server.http().post_json(
        &format!("/v1/functions/pc/invoke?qualifier={qualifier}"),
        &json!({ "sleep": sleep }),
    );
    assert_eq!(
        r.status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&r.body),
        tail(&server.log(), 40)
    );
    r
}

/// The invocation's record (polled: it is written in the background).
fn record(server: &Server, r: &Resp) -> Value {
    let id = r.header("x-skyscale-request-id").unwrap().to_owned();
    wait_for(server, Duration::from_secs(10), "the record", || {
        let r = server.http().get(&format!("/v1/invocations/{id}"));
        (r.status == 200).then(|| r.json())
    })
}

/// Kills every process of sandbox `id` (found by its cgroup, which is named by the id).
fn kill_sandbox(id: &str) -> usize {
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if cgroup.contains(id) {
            let ok = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap()
                .success();
            killed += usize::from(ok);
        }
    }
    killed
}

fn wait_sandboxes(
    server: &Server,
    what: &str,
    cond: impl Fn(&BTreeSet<String>) -> bool,
) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = server.sandbox_ids();
        if cond(&ids) {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; sandboxes: {ids:?}\n{}",
            tail(&server.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(server: &Server, line_start: &str) -> Option<u64> {
    let text = String::from_utf8(server.http().get("/metrics").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn provisioned_sandboxes_on_an_alias_are_kept_ready_replaced_and_freed() {
    kept_ready_replaced_and_freed("runc");
}

#[test]
fn provisioned_sandboxes_on_gvisor() {
    kept_ready_replaced_and_freed("gvisor");
}

fn kept_ready_replaced_and_freed(driver: &str) {
    let mut server = Server::start_with(driver, &[("WARM_POOL_SIZE", "0")]);
    let http = server.http();
    assert_eq!(create_fn(&http, "pc", HANDLER, json!({})).status, 201);
    assert_eq!(
        http.post_json("/v1/functions/pc/versions", &json!({}))
            .status,
        201
    );
    let r = http.post_json(
        "/v1/functions/pc/aliases",
        &json!({"name": "live", "version": "1"}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // Put: IN_PROGRESS at first (nothing is initialised yet), then READY with two sandboxes.
    let r = http.send(
        "PUT",
        "/v1/functions/pc/provisioned/live",
        Some(br#"{"requested": 2}"#.to_vec()),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "IN_PROGRESS", "{}", r.json());
    let ready = wait_status(&server, "live", "READY", Duration::from_secs(60));
    assert_eq!(
        (ready["allocated"].as_u64(), ready["version"].as_u64()),
        (Some(2), Some(1))
    );
    let two = wait_sandboxes(&server, "two provisioned sandboxes", |ids| ids.len() == 2);
    assert!(server.log().contains("provisioned sandbox initialised"));
    assert_eq!(
        metric(&server, "skyscale_provisioned_ready{function=\"pc\"}"),
        Some(2)
    );

    // The first invocation is warm: no init, in a provisioned sandbox, which was
    // initialised as one.
    let r = invoke(&server, "live", 0.0);
    assert_eq!(r.header("x-skyscale-cold-start"), Some("false"));
    let body = r.json();
    assert_eq!(body["at_import"], "provisioned-concurrency", "{body}");
    assert_eq!(body["now"], "provisioned-concurrency", "{body}");
    let rec = record(&server, &r);
    assert_eq!(rec["init_type"], "provisioned-concurrency", "{rec}");
    assert_eq!(rec["cold_start"], false, "{rec}");
    // Its log has no init: that was the provisioned sandbox's own (on the control plane's
    // log), as Lambda reports it.
    let logs = server.http().get(&format!(
        "/v1/functions/pc/logs?request_id={}",
        rec["request_id"].as_str().unwrap()
    ));
    assert_eq!(logs.status, 200);
    let text = String::from_utf8_lossy(&logs.body);
    assert!(text.contains("REPORT RequestId"), "{text}");
    assert!(
        !text.contains("Init Duration") && !text.contains("initialising"),
        "{text}"
    );
    assert_eq!(server.sandbox_ids(), two, "no sandbox was started for it");

    // A killed sandbox is replaced: READY again with a new one in its place.
    let victim = two.iter().next().unwrap().clone();
    assert!(kill_sandbox(&victim) > 0, "found no process of {victim}");
    let after = wait_sandboxes(&server, "the killed sandbox replaced", |ids| {
        ids.len() == 2 && !ids.contains(&victim)
    });
    wait_status(&server, "live", "READY", Duration::from_secs(60));

    // Three at once: two provisioned sandboxes and one on demand (a spillover).
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let server = &server;
                s.spawn(move || invoke(server, "live", 1.5))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut kinds: Vec<String> = answers
        .iter()
        .map(|r| record(&server, r)["init_type"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "on-demand",
            "provisioned-concurrency",
            "provisioned-concurrency"
        ]
    );
    let cold: Vec<_> = answers
        .iter()
        .filter(|r| r.header("x-skyscale-cold-start") == Some("true"))
        .collect();
    assert_eq!(cold.len(), 1, "one on-demand cold start");
    assert_eq!(cold[0].json()["at_import"], "on-demand");
    assert!(
        metric(
            &server,
            "skyscale_provisioned_spillover_invocations_total{function=\"pc\"}"
        )
        .is_some_and(|n| n >= 1),
        "the spillover is counted"
    );
    let three = wait_sandboxes(&server, "two provisioned and one on-demand", |ids| {
        ids.len() == 3 && after.is_subset(ids)
    });

    // A restart provisions the stored configuration again.
    server.restart();
    wait_status(&server, "live", "READY", Duration::from_secs(60));
    let restarted = wait_sandboxes(&server, "two provisioned after the restart", |ids| {
        ids.len() == 2 && ids.is_disjoint(&three)
    });

    // Deleting the configuration frees them.
    let r = server
        .http()
        .send("DELETE", "/v1/functions/pc/provisioned/live", None);
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    wait_sandboxes(&server, "the provisioned sandboxes destroyed", |ids| {
        ids.is_disjoint(&restarted)
    });
    assert_eq!(
        server
            .http()
            .get("/v1/functions/pc/provisioned/live")
            .status,
        404
    );
    let r = invoke(&server, "live", 0.0);
    assert_eq!(r.header("x-skyscale-cold-start"), Some("true"));
    assert_eq!(r.json()["now"], "on-demand");
}

#[test]
fn a_handler_that_raises_at_import_fails_the_configuration_and_is_retried() {
    let server = Server::start_with("runc", &[("WARM_POOL_SIZE", "0")]);
    let http = server.http();
    let broken =
        "raise ValueError('no database at import')\n\ndef handler(event, context):\n    return 1\n";
    assert_eq!(create_fn(&http, "pc", broken, json!({})).status, 201);
    assert_eq!(
        http.post_json("/v1/functions/pc/versions", &json!({}))
            .status,
        201
    );
    let r = http.send(
        "PUT",
        "/v1/functions/pc/provisioned/1",
        Some(br#"{"requested": 2}"#.to_vec()),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let failed = wait_status(&server, "1", "FAILED", Duration::from_secs(60));
    let reason = failed["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("ValueError") && reason.contains("no database at import"),
        "{reason}"
    );
    assert!(reason.contains("next attempt in"), "{reason}");
    assert_eq!(failed["allocated"], 0, "{failed}");
    // Tried again, one sandbox at a time, after a backoff: visible in the reason (the
    // first two attempts were the two sandboxes asked for).
    wait_for(&server, Duration::from_secs(30), "a second attempt", || {
        let c = config(&server, "1");
        (c["status"] == "FAILED"
            && c["status_reason"]
                .as_str()
                .is_some_and(|r| r.contains("attempt 3") || r.contains("attempt 4")))
        .then_some(())
    });
    // No sandbox is left behind by the failed inits.
    wait_sandboxes(&server, "no sandbox left", |ids| ids.is_empty());
}

/// `/v1` and the CLI: put, get, list, delete, and the refusals by name.
#[test]
fn cli_puts_gets_lists_and_deletes_provisioned_concurrency() {
    let server = Server::start(common::API_DRIVER);
    let http = server.http();
    assert_eq!(create_fn(&http, "pc", HANDLER, json!({})).status, 201);
    assert_eq!(
        http.post_json("/v1/functions/pc/versions", &json!({}))
            .status,
        201
    );
    let out = server.cli_ok(&[
        "function",
        "provisioned",
        "put",
        "--name",
        "pc",
        "--qualifier",
        "1",
        "--count",
        "1",
    ]);
    assert!(out.contains("pc:1"), "{out}");
    wait_status(&server, "1", "READY", Duration::from_secs(30));
    let out = server.cli_ok(&[
        "function",
        "provisioned",
        "get",
        "--name",
        "pc",
        "--qualifier",
        "1",
    ]);
    assert!(out.contains("READY (1 of 1 ready)"), "{out}");
    let out = server.cli_ok(&[
        "--output",
        "json",
        "function",
        "provisioned",
        "list",
        "--name",
        "pc",
    ]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["configs"][0]["qualifier"], "1", "{list}");
    assert_eq!(list["configs"][0]["status"], "READY", "{list}");
    server.cli_fails(
        &[
            "function",
            "provisioned",
            "put",
            "--name",
            "pc",
            "--qualifier",
            "$LATEST",
            "--count",
            "1",
        ],
        1,
        "unpublished function versions",
    );
    server.cli_fails(
        &[
            "function",
            "provisioned",
            "put",
            "--name",
            "pc",
            "--qualifier",
            "1",
            "--count",
            "0",
        ],
        1,
        "ProvisionedConcurrentExecutions 0 is out of range",
    );
    let out = server.cli_ok(&[
        "function",
        "provisioned",
        "delete",
        "--name",
        "pc",
        "--qualifier",
        "1",
    ]);
    assert!(out.contains("deleted"), "{out}");
    server.cli_fails(
        &[
            "function",
            "provisioned",
            "get",
            "--name",
            "pc",
            "--qualifier",
            "1",
        ],
        1,
        "no provisioned concurrency configuration",
    );
    // The audit log has both changes.
    let audit = String::from_utf8(http.get("/v1/audit").body).unwrap();
    assert!(
        audit.contains("provisioned.put") && audit.contains("provisioned.delete"),
        "{audit}"
    );
}

/// An alias that moves takes its provisioned sandboxes along; one given weights later turns
/// `FAILED` and its sandboxes go.
#[test]
fn provisioned_sandboxes_follow_their_alias() {
    let server = Server::start(common::API_DRIVER);
    let http = server.http();
    assert_eq!(create_fn(&http, "pc", HANDLER, json!({})).status, 201);
    assert_eq!(
        http.post_json("/v1/functions/pc/versions", &json!({}))
            .status,
        201
    );
    let r = http.send(
        "PATCH",
        "/v1/functions/pc",
        Some(br#"{"environment": {"V": "2"}}"#.to_vec()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = http.post_json("/v1/functions/pc/versions", &json!({}));
    assert_eq!(r.json()["version"], 2, "{}", r.json());
    let r = http.post_json(
        "/v1/functions/pc/aliases",
        &json!({"name": "live", "version": "1"}),
    );
    assert_eq!(r.status, 201);
    let r = http.send(
        "PUT",
        "/v1/functions/pc/provisioned/live",
        Some(br#"{"requested": 1}"#.to_vec()),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let c = wait_status(&server, "live", "READY", Duration::from_secs(30));
    assert_eq!(c["version"], 1, "{c}");

    // Moved to version 2: READY there, and its invocations run provisioned.
    let r = http.send(
        "PATCH",
        "/v1/functions/pc/aliases/live",
        Some(br#"{"version": "2"}"#.to_vec()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    wait_for(
        &server,
        Duration::from_secs(30),
        "the sandboxes on version 2",
        || {
            let c = config(&server, "live");
            (c["version"] == 2 && c["status"] == "READY").then_some(())
        },
    );
    let r = invoke(&server, "live", 0.0);
    assert_eq!(r.header("x-skyscale-executed-version"), Some("2"));
    assert_eq!(r.header("x-skyscale-cold-start"), Some("false"));
    assert_eq!(record(&server, &r)["init_type"], "provisioned-concurrency");

    // Weights later: FAILED, by name.
    let r = http.send(
        "PATCH",
        "/v1/functions/pc/aliases/live",
        Some(br#"{"routing": {"version": "1", "weight": 0.5}}"#.to_vec()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let c = wait_status(&server, "live", "FAILED", Duration::from_secs(30));
    assert!(
        c["status_reason"].as_str().unwrap().contains("weights"),
        "{c}"
    );
    assert_eq!(c["allocated"], 0, "{c}");
}
