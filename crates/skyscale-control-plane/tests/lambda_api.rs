//! The AWS Lambda-compatible API against the real daemon and real sandboxes, driven by the
//! real boto3 and AWS CLI v1 (a Python script in `tests/boto3/`), plus the raw wire
//! details a client library would hide.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{repo_root, tail, test_python, Server, ADMIN_KEY};

fn key_parts() -> (&'static str, &'static str) {
    ADMIN_KEY.split_once('.').unwrap()
}

/// Where `scripts/test-vendor web` put FastAPI and mangum: `SKYSCALE_TEST_WEB_VENDOR`
/// (scripts/test sets it), else `target/test-vendor/web`. Missing is a failure.
fn web_vendor() -> PathBuf {
    let dir = std::env::var_os("SKYSCALE_TEST_WEB_VENDOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-vendor/web"));
    assert!(
        dir.join("mangum/__init__.py").is_file(),
        "FastAPI and mangum are not vendored at {}: run `scripts/test-vendor web` \
         (scripts/test does)",
        dir.display()
    );
    dir
}

fn run_script(server: &Server, script: &str) -> String {
    run_script_with(server, script, &[])
}

fn run_script_with(server: &Server, script: &str, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let (id, secret) = key_parts();
    let path = repo_root()
        .join("crates/skyscale-control-plane/tests/boto3")
        .join(script);
    let out = Command::new(test_python())
        .arg(&path)
        .env("SKYSCALE_URL", &server.url)
        .env("SKYSCALE_KEY_ID", id)
        .env("SKYSCALE_SECRET", secret)
        .env_remove("AWS_PROFILE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{script} failed ({})\nstdout:\n{stdout}\nstderr:\n{}\nserver log tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&server.log(), 60)
    );
    stdout
}

#[test]
fn boto3_and_aws_cli_run_the_function_lifecycle() {
    let server = Server::start("gvisor");
    let out = run_script(&server, "lifecycle.py");
    eprintln!("{out}");
    assert!(
        out.contains("ok: list_functions paginated over 3 pages"),
        "{out}"
    );
    // The secret reached the server only as a signature, and is not in its log.
    assert!(!server.log().contains(key_parts().1));
}

#[test]
fn what_deploy_tools_and_sdks_trip_over() {
    // In a real sandbox: the SDK must be where Lambda has it, at /var/runtime/sdk.
    let server = Server::start("runc");
    let out = run_script(&server, "compat.py");
    eprintln!("{out}");
    // The CLI shows what the Python runtime brings.
    let listed = server.cli_ok(&["runtime", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("python3.11") && l.contains("boto3 1.")),
        "{listed}"
    );
    // A custom runtime takes a free-text handler through the CLI as well.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bootstrap"), "#!/bin/sh\nexit 0\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("bootstrap"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    server.cli_ok(&[
        "function",
        "create",
        "--name",
        "cli-native",
        "--runtime",
        "provided.al2023",
        "--handler",
        "bootstrap",
        "--path",
        dir.path().to_str().unwrap(),
    ]);
}

/// Where `scripts/test-node` installed the AWS SDK for JavaScript v3: `SKYSCALE_TEST_NODE`
/// (scripts/test sets it), else `target/test-node`. Missing is a failure.
fn node_modules() -> PathBuf {
    let dir = std::env::var_os("SKYSCALE_TEST_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-node"))
        .join("node_modules");
    assert!(
        dir.join("@aws-sdk/client-lambda/package.json").is_file(),
        "the AWS SDK for JavaScript is not installed at {}: run `scripts/test-node` \
         (scripts/test does)",
        dir.display()
    );
    dir
}

#[test]
fn the_javascript_sdk_runs_the_lifecycle() {
    let server = Server::start(common::API_DRIVER);
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("fn.zip");
    std::fs::write(
        &zip,
        common::zip_of(&[(
            "handler.py",
            "def handler(event, context):\n    print('printed for', event.get('name'))\n    \
             return {'hello': event.get('name')}\n",
        )]),
    )
    .unwrap();
    let (id, secret) = key_parts();
    let script = repo_root().join("crates/skyscale-control-plane/tests/js/sdk.mjs");
    let out = Command::new("node")
        .arg(&script)
        .env("SKYSCALE_URL", &server.url)
        .env("SKYSCALE_KEY_ID", id)
        .env("SKYSCALE_SECRET", secret)
        .env("SKYSCALE_TEST_ZIP", &zip)
        .env("NODE_PATH", node_modules())
        .output()
        .expect("running node (Node.js 18 or newer is needed)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "sdk.mjs failed ({})\nstdout:\n{stdout}\nstderr:\n{}\nserver log tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&server.log(), 60)
    );
    eprintln!("{stdout}");
}

#[test]
fn function_urls_serve_http_requests_and_a_fastapi_app() {
    let server = Server::start("gvisor");
    let vendor = web_vendor();
    let out = run_script_with(
        &server,
        "function_urls.py",
        &[("SKYSCALE_TEST_WEB_VENDOR", vendor.as_os_str())],
    );
    eprintln!("{out}");
    assert!(out.contains("ok: FastAPI + mangum"), "{out}");
}

#[test]
fn unsigned_expired_and_bearer_requests_get_aws_errors() {
    let server = Server::start_with("gvisor", &[("WARM_POOL_SIZE", "0")]);
    let http = server.http().without_key();
    let check = |resp: common::Resp, code: &str, message_start: &str| {
        assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.header("x-amzn-ErrorType"), Some(code));
        assert!(resp
            .header("x-amzn-RequestId")
            .is_some_and(|id| id.len() == 36));
        let body = resp.json();
        assert_eq!(body["Type"], "User");
        let message = body["Message"].as_str().unwrap_or_default();
        assert!(message.starts_with(message_start), "{body}");
    };
    check(
        http.get("/2016-08-19/account-settings"),
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    );
    // A `/v1` bearer token is no AWS signature.
    check(
        server.http().get("/2015-03-31/functions"),
        "IncompleteSignatureException",
        "Malformed authorization",
    );
    let (id, _) = key_parts();
    let resp = http
        .client
        .get(format!("{}/2015-03-31/functions", server.url))
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={id}/20200101/us-east-1/lambda/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={}",
                "0".repeat(64)
            ),
        )
        .header("x-amz-date", "20200101T000000Z")
        .send()
        .unwrap();
    let resp = common::Resp {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().unwrap().to_vec(),
    };
    check(resp, "InvalidSignatureException", "Signature expired");
}

#[test]
fn boto3_sees_the_code_storage_limit_and_usage() {
    let server = Server::start_with(
        common::API_DRIVER,
        &[("SKYSCALE_CODE_STORAGE_MB", "2"), ("WARM_POOL_SIZE", "0")],
    );
    let out = run_script(&server, "code_storage.py");
    eprintln!("{out}");
    assert!(
        out.contains("ok: a package past the limit: CodeStorageExceededException"),
        "{out}"
    );
}

/// boto3: Put, Get, List and DeleteProvisionedConcurrencyConfig, their statuses and errors
/// (`tests/boto3/provisioned.py`; the sandboxes themselves are tested on runc and gVisor in
/// `provisioned.rs`).
#[test]
fn boto3_provisioned_concurrency_configs() {
    let server = Server::start(common::API_DRIVER);
    let out = run_script_with(
        &server,
        "provisioned.py",
        &[("SKYSCALE_RUNTIME", std::ffi::OsStr::new("python3.11"))],
    );
    eprintln!("{out}");
}

/// SnapStart through boto3, on gVisor (the driver that snapshots here): the setting, the
/// `SnapStartResponse` of every configuration, a version snapshotted at publish and restored.
#[test]
fn boto3_sets_and_sees_snap_start() {
    let server = Server::start_with("gvisor", &[("WARM_POOL_SIZE", "0")]);
    let out = run_script(&server, "snapstart.py");
    eprintln!("{out}");
}
