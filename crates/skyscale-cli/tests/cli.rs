//! The real `skyscale` binary: argument handling, local checks and how failures are
//! reported. API answers come from a canned stand-in server on 127.0.0.1:0; the control
//! plane's integration tests drive the binary against the real API.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread;

use skyscale_types::ApiKey;
use tiny_http::{Header, Response, Server};

fn skyscale(args: &[&str], key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyscale"));
    cmd.args(args)
        .env_remove("SKYSCALE_API_KEY")
        .env_remove("SKYSCALE_ENDPOINT");
    if let Some(key) = key {
        cmd.env("SKYSCALE_API_KEY", key);
    }
    cmd.output().expect("run skyscale")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("utf-8 stderr")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

fn key() -> String {
    ApiKey::generate().token()
}

/// An endpoint where nothing listens.
fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    format!("http://{}", l.local_addr().expect("local address"))
}

/// A server that answers one request with `status`, `headers` and `body`.
fn serve_once(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> String {
    let server = Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let endpoint = format!(
        "http://{}",
        server.server_addr().to_ip().expect("an IP address")
    );
    let headers = headers.to_vec();
    let body = body.to_owned();
    thread::spawn(move || {
        let Ok(mut req) = server.recv() else { return };
        let mut sink = Vec::new();
        let _ = req.as_reader().read_to_end(&mut sink);
        let mut resp = Response::from_string(body).with_status_code(status);
        for (name, value) in headers {
            resp.add_header(Header::from_bytes(name, value).expect("valid header"));
        }
        let _ = req.respond(resp);
    });
    endpoint
}

#[test]
fn missing_key_is_one_clear_line() {
    let out = skyscale(&["function", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: no API key: set SKYSCALE_API_KEY or pass --api-key\n"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn unreachable_server_names_the_endpoint() {
    let endpoint = dead_endpoint();
    let out = skyscale(
        &["--endpoint", &endpoint, "function", "get", "--name", "f"],
        Some(&key()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: cannot reach Skyscale at {endpoint}: connection refused — is skyscale-control-plane running?\n"
        )
    );
}

#[test]
fn invalid_payload_is_refused_locally() {
    let endpoint = dead_endpoint();
    let out = skyscale(
        &[
            "--endpoint",
            &endpoint,
            "function",
            "invoke",
            "--name",
            "f",
            "--payload",
            "{oops",
        ],
        Some(&key()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: --payload is not valid JSON: key must be a string at line 1 column 2\n"
    );
}

#[test]
fn bad_env_pair_is_a_usage_error() {
    let out = skyscale(
        &[
            "function",
            "create",
            "--name",
            "f",
            "--runtime",
            "python3.11",
            "--env",
            "NOEQUALS",
        ],
        Some(&key()),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "error: invalid value 'NOEQUALS' for '--env <KEY=VALUE>': expected KEY=VALUE, but there is no '='"
        ),
        "{err}"
    );
}

#[test]
fn update_with_nothing_to_change_is_refused() {
    let out = skyscale(&["function", "update", "--name", "f"], Some(&key()));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: nothing to update: give at least one of --runtime"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_package_creates_nothing() {
    // The endpoint is dead: the error must come from packaging, before any request.
    let dir = tempfile::tempdir().unwrap();
    let endpoint = dead_endpoint();
    let path = dir.path().to_str().unwrap();
    let out = skyscale(
        &[
            "--endpoint",
            &endpoint,
            "function",
            "create",
            "--name",
            "f",
            "--runtime",
            "python3.11",
            "--path",
            path,
        ],
        Some(&key()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: {path} contains no files to package\n")
    );
}

#[test]
fn bad_api_key_is_refused_without_echoing_it() {
    let out = skyscale(&["function", "list"], Some("oops.secret-value"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(
        err,
        "error: invalid API key: api key secret must be 32-128 characters of letters, digits, '_' and '-'\n"
    );
    assert!(!err.contains("secret-value"));
}

#[test]
fn api_error_message_is_shown() {
    let endpoint = serve_once(
        404,
        &[("content-type", "application/json")],
        r#"{"error":{"code":"not_found","message":"function \"nope\" does not exist"}}"#,
    );
    let out = skyscale(
        &[
            "--endpoint",
            &endpoint,
            "function",
            "delete",
            "--name",
            "nope",
        ],
        Some(&key()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: function \"nope\" does not exist (not_found, HTTP 404)\n"
    );
}

#[test]
fn invoke_prints_pretty_result() {
    let endpoint = serve_once(200, &[], r#"{"b":1,"a":"x"}"#);
    let out = skyscale(
        &["--endpoint", &endpoint, "function", "invoke", "--name", "f"],
        Some(&key()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\n  \"b\": 1,\n  \"a\": \"x\"\n}\n");
}

#[test]
fn invoke_function_error_goes_to_stderr_and_fails() {
    let body = r#"{"errorMessage":"boom","errorType":"ValueError","stackTrace":["  File \"/var/task/handler.py\", line 2, in handler\n"]}"#;
    let endpoint = serve_once(200, &[("x-skyscale-function-error", "Unhandled")], body);
    let out = skyscale(
        &["--endpoint", &endpoint, "function", "invoke", "--name", "f"],
        Some(&key()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        "error: function error: ValueError: boom\n  File \"/var/task/handler.py\", line 2, in handler\n"
    );

    // JSON mode also gives the error document on stdout.
    let endpoint = serve_once(200, &[("x-skyscale-function-error", "Unhandled")], body);
    let out = skyscale(
        &[
            "--endpoint",
            &endpoint,
            "--output",
            "json",
            "function",
            "invoke",
            "--name",
            "f",
        ],
        Some(&key()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), format!("{body}\n"));
}

#[test]
fn help_documents_exit_status() {
    let out = skyscale(&["--help"], None);
    assert!(out.status.success());
    assert!(stdout(&out).contains("Exit status:"));
    // The key's value never shows in help.
    let out = Command::new(env!("CARGO_BIN_EXE_skyscale"))
        .arg("--help")
        .env(
            "SKYSCALE_API_KEY",
            "SKYTEST.do-not-show-this-secret-please-xxxxxxxx",
        )
        .output()
        .unwrap();
    assert!(!stdout(&out).contains("do-not-show"));
}
