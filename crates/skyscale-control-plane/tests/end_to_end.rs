//! The whole product path against the real daemon, real sandboxes and the real CLI.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{create_fn, example, Server};
use serde_json::{json, Value};

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// create → deploy → invoke through the CLI returns the product's example answer, the
/// second call reuses the warm sandbox, and a redeploy changes the answer.
fn hello_world_flow(driver: &str) {
    let server = Server::start(driver);
    let hello = example("hello-world");
    let hello = hello.to_str().unwrap();
    server.cli_ok(&[
        "function",
        "create",
        "--name",
        "hello-world",
        "--runtime",
        "python3.11",
    ]);
    server.cli_ok(&[
        "function",
        "deploy",
        "--name",
        "hello-world",
        "--path",
        hello,
    ]);

    let out = server.cli_ok(&[
        "--output",
        "json",
        "function",
        "invoke",
        "--name",
        "hello-world",
        "--payload",
        r#"{"name": "John"}"#,
    ]);
    let v = parse(&out);
    assert_eq!(v["message"], "Hello, John!");
    assert!(
        v["request_id"].as_str().is_some_and(|id| id.len() == 36),
        "{v}"
    );

    let http = server.http();
    let second = http.invoke("hello-world", r#"{"name": "Jane"}"#);
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["message"], "Hello, Jane!");
    assert_eq!(
        second.header("x-skyscale-cold-start"),
        Some("false"),
        "warm sandbox not reused"
    );
    assert_eq!(
        second.json()["request_id"].as_str(),
        second.header("x-skyscale-request-id"),
        "context.request_id is the invocation's request id"
    );

    // Redeploy from a directory with new code: the answer changes.
    let v2 = tempfile::tempdir().unwrap();
    std::fs::write(
        v2.path().join("handler.py"),
        "def handler(event, context):\n    return {'message': 'Bonjour, ' + event['name'] + '!'}\n",
    )
    .unwrap();
    server.cli_ok(&[
        "function",
        "deploy",
        "--name",
        "hello-world",
        "--path",
        v2.path().to_str().unwrap(),
    ]);
    let third = http.invoke("hello-world", r#"{"name": "John"}"#);
    assert_eq!(third.json()["message"], "Bonjour, John!");
    assert_eq!(
        third.header("x-skyscale-cold-start"),
        Some("true"),
        "old sandbox must be retired"
    );
}

#[test]
fn hello_world_on_gvisor() {
    hello_world_flow("gvisor");
}

#[test]
fn hello_world_on_runc() {
    hello_world_flow("runc");
}

#[test]
fn state_env_errors_and_restart() {
    let mut server = Server::start("gvisor");
    let http = server.http();

    // State kept across warm invocations.
    server.cli_ok(&[
        "function",
        "create",
        "--name",
        "counter",
        "--runtime",
        "python3.11",
        "--path",
        example("counter").to_str().unwrap(),
    ]);
    let counts: Vec<i64> = (0..3)
        .map(|_| {
            http.invoke("counter", "{}").json()["invocations"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(counts, [1, 2, 3]);

    // Environment variables are visible to the handler.
    server.cli_ok(&[
        "function",
        "create",
        "--name",
        "greeter",
        "--runtime",
        "python3.11",
        "--env",
        "GREETING=Howdy",
        "--memory",
        "256",
        "--path",
        example("env-vars").to_str().unwrap(),
    ]);
    let v = http.invoke("greeter", r#"{"name": "John"}"#).json();
    assert_eq!(v["message"], "Howdy, John!");
    assert_eq!(v["function"], "greeter");
    assert_eq!(v["memory_mb"], 256);

    // A handler exception is a function error with its type, message and stack trace.
    server.cli_ok(&[
        "function",
        "create",
        "--name",
        "fails",
        "--runtime",
        "python3.11",
        "--path",
        example("error").to_str().unwrap(),
    ]);
    let r = http.invoke("fails", r#"{"x": 1}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-skyscale-function-error"), Some("Unhandled"));
    let e = r.json();
    assert_eq!(e["errorType"], "ValueError");
    assert_eq!(e["errorMessage"], "cannot handle {'x': 1}");
    assert!(
        e["stackTrace"].as_array().is_some_and(|t| !t.is_empty()),
        "{e}"
    );
    // The CLI prints it and exits non-zero.
    let out = server.cli(&["function", "invoke", "--name", "fails", "--payload", "{}"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ValueError"), "{stderr}");
    // The sandbox survives a handled exception.
    assert_eq!(http.invoke("fails", r#"{"ok": true}"#).json()["ok"], true);

    // An import error is an init error.
    let r = create_fn(&http, "broken", "import not_a_module\n", json!({}));
    assert_eq!(r.status, 201);
    let r = http.invoke("broken", "{}");
    assert_eq!(r.header("x-skyscale-function-error"), Some("Unhandled"));
    assert_eq!(
        r.json()["errorType"],
        "Runtime.ImportModuleError",
        "{}",
        r.json()
    );
    assert!(r.json()["errorMessage"]
        .as_str()
        .unwrap()
        .contains("not_a_module"));

    // Restart: every function is still there and invocable.
    server.restart();
    let http = server.http();
    let names: Vec<String> = parse(&server.cli_ok(&["--output", "json", "function", "list"]))
        ["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["broken", "counter", "fails", "greeter"]);
    let r = http.invoke("counter", "{}");
    assert_eq!(r.json()["invocations"], 1, "a fresh sandbox after restart");
    assert_eq!(
        http.invoke("greeter", r#"{"name": "Ann"}"#).json()["message"],
        "Howdy, Ann!"
    );

    // Stopping leaves no sandbox behind.
    server.stop();
    assert!(
        server.sandbox_processes().is_empty(),
        "{:?}",
        server.sandbox_processes()
    );
}

/// A crashed control plane leaves sandboxes behind; the next start removes them.
#[test]
fn start_removes_sandboxes_left_by_a_crash() {
    let mut server = Server::start("gvisor");
    let http = server.http();
    assert_eq!(
        create_fn(
            &http,
            "warm",
            "def handler(e, c):\n    return 1\n",
            json!({})
        )
        .status,
        201
    );
    assert_eq!(http.invoke("warm", "{}").json(), json!(1));
    server.wait_health(std::time::Duration::from_secs(30), |h| {
        h["warm_pool_idle"] == 1
    });
    server.crash();
    let before = server.sandbox_ids();
    // The agents see their channel close and exit, but their state, bundles and cgroups
    // stay behind until someone removes them.
    assert!(
        before.len() >= 2,
        "expected the warm and the generic sandbox to be left: {before:?}"
    );
    server.start_again();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left: Vec<String> = server
            .sandbox_ids()
            .intersection(&before)
            .cloned()
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leftover sandboxes: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        server.log().contains("removed sandboxes left behind"),
        "{}",
        common::tail(&server.log(), 20)
    );
    // And the function still works.
    assert_eq!(server.http().invoke("warm", "{}").json(), json!(1));
}

/// Reports what a handler can see of its process.
const PROBE: &str = r#"
import os, sys

def handler(event, context):
    return {"cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path,
            "encoding": sys.stdout.encoding}
"#;

/// A cold start from the generic pool runs the function on the runtime the sandbox pre-started
/// (the agent says on stderr, in the daemon's log, when it does not), and the handler sees the
/// same process a fresh start gives: the function's environment, `/var/task` as working
/// directory and first on `sys.path`. A start-up variable the pre-started runtime lacks gets a
/// fresh runtime instead, which honours it.
fn pool_cold_start_uses_the_pre_started_runtime(driver: &str) {
    let server = Server::start(driver);
    let http = server.http();
    let runtime = skyscale_core::Runtimes::discover(std::path::Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed");
    let not_used = "not using the pre-started runtime";
    let pool_full = |h: &Value| h["warm_pool_idle"] == 1;

    let env = json!({"runtime": runtime.as_str(), "environment": {"GREETING": "Howdy"}});
    assert_eq!(create_fn(&http, "probe", PROBE, env).status, 201);
    server.wait_health(std::time::Duration::from_secs(60), pool_full);
    let r = http.invoke("probe", "{}");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-skyscale-cold-start"), Some("true"));
    let v = r.json();
    assert_eq!(v["cwd"], "/var/task");
    assert_eq!(v["path"][0], "/var/task");
    assert!(!v["path"]
        .as_array()
        .unwrap()
        .contains(&json!("/var/runtime")));
    assert_eq!(v["encoding"], "utf-8");
    let env = &v["env"];
    assert_eq!(env["GREETING"], "Howdy");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "probe");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(env["LAMBDA_TASK_ROOT"], "/var/task");
    assert_eq!(env["_HANDLER"], "handler.handler");
    assert_eq!(env["LANG"], "C.UTF-8");
    assert_eq!(env["TZ"], ":UTC");
    assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
    for hidden in [
        "_SKYSCALE_ZYGOTE",
        "_SKYSCALE_RUNTIME_FDS",
        "SKYSCALE_PREWARM",
    ] {
        assert!(env.get(hidden).is_none(), "{hidden} is visible: {env}");
    }
    assert!(
        !server.log().contains(not_used),
        "{}",
        common::tail(&server.log(), 30)
    );

    let env = json!({"runtime": runtime.as_str(), "environment": {"PYTHONPATH": "/var/task/lib"}});
    assert_eq!(create_fn(&http, "probe2", PROBE, env).status, 201);
    server.wait_health(std::time::Duration::from_secs(60), pool_full);
    let r = http.invoke("probe2", "{}");
    assert_eq!(r.header("x-skyscale-cold-start"), Some("true"));
    let v = r.json();
    assert!(
        v["path"]
            .as_array()
            .unwrap()
            .contains(&json!("/var/task/lib")),
        "{v}"
    );
    assert!(
        server.log().contains(&format!("{not_used}: PYTHONPATH")),
        "{}",
        common::tail(&server.log(), 30)
    );
}

#[test]
fn pool_cold_start_uses_the_pre_started_runtime_on_gvisor() {
    pool_cold_start_uses_the_pre_started_runtime("gvisor");
}

#[test]
fn pool_cold_start_uses_the_pre_started_runtime_on_runc() {
    pool_cold_start_uses_the_pre_started_runtime("runc");
}

#[test]
fn hello_world_on_process() {
    hello_world_flow("process");
}
