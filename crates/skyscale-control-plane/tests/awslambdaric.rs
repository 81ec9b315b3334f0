//! The `provided` runtime with AWS's own Python runtime interface client (`awslambdaric`)
//! vendored into the zip, unmodified: it talks to the agent's Runtime API. Also the
//! `START`/`END`/`REPORT` log lines returned with `x-skyscale-log-type: Tail`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use common::{repo_root, Http, Resp, Server};
use serde_json::json;

/// Where `scripts/test-vendor` put awslambdaric (`pip install --target`).
const VENDOR_ENV: &str = "SKYSCALE_TEST_AWSLAMBDARIC";

const BOOTSTRAP: &str = "#!/bin/sh\nexec /usr/bin/python3 -m awslambdaric \"$_HANDLER\"\n";

const APP: &str = r#"
import json
import os

print("app module loaded")

def handler(event, context):
    print("handling", json.dumps(event))
    if event.get("fail"):
        raise ValueError("boom: " + event["fail"])
    return {
        "echo": event,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "log_group_name": context.log_group_name,
        "cwd": os.getcwd(),
        "execution_env": os.environ.get("AWS_EXECUTION_ENV"),
    }
"#;

/// The vendored awslambdaric, or a failure that says how to make it.
fn vendor_dir() -> PathBuf {
    let dir = std::env::var_os(VENDOR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-vendor/awslambdaric"));
    assert!(
        dir.join("awslambdaric/__init__.py").is_file(),
        "awslambdaric is not vendored at {}: run `scripts/test-vendor` (scripts/test does) \
         or point {VENDOR_ENV} at a `pip install --target DIR awslambdaric` made for the \
         Python of /usr/bin/python3",
        dir.display()
    );
    dir
}

/// A zip with `files` (name, contents, mode) and everything under `vendor`, modes kept.
fn zip_with(vendor: Option<&Path>, files: &[(&str, &str, u32)]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in files {
        w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
            .unwrap();
        w.write_all(data.as_bytes()).unwrap();
    }
    if let Some(root) = vendor {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let path = e.path();
                let meta = std::fs::metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_some_and(|x| x == "pyc") {
                    continue;
                }
                use std::os::unix::fs::PermissionsExt;
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                let name = path.strip_prefix(root).unwrap().to_str().unwrap();
                w.start_file(name, SimpleFileOptions::default().unix_permissions(mode))
                    .unwrap();
                w.write_all(&std::fs::read(&path).unwrap()).unwrap();
            }
        }
    }
    w.finish().unwrap().into_inner()
}

fn create(http: &Http, name: &str, runtime: &str, zip: &[u8]) -> Resp {
    http.post_json(
        "/v1/functions",
        &json!({
            "name": name,
            "runtime": runtime,
            "handler": "app.handler",
            "memory_mb": 256,
            "timeout_s": 10,
            "code_zip_base64": base64::engine::general_purpose::STANDARD.encode(zip),
        }),
    )
}

/// Invokes with `x-skyscale-log-type: Tail`; returns the response and the decoded log tail.
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
    let tail = resp
        .header("x-skyscale-log-result")
        .map(|b64| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .unwrap_or_else(|| panic!("no x-skyscale-log-result header: {:?}", resp.headers));
    (resp, tail)
}

/// Index of the first line of `lines` at or after `from` that starts with `prefix`.
fn line_at(lines: &[&str], from: usize, prefix: &str, all: &str) -> usize {
    lines[from..]
        .iter()
        .position(|l| l.starts_with(prefix))
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} after line {from}:\n{all}"))
}

#[test]
fn awslambdaric_runs_unmodified_as_a_provided_runtime() {
    let vendor = vendor_dir();
    let server = Server::start("gvisor");
    let http = server.http();
    let zip = zip_with(
        Some(&vendor),
        &[("bootstrap", BOOTSTRAP, 0o755), ("app.py", APP, 0o644)],
    );
    let r = create(&http, "ric", "provided.al2023", &zip);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["runtime"], "provided.al2023");

    // Success, cold: the result, the context and the framed logs with Init Duration.
    let (resp, tail) = invoke_tail(&http, "ric", r#"{"n": 1}"#);
    let log = tail_of(&server, &resp, &tail);
    assert_eq!(resp.status, 200, "{log}");
    assert_eq!(resp.header("x-skyscale-function-error"), None, "{log}");
    assert_eq!(resp.header("x-skyscale-cold-start"), Some("true"));
    let v = resp.json();
    let request_id = resp.header("x-skyscale-request-id").unwrap().to_owned();
    assert_eq!(v["echo"], json!({"n": 1}));
    assert_eq!(v["aws_request_id"], request_id.as_str());
    assert_eq!(v["function_name"], "ric");
    assert_eq!(v["function_version"], "$LATEST");
    assert_eq!(v["memory_limit_in_mb"], "256"); // awslambdaric reads it from the environment
    assert!(
        v["invoked_function_arn"]
            .as_str()
            .unwrap()
            .ends_with(":function:ric"),
        "{v}"
    );
    let remaining = v["remaining_ms"].as_i64().unwrap();
    assert!(remaining > 0 && remaining <= 10_000, "{v}");
    assert_eq!(v["log_group_name"], "/aws/lambda/ric");
    assert_eq!(v["cwd"], "/var/task");
    assert_eq!(v["execution_env"], "AWS_Lambda_provided.al2023");
    check_framing(&tail, &request_id, "handling {\"n\": 1}", 256, true);
    assert!(tail.contains("app module loaded"), "{tail}");

    // Warm: same framing, no Init Duration.
    let (resp, tail) = invoke_tail(&http, "ric", r#"{"n": 2}"#);
    assert_eq!(resp.header("x-skyscale-cold-start"), Some("false"));
    let request_id = resp.header("x-skyscale-request-id").unwrap().to_owned();
    assert_eq!(resp.json()["aws_request_id"], request_id.as_str());
    check_framing(&tail, &request_id, "handling {\"n\": 2}", 256, false);

    // A handler exception is a function error with awslambdaric's document.
    let (resp, tail) = invoke_tail(&http, "ric", r#"{"fail": "bad input"}"#);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-skyscale-function-error"), Some("Unhandled"));
    let err = resp.json();
    assert_eq!(err["errorType"], "ValueError", "{err}");
    assert_eq!(err["errorMessage"], "boom: bad input", "{err}");
    assert!(err["stackTrace"].is_array(), "{err}");
    assert!(
        tail.contains("[ERROR] ValueError: boom: bad input"),
        "{tail}"
    );
    // The sandbox survives a handler error: the next call is warm and succeeds.
    let resp = http.invoke("ric", r#"{"n": 3}"#);
    assert_eq!(resp.header("x-skyscale-cold-start"), Some("false"));
    assert_eq!(resp.json()["echo"], json!({"n": 3}));

    // An import error in init: Runtime.ImportModuleError, through /runtime/init/error.
    let broken = zip_with(
        Some(&vendor),
        &[
            ("bootstrap", BOOTSTRAP, 0o755),
            ("app.py", "import no_such_module_here\n", 0o644),
        ],
    );
    let r = create(&http, "ric-broken", "provided", &broken);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let (resp, tail) = invoke_tail(&http, "ric-broken", "{}");
    assert_eq!(resp.header("x-skyscale-function-error"), Some("Unhandled"));
    let err = resp.json();
    assert_eq!(err["errorType"], "Runtime.ImportModuleError", "{err}");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap()
            .contains("no_such_module_here"),
        "{err}"
    );
    let request_id = resp.header("x-skyscale-request-id").unwrap();
    assert!(
        tail.contains(&format!("START RequestId: {request_id}")),
        "{tail}"
    );
    assert!(
        tail.contains(&format!("REPORT RequestId: {request_id}\t")),
        "{tail}"
    );
}

fn tail_of(server: &Server, resp: &Resp, tail: &str) -> String {
    format!(
        "body: {}\nlog tail:\n{tail}\nserver log:\n{}",
        String::from_utf8_lossy(&resp.body),
        common::tail(&server.log(), 40)
    )
}

/// START, the handler's line, END and REPORT in this order; Init Duration on cold starts only.
fn check_framing(tail: &str, request_id: &str, printed: &str, memory_mb: u32, cold: bool) {
    let lines: Vec<&str> = tail.lines().collect();
    let start = line_at(
        &lines,
        0,
        &format!("START RequestId: {request_id} Version: $LATEST"),
        tail,
    );
    let out = line_at(&lines, start + 1, printed, tail);
    let end = line_at(
        &lines,
        out + 1,
        &format!("END RequestId: {request_id}"),
        tail,
    );
    let report = line_at(
        &lines,
        end + 1,
        &format!("REPORT RequestId: {request_id}\tDuration: "),
        tail,
    );
    let report = lines[report];
    for field in [
        "\tBilled Duration: ",
        &format!("\tMemory Size: {memory_mb} MB\t"),
        "\tMax Memory Used: ",
    ] {
        assert!(report.contains(field), "{field:?} missing: {report:?}");
    }
    assert!(!report.contains("Max Memory Used: 0 MB"), "{report:?}");
    assert_eq!(report.contains("\tInit Duration: "), cold, "{report:?}");
}

#[test]
fn provided_needs_an_executable_bootstrap() {
    let server = Server::start("runc");
    let http = server.http();
    let app = ("app.py", "def handler(e, c):\n    return 1\n", 0o644);

    let r = create(&http, "nobootstrap", "provided", &zip_with(None, &[app]));
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let message = r.error_message();
    assert!(
        message.contains("bootstrap") && message.contains("missing"),
        "{message}"
    );
    assert_eq!(http.get("/v1/functions/nobootstrap").status, 404);

    let not_exec = zip_with(None, &[app, ("bootstrap", BOOTSTRAP, 0o644)]);
    let r = create(&http, "noexec", "provided.al2", &not_exec);
    assert_eq!(r.status, 400);
    assert!(
        r.error_message().contains("not executable"),
        "{}",
        r.error_message()
    );

    // A deploy is checked the same way and leaves the function's code alone.
    let good = zip_with(None, &[app, ("bootstrap", BOOTSTRAP, 0o755)]);
    let r = create(&http, "custom", "provided", &good);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let sha = r.json()["code_sha256"].clone();
    let r = http.send("PUT", "/v1/functions/custom/code", Some(not_exec));
    assert_eq!(r.status, 400);
    assert!(
        r.error_message().contains("bootstrap"),
        "{}",
        r.error_message()
    );
    assert_eq!(http.get("/v1/functions/custom").json()["code_sha256"], sha);

    // A Python function without a bootstrap cannot become a provided one.
    let r = create(&http, "py", "python3.11", &zip_with(None, &[app]));
    assert_eq!(r.status, 201);
    let r = http.send(
        "PATCH",
        "/v1/functions/py",
        Some(serde_json::to_vec(&json!({"runtime": "provided"})).unwrap()),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));

    // A shell bootstrap speaking the Runtime API by hand, framed logs and a timeout line.
    let sleeper = "#!/bin/sh\nexec /usr/bin/python3 -c '\nimport json, os, sys, time, urllib.request\napi = \"http://\" + os.environ[\"AWS_LAMBDA_RUNTIME_API\"] + \"/2018-06-01/runtime/invocation/\"\nwhile True:\n    r = urllib.request.urlopen(api + \"next\")\n    rid = r.headers[\"Lambda-Runtime-Aws-Request-Id\"]\n    event = json.loads(r.read())\n    print(\"sleeping\", flush=True)\n    time.sleep(event[\"sleep\"])\n    urllib.request.urlopen(urllib.request.Request(api + rid + \"/response\", data=b\"\\\"done\\\"\"))\n'\n";
    let r = http.post_json(
        "/v1/functions",
        &json!({
            "name": "sleeper",
            "runtime": "provided.al2023",
            "handler": "x.y",
            "timeout_s": 1,
            "code_zip_base64": base64::engine::general_purpose::STANDARD
                .encode(zip_with(None, &[("bootstrap", sleeper, 0o755)])),
        }),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let (resp, tail) = invoke_tail(&http, "sleeper", r#"{"sleep": 0}"#);
    assert_eq!(resp.body, b"\"done\"", "{}", tail_of(&server, &resp, &tail));
    let id = resp.header("x-skyscale-request-id").unwrap().to_owned();
    check_framing(&tail, &id, "sleeping", 128, true);
    let (resp, tail) = invoke_tail(&http, "sleeper", r#"{"sleep": 5}"#);
    assert_eq!(resp.json()["errorType"], "Sandbox.Timedout");
    let id = resp.header("x-skyscale-request-id").unwrap().to_owned();
    let lines: Vec<&str> = tail.lines().collect();
    let timed_out = line_at(&lines, 0, "20", &tail);
    assert!(
        lines[timed_out].ends_with(&format!("{id} Task timed out after 1.00 seconds")),
        "{tail}"
    );
    line_at(
        &lines,
        timed_out + 1,
        &format!("END RequestId: {id}"),
        &tail,
    );
    line_at(
        &lines,
        timed_out + 1,
        &format!("REPORT RequestId: {id}\t"),
        &tail,
    );
}
