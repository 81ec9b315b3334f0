//! Layers end to end, driven by the real boto3 (`tests/boto3/layers.py`) against the real
//! daemon: on the process driver (fast; no isolation, so `/opt` is not read-only there), on
//! runc and on gVisor (where `/opt` is a read-only bind of the sandbox's merged layers). The `/v1` and
//! CLI side (`skyscale layer …`, `--layer`) on the process driver.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::process::Command;

use common::{repo_root, tail, test_python, Server, ADMIN_KEY};

/// The python3.N of the host: the runtime the functions use.
fn runtime() -> String {
    skyscale_core::Runtimes::discover(std::path::Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed")
        .to_string()
}

fn run_layers_script(server: &Server, readonly: bool) -> String {
    let (id, secret) = ADMIN_KEY.split_once('.').unwrap();
    let path = repo_root().join("crates/skyscale-control-plane/tests/boto3/layers.py");
    let out = Command::new(test_python())
        .arg(&path)
        .env("SKYSCALE_URL", &server.url)
        .env("SKYSCALE_KEY_ID", id)
        .env("SKYSCALE_SECRET", secret)
        .env("SKYSCALE_TEST_RUNTIME", runtime())
        .env(
            "SKYSCALE_TEST_OPT_READONLY",
            if readonly { "1" } else { "0" },
        )
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "layers.py failed ({})\nstdout:\n{stdout}\nstderr:\n{}\nserver log tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&server.log(), 60)
    );
    stdout
}

#[test]
fn boto3_layers_on_the_process_driver() {
    let server = Server::start("process");
    let out = run_layers_script(&server, false);
    eprintln!("{out}");

    // The native side sees the same layers; the audit log has the publishes and deletes.
    let list = server.cli_ok(&["layer", "list"]);
    for name in ["common", "override", "big1", "big2", "custom-only"] {
        assert!(list.contains(name), "{list}");
    }
    let versions = server.cli_ok(&["layer", "versions", "--name", "common"]);
    assert!(
        versions.contains("arn:aws:lambda:us-east-1:000000000000:layer:common:2"),
        "{versions}"
    );
    assert!(!versions.contains("layer:common:1"), "{versions}");
    let f1 = server.cli_ok(&["function", "get", "--name", "f1"]);
    assert!(
        f1.contains("layer:common:1") && f1.contains("layer:override:1"),
        "{f1}"
    );
    let audit = server.cli_ok(&["audit"]);
    assert!(
        audit.contains("layer.publish") && audit.contains("layer.delete"),
        "{audit}"
    );
}

#[test]
fn boto3_layers_on_runc_are_read_only() {
    let server = Server::start("runc");
    let out = run_layers_script(&server, true);
    eprintln!("{out}");
    // EROFS: the bind itself is read-only, not only the directory's permissions.
    assert!(
        out.contains("ok: /opt is read-only (writing fails: errno 30)"),
        "{out}"
    );
}

#[test]
fn boto3_layers_on_gvisor_are_read_only() {
    let server = Server::start("gvisor");
    let out = run_layers_script(&server, true);
    eprintln!("{out}");
    assert!(out.contains("ok: /opt is read-only"), "{out}");
}

/// `skyscale layer publish|get|delete` and `--layer` on function create and update.
#[test]
fn cli_publishes_attaches_and_deletes_layers() {
    let server = Server::start("process");
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    std::fs::create_dir_all(layer.join("python")).unwrap();
    std::fs::write(
        layer.join("python/greeting.py"),
        "TEXT = 'from the layer'\n",
    )
    .unwrap();
    let published = server.cli_ok(&[
        "layer",
        "publish",
        "--name",
        "greet",
        "--path",
        layer.to_str().unwrap(),
        "--description",
        "greetings",
        "--compatible-runtime",
        &runtime(),
    ]);
    assert!(
        published.contains("published version 1 of layer greet"),
        "{published}"
    );
    let arn = "arn:aws:lambda:us-east-1:000000000000:layer:greet:1";
    assert!(published.contains(arn), "{published}");
    let got = server.cli_ok(&["layer", "get", "--name", "greet", "--version", "1"]);
    assert!(got.contains("greetings"), "{got}");

    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("handler.py"),
        "import greeting\n\ndef handler(event, context):\n    return greeting.TEXT\n",
    )
    .unwrap();
    server.cli_ok(&[
        "function",
        "create",
        "--name",
        "g",
        "--runtime",
        &runtime(),
        "--path",
        code.to_str().unwrap(),
        "--layer",
        arn,
    ]);
    let answer = server.cli_ok(&["function", "invoke", "--name", "g"]);
    assert!(answer.contains("from the layer"), "{answer}");
    server.cli_fails(
        &[
            "function",
            "update",
            "--name",
            "g",
            "--layer",
            "arn:aws:lambda:us-east-1:000000000000:layer:greet:7",
        ],
        1,
        "layer:greet:7",
    );
    let cleared = server.cli_ok(&["function", "update", "--name", "g", "--clear-layers"]);
    assert!(!cleared.contains("layers:"), "{cleared}");
    server.cli_ok(&["function", "update", "--name", "g", "--layer", arn]);
    let deleted = server.cli_ok(&["layer", "delete", "--name", "greet", "--version", "1"]);
    assert!(
        deleted.contains("deleted version 1 of layer greet"),
        "{deleted}"
    );
    let answer = server.cli_ok(&["function", "invoke", "--name", "g"]);
    assert!(answer.contains("from the layer"), "{answer}");
}
