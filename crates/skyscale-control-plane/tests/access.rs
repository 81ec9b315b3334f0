//! Access control against the real daemon: key roles and function patterns on `/v1`, the
//! Lambda API (boto3, `tests/boto3/access.py`) and function URLs; key management and the
//! audit log through the real CLI; revocation; the last admin key; the rate limit of failed
//! authentications.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{create_fn, repo_root, tail, Http, Server, ADMIN_KEY};
use serde_json::{json, Value};

const HANDLER: &str = "def handler(event, context):\n    return {'fn': context.function_name}\n";

fn admin_id() -> &'static str {
    ADMIN_KEY.split_once('.').unwrap().0
}

fn start() -> Server {
    Server::start_with(common::API_DRIVER, &[("WARM_POOL_SIZE", "1")])
}

/// `skyscale <args>` as the admin; fails the test unless it succeeds.
fn cli_json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&server.cli_ok(&all)).unwrap()
}

/// A new key through `/v1`, as its bearer token.
fn new_key(server: &Server, role: &str, functions: &[&str]) -> String {
    let r = server
        .http()
        .post_json("/v1/keys", &json!({"role": role, "functions": functions}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["key"].as_str().unwrap().to_owned()
}

fn deploy(http: &Http, name: &str) -> common::Resp {
    let zip = common::zip_of(&[("handler.py", HANDLER)]);
    http.send("PUT", &format!("/v1/functions/{name}/code"), Some(zip))
}

fn forbidden(r: &common::Resp) -> String {
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "forbidden"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.error_message()
}

#[test]
fn roles_and_patterns_apply_on_v1_and_function_urls() {
    let server = start();
    let admin = server.http();
    let developer = server
        .http()
        .with_key(&new_key(&server, "developer", &["team-a-*"]));
    let invoker = server
        .http()
        .with_key(&new_key(&server, "invoker", &["team-a-*"]));

    // A developer creates, deploys, configures and invokes its own functions.
    let r = create_fn(&developer, "team-a-x", HANDLER, json!({}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(deploy(&developer, "team-a-x").status, 200);
    let r = developer.send(
        "PATCH",
        "/v1/functions/team-a-x",
        Some(br#"{"timeout_s": 5}"#.to_vec()),
    );
    assert_eq!(r.status, 200);
    let r = developer.invoke("team-a-x", "{}");
    assert_eq!((r.status, r.json()["fn"].clone()), (200, json!("team-a-x")));

    // ... and nothing outside its patterns, whether it exists or not.
    assert_eq!(
        create_fn(&admin, "team-b-y", HANDLER, json!({})).status,
        201
    );
    let msg = forbidden(&create_fn(&developer, "team-b-z", HANDLER, json!({})));
    assert!(msg.contains("team-a-*"), "{msg}");
    forbidden(&deploy(&developer, "team-b-y"));
    forbidden(&developer.invoke("team-b-y", "{}"));
    forbidden(&developer.send("DELETE", "/v1/functions/team-b-y", None));
    let existing = forbidden(&developer.get("/v1/functions/team-b-y"));
    let missing = forbidden(&developer.get("/v1/functions/team-b-q"));
    assert_eq!(
        existing.replace("team-b-y", "F"),
        missing.replace("team-b-q", "F")
    );
    let listed = developer.get("/v1/functions").json()["functions"].clone();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["name"], "team-a-x");
    // No key management, no audit log.
    forbidden(&developer.post_json("/v1/keys", &json!({"role": "admin"})));
    forbidden(&developer.get("/v1/keys"));
    forbidden(&developer.get("/v1/audit"));

    // An invoker invokes, and does nothing else.
    let r = invoker.invoke("team-a-x", "{}");
    assert_eq!((r.status, r.json()["fn"].clone()), (200, json!("team-a-x")));
    let msg = forbidden(&deploy(&invoker, "team-a-x"));
    assert!(msg.contains("invoker"), "{msg}");
    forbidden(&invoker.get("/v1/functions/team-a-x"));
    forbidden(&invoker.get("/v1/functions/team-b-y"));
    forbidden(&invoker.get("/v1/functions"));
    forbidden(&invoker.invoke("team-b-y", "{}"));
    forbidden(&create_fn(&invoker, "team-a-new", HANDLER, json!({})));
    // Nothing was changed by the refused calls.
    let f = admin.get("/v1/functions/team-a-x").json();
    assert_eq!(
        (f["revision"].clone(), f["timeout_s"].clone()),
        (json!(3), json!(5))
    );
    assert_eq!(admin.get("/v1/functions/team-a-new").status, 404);

    // A public function URL may invoke its own function only: the same check, with a
    // principal limited to that function.
    let r = admin.post_json("/v1/functions/team-a-x/url", &json!({"auth_type": "NONE"}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let public = server.http().without_key().get("/url/team-a-x/hello");
    assert_eq!(public.status, 200);
    assert_eq!(public.json()["fn"], "team-a-x");
    let none = server.http().without_key().get("/url/team-b-y/hello");
    assert_eq!(none.status, 404);
}

#[test]
fn keys_and_the_audit_log_through_the_cli() {
    let server = start();
    let admin = server.http();

    // Created once: the secret is printed this time and never again.
    let out = server.cli(&[
        "key",
        "create",
        "--role",
        "developer",
        "--functions",
        "team-a-*",
        "--functions",
        "shared",
        "--description",
        "team a",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no key line in {stdout}"))
        .to_owned();
    let (dev_id, dev_secret) = token.split_once('.').unwrap();
    assert_eq!(stdout.matches(dev_secret).count(), 1, "{stdout}");
    assert!(stdout.contains("team-a-*, shared"), "{stdout}");
    assert!(stderr.contains("will not be shown again"), "{stderr}");
    let developer = server.http().with_key(&token);
    assert_eq!(
        create_fn(&developer, "team-a-x", HANDLER, json!({})).status,
        201
    );
    assert_eq!(deploy(&developer, "team-a-x").status, 200);

    let invoker_token = cli_json(&server, &["key", "create", "--role", "invoker"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (invoker_id, invoker_secret) = invoker_token.split_once('.').unwrap();
    let invoker = server.http().with_key(&invoker_token);
    assert_eq!(invoker.invoke("team-a-x", "{}").status, 200);
    forbidden(&deploy(&invoker, "team-a-x"));
    assert!(
        server
            .cli(&["key", "create", "--role", "admin", "--functions", "x"])
            .status
            .code()
            == Some(1)
    );

    // Listing shows every key and no secret.
    let listing = server.cli_ok(&["key", "list"]);
    assert!(listing.starts_with("ID"), "{listing}");
    for header in ["ROLE", "FUNCTIONS", "DESCRIPTION", "CREATED", "REVOKED"] {
        assert!(
            listing.lines().next().unwrap().contains(header),
            "{listing}"
        );
    }
    for id in [admin_id(), dev_id, invoker_id] {
        assert!(listing.contains(id), "{listing}");
    }
    let json_listing = server.cli_ok(&["--output", "json", "key", "list"]);
    for secret in [
        dev_secret,
        invoker_secret,
        ADMIN_KEY.split_once('.').unwrap().1,
    ] {
        assert!(!listing.contains(secret) && !json_listing.contains(secret));
    }

    // Revocation takes effect on the very next request.
    assert_eq!(developer.get("/v1/functions").status, 200);
    let out = server.cli_ok(&["key", "revoke", dev_id]);
    assert!(out.contains(dev_id), "{out}");
    let r = developer.get("/v1/functions");
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));
    assert_eq!(r.error_message(), "invalid API key");
    let keys = cli_json(&server, &["key", "list"]);
    let dev = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == dev_id)
        .unwrap();
    assert!(dev["revoked_at"].is_string(), "{dev}");
    assert_eq!(dev["functions"], json!(["team-a-*", "shared"]));
    assert!(server
        .cli_ok(&["key", "list"])
        .lines()
        .any(|l| l.starts_with(dev_id) && l.split_whitespace().last().is_some_and(|c| c != "-")));

    // The last admin key cannot be revoked, and still works afterwards.
    let r = admin.send("DELETE", &format!("/v1/keys/{}", admin_id()), None);
    assert_eq!((r.status, r.error_code().as_str()), (409, "conflict"));
    assert!(r.error_message().contains("last active admin key"));
    let out = server.cli(&["key", "revoke", admin_id()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("last active admin key"));
    assert_eq!(admin.get("/v1/functions").status, 200);
    let r = admin.send("DELETE", "/v1/keys/SKYNOSUCHKEY01", None);
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));

    // The audit log has who did what, and how it ended.
    let audit = server.cli_ok(&["audit", "--limit", "50"]);
    let header = audit.lines().next().unwrap();
    for column in ["TIME", "KEY", "ACTION", "TARGET", "OUTCOME"] {
        assert!(header.contains(column), "{audit}");
    }
    let has = |key: &str, action: &str, target: &str, outcome: &str| {
        audit.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() >= 5 && cols[1..5] == [key, action, target, outcome]
        })
    };
    assert!(has(admin_id(), "key.create", dev_id, "ok"), "{audit}");
    assert!(has(dev_id, "function.create", "team-a-x", "ok"), "{audit}");
    assert!(has(dev_id, "function.deploy", "team-a-x", "ok"), "{audit}");
    assert!(
        has(invoker_id, "function.deploy", "team-a-x", "refused"),
        "{audit}"
    );
    assert!(
        has(admin_id(), "key.create", "-", "invalid_parameter"),
        "{audit}"
    );
    assert!(has(admin_id(), "key.revoke", dev_id, "ok"), "{audit}");
    assert!(
        has(admin_id(), "key.revoke", admin_id(), "conflict"),
        "{audit}"
    );
    // Newest first; JSON has the details.
    let entries = cli_json(&server, &["audit", "--limit", "2"])["entries"].clone();
    assert_eq!(entries.as_array().unwrap().len(), 2);
    assert_eq!(entries[0]["action"], "key.revoke");
    assert_eq!(entries[0]["outcome"], "not_found");
    let all = admin.get("/v1/audit").json()["entries"].clone();
    let refused = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["outcome"] == "refused")
        .unwrap();
    assert!(
        refused["detail"].as_str().unwrap().contains("invoker"),
        "{refused}"
    );
    let since = all[0]["time"].as_str().unwrap();
    let r = admin.get(&format!("/v1/audit?since={since}"));
    assert_eq!(
        r.json()["entries"].as_array().unwrap().len(),
        1,
        "{}",
        r.json()
    );
    assert_eq!(admin.get("/v1/audit?limit=0").status, 400);
    assert_eq!(admin.get("/v1/audit?since=yesterday").status, 400);
    // Reads and invocations are not recorded.
    assert!(!all
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"].as_str().unwrap().contains("invoke")));
}

#[test]
fn failed_authentications_are_rate_limited_per_source() {
    let server = Server::start_with(common::API_DRIVER, &[("WARM_POOL_SIZE", "0")]);
    let (id, _) = ADMIN_KEY.split_once('.').unwrap();
    let wrong = format!("{id}.{}", "w".repeat(40));
    // The burst: 20 failures are answered as such. Tokens come back at 5 a second, so a
    // machine slow enough to take over 200 ms for the burst lets one or two more through.
    let mut answered = 0;
    let refused = loop {
        let r = server.http().with_key(&wrong).get("/v1/functions");
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 401, "attempt {answered}");
        answered += 1;
        assert!(answered <= 30, "the limit never applied");
    };
    assert!(
        answered >= 20,
        "only {answered} failures answered before the limit"
    );
    assert_eq!(refused.error_code(), "too_many_requests");
    assert!(refused
        .error_message()
        .contains("too many failed authentications"));
    // Then every attempt from this address is refused before its key is looked at, a good
    // key included (answering it differently would let guessing go on), and a signature.
    // Each is checked right after a refusal: if a token came back in between (a slow
    // machine), the address is driven back to its limit and the check made again.
    let sigv4 = || {
        server
            .http()
            .without_key()
            .client
            .get(format!("{}/2015-03-31/functions", server.url))
            .header("authorization", "AWS4-HMAC-SHA256 Credential=x")
            .send()
            .unwrap()
    };
    let at_the_limit = || {
        for _ in 0..10 {
            if server.http().with_key(&wrong).get("/v1/functions").status == 429 {
                return;
            }
        }
        panic!("the address did not reach its limit again");
    };
    let mut good_refused = false;
    let mut signed = None;
    for _ in 0..5 {
        at_the_limit();
        if server.http().get("/v1/functions").status == 429 {
            good_refused = true;
        }
        at_the_limit();
        let r = sigv4();
        if r.status().as_u16() == 429 {
            signed = Some(r);
        }
        if good_refused && signed.is_some() {
            break;
        }
    }
    assert!(
        good_refused,
        "a good key was answered while the address was limited"
    );
    let r = signed.expect("a signed request was answered while the address was limited");
    assert_eq!(
        r.headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok()),
        Some("TooManyRequestsException")
    );
    // Requests without credentials are not guesses: health and missing keys still answer.
    assert_eq!(server.http().without_key().get("/v1/health").status, 200);
    assert_eq!(server.http().without_key().get("/v1/functions").status, 401);
    // Tokens come back (5 a second): the good key works again shortly, and successes
    // cost nothing.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = server.http().get("/v1/functions");
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 429);
        assert!(Instant::now() < deadline, "the limit never lifted");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..50 {
        assert_eq!(server.http().get("/v1/functions").status, 200);
    }
}

/// The virtualenv python with boto3: `SKYSCALE_TEST_PYTHON`, else `target/test-venv`
/// (made by `scripts/test-venv`). Missing is a failure, never a skip.
fn test_python() -> PathBuf {
    let path = std::env::var_os("SKYSCALE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv/bin/python"));
    assert!(
        path.is_file(),
        "{} is missing: create it with `scripts/test-venv`",
        path.display()
    );
    path
}

#[test]
fn lambda_api_and_signed_function_urls_follow_the_key_roles() {
    let server = start();
    let (id, secret) = ADMIN_KEY.split_once('.').unwrap();
    let out = Command::new(test_python())
        .arg(repo_root().join("crates/skyscale-control-plane/tests/boto3/access.py"))
        .env("SKYSCALE_URL", &server.url)
        .env("SKYSCALE_KEY_ID", id)
        .env("SKYSCALE_SECRET", secret)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "access.py failed ({})\nstdout:\n{stdout}\nstderr:\n{}\nserver log tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&server.log(), 60)
    );
    eprintln!("{stdout}");
}
