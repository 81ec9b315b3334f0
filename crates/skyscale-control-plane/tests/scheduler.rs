//! The scheduler against the real daemon and real sandboxes: parallelism, the generic warm
//! pool, concurrency limits, timeouts, memory limits, crashes, eviction, shutdown, and the
//! warm sandboxes of published versions.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{create_fn, tail, zip_of, Resp, Server};
use serde_json::json;

/// Sleeps for `event["sleep"]` seconds and says which sandbox ran it (a token chosen when
/// the module was imported, i.e. once per sandbox).
const SLEEPER: &str = r#"
import time, uuid

TOKEN = uuid.uuid4().hex


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"token": TOKEN}
"#;

const TROUBLE: &str = r#"
import os


def handler(event, context):
    mode = event.get("mode")
    if mode == "loop":
        while True:
            pass
    if mode == "alloc":
        blob = bytearray(512 * 1024 * 1024)
        for i in range(0, len(blob), 4096):
            blob[i] = 1
        return len(blob)
    if mode == "exit":
        os._exit(1)
    return {"ok": True}
"#;

fn parallel(server: &Server, name: &str, payloads: &[&str]) -> Vec<Resp> {
    std::thread::scope(|s| {
        let handles: Vec<_> = payloads
            .iter()
            .map(|p| {
                let http = server.http();
                s.spawn(move || http.invoke(name, p))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn parallel_invocations_run_in_separate_sandboxes() {
    let server = Server::start_with("runc", &[("WARM_POOL_SIZE", "0")]);
    let http = server.http();
    assert_eq!(create_fn(&http, "sleepy", SLEEPER, json!({})).status, 201);
    let answers = parallel(&server, "sleepy", &[r#"{"sleep": 1}"#; 3]);
    let mut tokens: Vec<String> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            r.json()["token"].as_str().unwrap().to_owned()
        })
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        3,
        "three concurrent calls need three sandboxes"
    );
    // All three are now warm: three more calls in parallel start nothing new.
    let again = parallel(&server, "sleepy", &[r#"{"sleep": 0.5}"#; 3]);
    for r in &again {
        assert_eq!(r.header("x-skyscale-cold-start"), Some("false"));
    }
}

#[test]
fn cold_start_specialises_a_generic_sandbox() {
    let server = Server::start_with("gvisor", &[("WARM_POOL_SIZE", "2")]);
    server.wait_health(Duration::from_secs(60), |h| h["warm_pool_idle"] == 2);
    let http = server.http();
    assert_eq!(
        create_fn(&http, "fresh", SLEEPER, json!({"memory_mb": 256})).status,
        201
    );
    let r = http.invoke("fresh", "{}");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-skyscale-cold-start"), Some("true"));
    let log = server.log();
    assert!(
        log.contains("specialising a generic sandbox"),
        "{}",
        common::tail(&log, 30)
    );
    assert!(
        !log.contains("no generic sandbox ready"),
        "a cold start booted a sandbox"
    );
    // The pool refills in the background.
    server.wait_health(Duration::from_secs(60), |h| {
        h["warm_pool_idle"] == 2 && h["sandboxes"] == 3
    });

    // With the pool empty a cold start still works: it boots.
    let empty = Server::start_with("gvisor", &[("WARM_POOL_SIZE", "0")]);
    let http = empty.http();
    assert_eq!(create_fn(&http, "fresh", SLEEPER, json!({})).status, 201);
    let r = http.invoke("fresh", "{}");
    assert_eq!(
        (r.status, r.header("x-skyscale-cold-start")),
        (200, Some("true"))
    );
    assert!(empty
        .log()
        .contains("no generic sandbox ready; booting one"));
}

#[test]
fn reserved_concurrency_limits_and_disables() {
    let server = Server::start("runc");
    let http = server.http();
    assert_eq!(create_fn(&http, "limited", SLEEPER, json!({})).status, 201);
    server.cli_ok(&[
        "function",
        "concurrency",
        "--name",
        "limited",
        "--reserved",
        "1",
    ]);
    let answers = parallel(
        &server,
        "limited",
        &[r#"{"sleep": 1.5}"#, r#"{"sleep": 1.5}"#],
    );
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 429]);
    let throttled = answers.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(throttled.error_code(), "too_many_requests");
    assert!(
        throttled
            .error_message()
            .contains("reserved concurrency of 1"),
        "{}",
        throttled.error_message()
    );

    // 0 disables the function; clearing the reservation enables it again.
    server.cli_ok(&[
        "function",
        "concurrency",
        "--name",
        "limited",
        "--reserved",
        "0",
    ]);
    let r = http.invoke("limited", "{}");
    assert_eq!(r.status, 429);
    assert!(
        r.error_message().contains("disabled"),
        "{}",
        r.error_message()
    );
    let out = server.cli(&["function", "invoke", "--name", "limited"]);
    assert!(!out.status.success());
    server.cli_ok(&["function", "concurrency", "--name", "limited", "--clear"]);
    assert_eq!(http.invoke("limited", "{}").status, 200);
    // Bad values are refused.
    let r = http.send(
        "PUT",
        "/v1/functions/limited/concurrency",
        Some(br#"{"reserved_concurrency": -1}"#.to_vec()),
    );
    assert_eq!(r.status, 400);
}

/// The record of the invocation `r` answered (records are readable once it answered) is a
/// crash with `error_type`.
fn assert_recorded(http: &common::Http, r: &Resp, error_type: &str) {
    let id = r.header("x-skyscale-request-id").unwrap();
    let record = http.get(&format!("/v1/invocations/{id}")).json();
    assert_eq!(
        (&record["status"], &record["error_type"]),
        (&json!("crashed"), &json!(error_type)),
        "{record}"
    );
}

/// Timeout, memory limit and crash: each fails with Lambda's error and the next call works.
fn failures_are_contained(driver: &str) {
    let server = Server::start(driver);
    let http = server.http();
    assert_eq!(
        create_fn(&http, "trouble", TROUBLE, json!({"timeout_s": 2})).status,
        201
    );
    let next = http.invoke("trouble", "{}");
    assert_eq!(
        next.json()["ok"],
        true,
        "{} {}",
        next.status,
        String::from_utf8_lossy(&next.body)
    );

    let started = Instant::now();
    let r = http.invoke("trouble", r#"{"mode": "loop"}"#);
    assert_eq!(r.header("x-skyscale-function-error"), Some("Unhandled"));
    assert_eq!(r.json()["errorType"], "Sandbox.Timedout");
    let msg = r.json()["errorMessage"].as_str().unwrap().to_owned();
    assert!(msg.ends_with("Task timed out after 2.00 seconds"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline is hard"
    );
    assert_eq!(http.invoke("trouble", "{}").json()["ok"], true);

    // Allocating until the memory limit ends it: the pages it faults in cost CPU, and the
    // CPU quota scales with the memory limit, so reaching the limit takes about the same
    // time at any size (~3 s under gVisor here): a timeout of its own, beyond that.
    assert_eq!(
        create_fn(&http, "hungry", TROUBLE, json!({"timeout_s": 20})).status,
        201
    );
    let r = http.invoke("hungry", r#"{"mode": "alloc"}"#);
    assert_eq!(r.header("x-skyscale-function-error"), Some("Unhandled"));
    assert_eq!(r.json()["errorType"], "Runtime.ExitError", "{}", r.json());
    // The sandbox's memory cgroup counted the kill: the record says out of memory (the
    // caller got Lambda's `Runtime.ExitError`).
    assert_recorded(&http, &r, "Runtime.OutOfMemory");
    assert_eq!(http.invoke("hungry", "{}").json()["ok"], true);

    let r = http.invoke("trouble", r#"{"mode": "exit"}"#);
    assert_eq!(r.json()["errorType"], "Runtime.ExitError");
    assert!(
        r.json()["errorMessage"]
            .as_str()
            .unwrap()
            .contains("exit status 1"),
        "{}",
        r.json()
    );
    assert_recorded(&http, &r, "Runtime.ExitError");
    let next = http.invoke("trouble", "{}");
    assert_eq!(next.json()["ok"], true);
    assert_eq!(
        next.header("x-skyscale-cold-start"),
        Some("true"),
        "a crashed sandbox is never reused"
    );
}

#[test]
fn failures_are_contained_on_gvisor() {
    failures_are_contained("gvisor");
}

#[test]
fn failures_are_contained_on_runc() {
    failures_are_contained("runc");
}

#[test]
fn idle_sandboxes_expire_after_the_keep_alive() {
    let server = Server::start_with(
        "runc",
        &[("WARM_POOL_SIZE", "0"), ("SKYSCALE_KEEP_ALIVE", "300ms")],
    );
    let http = server.http();
    assert_eq!(create_fn(&http, "brief", SLEEPER, json!({})).status, 201);
    assert_eq!(http.invoke("brief", "{}").status, 200);
    assert_eq!(
        http.invoke("brief", "{}").header("x-skyscale-cold-start"),
        Some("false")
    );
    server.wait_health(Duration::from_secs(10), |h| h["sandboxes"] == 0);
    assert_eq!(
        http.invoke("brief", "{}").header("x-skyscale-cold-start"),
        Some("true")
    );
}

#[test]
fn host_cap_evicts_idle_sandboxes_and_throttles_when_all_are_busy() {
    let server = Server::start_with(
        "runc",
        &[("WARM_POOL_SIZE", "0"), ("SKYSCALE_MAX_SANDBOXES", "1")],
    );
    let http = server.http();
    assert_eq!(create_fn(&http, "one", SLEEPER, json!({})).status, 201);
    assert_eq!(create_fn(&http, "two", SLEEPER, json!({})).status, 201);
    assert_eq!(http.invoke("one", "{}").status, 200);
    // "one" is idle: "two" takes its place.
    assert_eq!(http.invoke("two", "{}").status, 200);
    assert_eq!(server.http().get("/v1/health").json()["sandboxes"], 1);
    // While "two" is busy nothing can be evicted: 429 at once, and "two" is undisturbed.
    let answers = std::thread::scope(|s| {
        let slow = s.spawn(|| server.http().invoke("two", r#"{"sleep": 1.5}"#));
        server.wait_health(Duration::from_secs(10), |h| h["busy"] == 1);
        let started = Instant::now();
        let quick = server.http().invoke("one", "{}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a throttle answers at once"
        );
        (slow.join().unwrap(), quick)
    });
    assert_eq!(answers.0.status, 200);
    assert_eq!(answers.1.status, 429);
    assert!(
        answers.1.error_message().contains("limit of 1 sandboxes"),
        "{}",
        answers.1.error_message()
    );

    // The memory budget works the same way: 128 MB fits, a 256 MB function does not.
    let small = Server::start_with(
        "runc",
        &[
            ("WARM_POOL_SIZE", "0"),
            ("SKYSCALE_MEMORY_BUDGET_MB", "200"),
        ],
    );
    let http = small.http();
    assert_eq!(
        create_fn(&http, "big", SLEEPER, json!({"memory_mb": 256})).status,
        201
    );
    let r = http.invoke("big", "{}");
    assert_eq!(r.status, 429);
    assert!(
        r.error_message().contains("memory budget of 200 MB"),
        "{}",
        r.error_message()
    );
}

#[test]
fn sigterm_lets_the_call_in_flight_finish_and_leaves_no_sandbox() {
    let mut server = Server::start("gvisor");
    let http = server.http();
    assert_eq!(
        create_fn(&http, "slow", SLEEPER, json!({"timeout_s": 10})).status,
        201
    );
    assert_eq!(http.invoke("slow", "{}").status, 200);
    let client = server.http();
    let call = std::thread::spawn(move || client.invoke("slow", r#"{"sleep": 2}"#));
    // Once the call is running, stop the server.
    server.wait_health(Duration::from_secs(10), |h| h["busy"] == 1);
    let stopping = Instant::now();
    let status = server.stop();
    let answer = call.join().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "shutdown waited out its grace instead of ending when the call finished"
    );
    assert!(status.success(), "{}", server.log());
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(answer.json()["token"].is_string());
    assert!(
        server.sandbox_ids().is_empty(),
        "left behind: {:?}",
        server.sandbox_ids()
    );
}

#[test]
fn a_caller_that_hangs_up_does_not_strand_the_sandbox() {
    let server = Server::start_with("runc", &[("WARM_POOL_SIZE", "0")]);
    let http = server.http();
    assert_eq!(create_fn(&http, "hangup", SLEEPER, json!({})).status, 201);
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{}/v1/functions/hangup/invoke", server.url))
        .bearer_auth(common::ADMIN_KEY)
        .body(r#"{"sleep": 1}"#)
        .send();
    assert!(gave_up.is_err(), "the client should have timed out");
    // The invocation runs to its end and its sandbox goes back to the pool.
    server.wait_health(Duration::from_secs(10), |h| h["busy"] == 0);
    let r = http.invoke("hangup", "{}");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-skyscale-cold-start"),
        Some("false"),
        "the sandbox was stranded"
    );
    assert_eq!(server.http().get("/v1/health").json()["sandboxes"], 1);
}

/// Says which code answered, for which version, and which sandbox ran it (a token chosen
/// when the module was imported, i.e. once per sandbox).
const VERSIONED_V1: &str = r#"
import uuid

TOKEN = uuid.uuid4().hex


def handler(event, context):
    return {"code": "v1", "version": context.function_version, "token": TOKEN}
"#;

/// What one invocation of a qualified function told us.
struct Answer {
    code: String,
    token: String,
    cold: bool,
}

fn invoke_qualified(server: &Server, name: &str, qualifier: &str) -> Answer {
    let r = server.http().post_json(
        &format!("/v1/functions/{name}/invoke?qualifier={qualifier}"),
        &json!({}),
    );
    assert_eq!(
        r.status,
        200,
        "invoking {name}:{qualifier}: {}\nserver log tail:\n{}",
        String::from_utf8_lossy(&r.body),
        tail(&server.log(), 40)
    );
    assert_eq!(r.header("x-skyscale-function-error"), None, "{}", r.json());
    assert_eq!(r.header("x-skyscale-executed-version"), Some(qualifier));
    let body = r.json();
    assert_eq!(body["version"], qualifier, "{body}");
    Answer {
        code: body["code"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
        cold: r.header("x-skyscale-cold-start") == Some("true"),
    }
}

/// Polls the server's sandbox ids until `cond` holds, or panics with `what` after 10 s.
fn wait_sandboxes(
    server: &Server,
    what: &str,
    cond: impl Fn(&BTreeSet<String>) -> bool,
) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids = server.sandbox_ids();
        if cond(&ids) {
            return ids;
        }
        assert!(Instant::now() < deadline, "{what}; sandboxes: {ids:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Deploying new code retires `$LATEST`'s idle sandboxes only: a published version is an
/// immutable snapshot, so its warm sandbox survives, keeps answering with the old code and
/// is not cold-started again.
#[test]
fn published_versions_keep_their_warm_sandboxes_across_a_deploy() {
    let server = Server::start_with("runc", &[("WARM_POOL_SIZE", "0")]);
    let http = server.http();
    assert_eq!(
        create_fn(&http, "keeper", VERSIONED_V1, json!({})).status,
        201
    );

    // $LATEST gets a warm sandbox of its own.
    let r = http.invoke("keeper", "{}");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-skyscale-cold-start"), Some("true"));
    let latest_v1 = r.json()["token"].as_str().unwrap().to_owned();
    let before = wait_sandboxes(&server, "one sandbox for $LATEST", |ids| ids.len() == 1);
    let latest_sandbox = before.iter().next().unwrap().clone();

    let r = http.post_json("/v1/functions/keeper/versions", &json!({}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["version"], 1, "{}", r.json());

    // Version 1: cold once, then warm in the same sandbox.
    let first = invoke_qualified(&server, "keeper", "1");
    assert_eq!(first.code, "v1");
    assert!(first.cold, "version 1's first call is a cold start");
    assert_ne!(
        first.token, latest_v1,
        "version 1 must not share $LATEST's sandbox (PoolKey has the version)"
    );
    let ids = wait_sandboxes(&server, "a second sandbox for version 1", |ids| {
        ids.len() == 2
    });
    let version_sandbox = ids.difference(&before).next().unwrap().clone();
    let second = invoke_qualified(&server, "keeper", "1");
    assert_eq!(second.code, "v1");
    assert!(!second.cold, "version 1's second call is warm");
    assert_eq!(
        second.token, first.token,
        "version 1's second call ran in another sandbox"
    );

    // New code for $LATEST: its idle sandbox is retired, version 1's is not.
    let r = http.send(
        "PUT",
        "/v1/functions/keeper/code",
        Some(zip_of(&[(
            "handler.py",
            &VERSIONED_V1.replace("\"v1\"", "\"v2\""),
        )])),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ids = wait_sandboxes(
        &server,
        "the deploy did not retire $LATEST's sandbox",
        |ids| !ids.contains(&latest_sandbox),
    );
    assert!(
        ids.contains(&version_sandbox),
        "the deploy of $LATEST destroyed version 1's sandbox {version_sandbox}; left: {ids:?}"
    );
    let r = http.invoke("keeper", "{}");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["code"],
        "v2",
        "$LATEST runs the new code: {}",
        r.json()
    );
    assert_eq!(
        r.header("x-skyscale-cold-start"),
        Some("true"),
        "$LATEST's new code needs a new sandbox"
    );
    let latest_v2 = r.json()["token"].as_str().unwrap().to_owned();
    assert!(latest_v2 != latest_v1 && latest_v2 != first.token);

    // Version 1 still answers with its own code, warm, in the sandbox it had.
    let third = invoke_qualified(&server, "keeper", "1");
    assert_eq!(third.code, "v1", "version 1 is an immutable snapshot");
    assert!(
        !third.cold,
        "version 1 was cold-started again after the deploy of $LATEST"
    );
    assert_eq!(
        third.token, first.token,
        "version 1 ran in a new sandbox after the deploy of $LATEST"
    );
    let ids = server.sandbox_ids();
    assert!(
        ids.contains(&version_sandbox) && ids.len() == 2,
        "expected version 1's sandbox {version_sandbox} and one for $LATEST; found {ids:?}"
    );
}

/// `cpu.cfs_quota_us` of each of the server's sandboxes that has a cpu cgroup, by id.
fn cpu_quotas(server: &Server) -> std::collections::BTreeMap<String, i64> {
    let instance = server.sandbox_root();
    let instance = instance.file_name().unwrap().to_str().unwrap();
    let parent = std::path::Path::new("/sys/fs/cgroup/cpu/skyscale").join(instance);
    std::fs::read_dir(&parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("sky")))
        .filter_map(|e| {
            let quota = std::fs::read_to_string(e.path().join("cpu.cfs_quota_us")).ok()?;
            Some((
                e.file_name().into_string().unwrap(),
                quota.trim().parse().unwrap(),
            ))
        })
        .collect()
}

/// A function's sandbox gets a CPU quota in proportion to its memory once its init is done
/// (Lambda's ratio by default); a generic sandbox, booting and pre-starting its runtime, has
/// none; `SKYSCALE_CPU_MB_PER_VCPU=off` sets none at all, and a bad value is refused by name.
#[test]
fn cpu_quota_follows_memory_after_init() {
    let server = Server::start_with("runc", &[("WARM_POOL_SIZE", "1")]);
    let http = server.http();
    assert_eq!(
        create_fn(&http, "quota", SLEEPER, json!({"memory_mb": 256})).status,
        201
    );
    let r = http.invoke("quota", "{}");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // The specialised sandbox: 20 ms × 256 / 1769. The pool's refill: no quota.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let quotas = cpu_quotas(&server);
        let mut values: Vec<i64> = quotas.values().copied().collect();
        values.sort_unstable();
        if values == [-1, 2894] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "quotas {quotas:?}: expected the function's 2894 µs and a generic sandbox's -1"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let period = std::fs::read_to_string(
        std::path::Path::new("/sys/fs/cgroup/cpu/skyscale")
            .join(server.sandbox_root().file_name().unwrap())
            .join(cpu_quotas(&server).iter().find(|(_, q)| **q > 0).unwrap().0)
            .join("cpu.cfs_period_us"),
    )
    .unwrap();
    assert_eq!(period.trim(), "20000");

    let off = Server::start_with(
        "runc",
        &[("WARM_POOL_SIZE", "0"), ("SKYSCALE_CPU_MB_PER_VCPU", "off")],
    );
    let http = off.http();
    assert_eq!(create_fn(&http, "free", SLEEPER, json!({})).status, 201);
    assert_eq!(http.invoke("free", "{}").status, 200);
    assert_eq!(cpu_quotas(&off).values().copied().collect::<Vec<_>>(), [-1]);

    let err = common::refused_setting("SKYSCALE_CPU_MB_PER_VCPU", "0");
    assert!(
        err.contains("SKYSCALE_CPU_MB_PER_VCPU=\"0\" is invalid"),
        "{err}"
    );
}
