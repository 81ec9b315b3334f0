//! The real daemon on the process driver (no runsc, no runc): the product path create →
//! invoke → logs in a couple of seconds, which is what makes the driver worth having for
//! tests of the scheduler, the invoke path and the HTTP surfaces.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::{create_fn, Server};
use serde_json::{json, Value};

const HANDLER: &str = r#"
import os

def handler(event, context):
    print("hello from " + event["who"])
    return {"cwd": os.getcwd(), "task_root": os.environ["LAMBDA_TASK_ROOT"], "sid": os.getsid(0)}
"#;

/// Starts loudly, runs a function cold (on the runtime the generic sandbox pre-started) and
/// warm, in its `/var/task` as the host sees it, keeps its logs, and leaves no process behind.
#[test]
fn create_invoke_logs_on_the_process_driver() {
    let mut server = Server::start("process");
    assert!(
        server.log().contains("no isolation: trusted code only"),
        "{}",
        common::tail(&server.log(), 20)
    );
    let http = server.http();
    let runtime = skyscale_core::Runtimes::discover(std::path::Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed");
    let r = create_fn(&http, "f", HANDLER, json!({"runtime": runtime.as_str()}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    server.wait_health(Duration::from_secs(30), |h: &Value| {
        h["warm_pool_idle"] == 1
    });

    let cold = http.invoke("f", r#"{"who": "cold"}"#);
    assert_eq!(cold.status, 200, "{}", String::from_utf8_lossy(&cold.body));
    assert_eq!(cold.header("x-skyscale-cold-start"), Some("true"));
    let v = cold.json();
    let task_root = server.sandbox_root().join("task");
    let cwd = v["cwd"].as_str().unwrap();
    assert!(cwd.starts_with(task_root.to_str().unwrap()), "{v}");
    assert_eq!(v["task_root"], cwd, "{v}");
    assert!(
        !server.log().contains("not using the pre-started runtime"),
        "{}",
        common::tail(&server.log(), 30)
    );
    let warm = http.invoke("f", r#"{"who": "warm"}"#);
    assert_eq!(warm.status, 200);
    assert_eq!(warm.header("x-skyscale-cold-start"), Some("false"));
    let sid = warm.json()["sid"].as_i64().unwrap();

    let request_id = cold.header("x-skyscale-request-id").unwrap().to_owned();
    let logs = server.cli_ok(&[
        "function",
        "logs",
        "--name",
        "f",
        "--request-id",
        &request_id,
    ]);
    let said = logs
        .find("hello from cold")
        .unwrap_or_else(|| panic!("{logs}"));
    let end = logs
        .find(&format!("END RequestId: {request_id}"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(said < end, "{logs}");
    assert!(!logs.contains("hello from warm"), "{logs}");

    let status = server.stop();
    assert!(status.success(), "{}", server.log());
    // Every sandbox was destroyed at shutdown: nothing of the warm one's session is left.
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let f: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            f.len() > 3 && f[0] != "Z" && f[3] == sid.to_string()
        })
        .collect();
    assert!(left.is_empty(), "processes of session {sid} left: {left:?}");
}

/// An unknown driver is refused by name, and the message lists `process` among the choices.
#[test]
fn unknown_driver_is_refused_naming_the_choices() {
    let err = common::refused_setting("SKYSCALE_DRIVER", "docker");
    assert!(
        err.contains("SKYSCALE_DRIVER=\"docker\" is invalid: expected gvisor, runc or process"),
        "{err}"
    );
}

/// A custom runtime speaks the Runtime API over the host's loopback: each agent listens on a
/// port of its own (two sandboxes at once here), and `/var/task/bootstrap` is found in the
/// sandbox's code directory.
#[test]
fn a_custom_runtime_uses_the_runtime_api_on_the_process_driver() {
    let server = Server::start_with("process", &[("WARM_POOL_SIZE", "0")]);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = "#!/bin/sh\nexec /usr/bin/python3 -c '\nimport json, os, time, urllib.request\napi = \"http://\" + os.environ[\"AWS_LAMBDA_RUNTIME_API\"] + \"/2018-06-01/runtime/invocation/\"\nwhile True:\n    r = urllib.request.urlopen(api + \"next\")\n    rid = r.headers[\"Lambda-Runtime-Aws-Request-Id\"]\n    time.sleep(json.loads(r.read())[\"sleep\"])\n    body = json.dumps({\"cwd\": os.getcwd(), \"api\": os.environ[\"AWS_LAMBDA_RUNTIME_API\"]})\n    urllib.request.urlopen(urllib.request.Request(api + rid + \"/response\", data=body.encode()))\n'\n";
    let path = dir.path().join("bootstrap");
    std::fs::write(&path, bootstrap).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    server.cli_ok(&[
        "function",
        "create",
        "--name",
        "native",
        "--runtime",
        "provided.al2023",
        "--handler",
        "bootstrap",
        "--path",
        dir.path().to_str().unwrap(),
    ]);
    let http = server.http();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| http.invoke("native", r#"{"sleep": 0.5}"#));
        let b = s.spawn(|| http.invoke("native", r#"{"sleep": 0.5}"#));
        (a.join().unwrap(), b.join().unwrap())
    });
    let task_root = server.sandbox_root().join("task");
    for r in [&a, &b] {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let cwd = r.json()["cwd"].as_str().unwrap().to_owned();
        assert!(cwd.starts_with(task_root.to_str().unwrap()), "{cwd}");
    }
    assert_ne!(a.json()["api"], b.json()["api"], "two agents, two ports");
}
