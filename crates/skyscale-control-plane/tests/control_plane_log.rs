//! The control plane's own log: `LOG_LEVEL` and `SKYSCALE_LOG_FORMAT` (text or JSON), with
//! the function and request id on every line written while an invocation runs.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{create_fn, Server};
use serde_json::{json, Value};

const HELLO: &str = "def handler(event, context):\n    return {'ok': True}\n";

/// Invokes `hello` once on a fresh function (a cold start: the most log lines) and returns
/// the request id.
fn invoke_once(server: &Server) -> String {
    let http = server.http();
    assert_eq!(create_fn(&http, "hello", HELLO, json!({})).status, 201);
    let r = http.invoke("hello", "{}");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.header("x-skyscale-request-id").unwrap().to_owned()
}

#[test]
fn json_log_lines_carry_the_request_id() {
    let server = Server::start_with(
        common::API_DRIVER,
        &[("SKYSCALE_LOG_FORMAT", "json"), ("WARM_POOL_SIZE", "0")],
    );
    let request_id = invoke_once(&server);
    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // Every line inside the invocation's span has the request id and the function.
    let in_invocation: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == "invoke"))
        })
        .collect();
    assert!(
        in_invocation.len() >= 2,
        "expected the sandbox boot and the finished invocation inside the span:\n{log}"
    );
    for l in &in_invocation {
        let span = l["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "invoke")
            .unwrap();
        assert_eq!(span["request_id"], request_id.as_str(), "{l}");
        assert_eq!(span["function"], "hello", "{l}");
    }
    assert!(
        in_invocation
            .iter()
            .any(|l| l["fields"]["message"] == "invocation finished"),
        "{log}"
    );
}

#[test]
fn text_log_lines_carry_the_request_id_and_bad_settings_are_refused() {
    let server = Server::start_with(
        common::API_DRIVER,
        &[("LOG_LEVEL", "info"), ("WARM_POOL_SIZE", "0")],
    );
    let request_id = invoke_once(&server);
    let log = server.log();
    let finished = log
        .lines()
        .find(|l| l.contains("invocation finished"))
        .unwrap_or_else(|| panic!("no 'invocation finished' line:\n{log}"));
    assert!(
        finished.contains(&format!("request_id={request_id}"))
            && finished.contains("function=hello"),
        "{finished}"
    );
    assert!(!log.contains(" DEBUG "), "LOG_LEVEL=info hides debug lines");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skyscale-control-plane"))
        .env("SKYSCALE_LOG_FORMAT", "yaml")
        .env("PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SKYSCALE_LOG_FORMAT=\"yaml\" is invalid: expected text or json"),
        "{stderr}"
    );
}
