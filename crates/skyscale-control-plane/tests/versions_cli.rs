//! Versions, aliases and qualified invokes through the real `skyscale` CLI and `/v1`, against
//! the real daemon and real sandboxes.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::Path;

use common::Server;
use serde_json::Value;

const FUNCTION: &str = "versioned";

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A code directory whose handler answers `answer` and the version that ran.
fn code(dir: &Path, answer: &str) {
    std::fs::write(
        dir.join("handler.py"),
        format!(
            "def handler(event, context):\n    \
             return {{'answer': '{answer}', 'version': context.function_version}}\n"
        ),
    )
    .unwrap();
}

/// `skyscale function invoke` with `--qualifier` (when given): the result's `answer`, and
/// the version the handler saw.
fn invoke(server: &Server, qualifier: Option<&str>) -> (String, String) {
    let mut args = vec!["--output", "json", "function", "invoke", "--name", FUNCTION];
    if let Some(q) = qualifier {
        args.extend(["--qualifier", q]);
    }
    let v = parse(&server.cli_ok(&args));
    (
        v["answer"].as_str().unwrap().to_owned(),
        v["version"].as_str().unwrap().to_owned(),
    )
}

/// publish → redeploy → the version keeps the old code; aliases follow their version and
/// route between two; a deleted alias cannot be invoked; bad input is refused clearly.
#[test]
fn versions_and_aliases_through_the_cli() {
    let server = Server::start(common::API_DRIVER);
    let one = tempfile::tempdir().unwrap();
    code(one.path(), "one");
    let two = tempfile::tempdir().unwrap();
    code(two.path(), "two");
    let path = |d: &tempfile::TempDir| d.path().to_str().unwrap().to_owned();

    server.cli_ok(&[
        "function",
        "create",
        "--name",
        FUNCTION,
        "--runtime",
        "python3.11",
    ]);
    server.cli_ok(&[
        "function",
        "deploy",
        "--name",
        FUNCTION,
        "--path",
        &path(&one),
    ]);
    let out = server.cli_ok(&[
        "function",
        "publish",
        "--name",
        FUNCTION,
        "--description",
        "first",
    ]);
    assert!(
        out.starts_with(&format!("published version 1 of function {FUNCTION}\n")),
        "{out}"
    );
    assert!(out.contains("\nversion:     1\n"), "{out}");

    // New code: version 1 keeps the old answer, $LATEST has the new one.
    server.cli_ok(&[
        "function",
        "deploy",
        "--name",
        FUNCTION,
        "--path",
        &path(&two),
    ]);
    assert_eq!(invoke(&server, Some("1")), ("one".into(), "1".into()));
    assert_eq!(invoke(&server, None), ("two".into(), "$LATEST".into()));
    assert_eq!(
        invoke(&server, Some("$LATEST")),
        ("two".into(), "$LATEST".into())
    );
    server.cli_fails(
        &["function", "invoke", "--name", FUNCTION, "--qualifier", "7"],
        1,
        "not found",
    );

    let v2 = parse(&server.cli_ok(&[
        "--output", "json", "function", "publish", "--name", FUNCTION,
    ]));
    assert_eq!(v2["version"], 2, "{v2}");
    let list = server.cli_ok(&["function", "versions", "--name", FUNCTION]);
    let first_column: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(first_column, ["VERSION", "$LATEST", "1", "2"], "{list}");
    assert!(list.contains("first"), "{list}");
    let list = parse(&server.cli_ok(&[
        "--output", "json", "function", "versions", "--name", FUNCTION,
    ]));
    let versions: Vec<Value> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].clone())
        .collect();
    assert_eq!(versions, [Value::Null, 1.into(), 2.into()], "{list}");

    // An alias runs its version, and follows it when it changes.
    let out = server.cli_ok(&[
        "alias",
        "create",
        "--function",
        FUNCTION,
        "--name",
        "live",
        "--version",
        "1",
        "--description",
        "production",
    ]);
    assert!(
        out.starts_with(&format!("created alias live of function {FUNCTION}\n")),
        "{out}"
    );
    assert_eq!(invoke(&server, Some("live")), ("one".into(), "1".into()));
    let r = server.http().send(
        "POST",
        &format!("/v1/functions/{FUNCTION}/invoke?qualifier=live"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-skyscale-executed-version"), Some("1"));
    let r = server.http().send(
        "POST",
        &format!("/v1/functions/{FUNCTION}/invoke?qualifer=live"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    assert!(
        r.error_message().contains("qualifier"),
        "{}",
        r.error_message()
    );

    server.cli_ok(&[
        "alias",
        "update",
        "--function",
        FUNCTION,
        "--name",
        "live",
        "--version",
        "2",
    ]);
    assert_eq!(invoke(&server, Some("live")), ("two".into(), "2".into()));
    let get = parse(&server.cli_ok(&[
        "--output",
        "json",
        "alias",
        "get",
        "--function",
        FUNCTION,
        "--name",
        "live",
    ]));
    assert_eq!(
        (&get["function"], &get["name"], &get["version"]),
        (&FUNCTION.into(), &"live".into(), &"2".into()),
        "{get}"
    );
    assert_eq!(get["description"], "production", "{get}");
    let text = server.cli_ok(&["alias", "get", "--function", FUNCTION, "--name", "live"]);
    assert!(text.contains("\nversion:     2\n"), "{text}");

    // Weighted routing: accepted, shown, and each invocation runs one of the two versions.
    server.cli_ok(&[
        "alias",
        "create",
        "--function",
        FUNCTION,
        "--name",
        "canary",
        "--version",
        "1",
        "--routing",
        "2=0.5",
    ]);
    for _ in 0..4 {
        let r = server.http().send(
            "POST",
            &format!("/v1/functions/{FUNCTION}/invoke?qualifier=canary"),
            Some(b"{}".to_vec()),
        );
        let ran = r.header("x-skyscale-executed-version").unwrap().to_owned();
        assert!(ran == "1" || ran == "2", "{ran}");
        assert_eq!(r.json()["version"], ran.as_str());
    }
    let table = server.cli_ok(&["alias", "list", "--function", FUNCTION]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "VERSION", "ROUTING", "DESCRIPTION"]);
    assert!(
        rows.contains(&vec!["live", "2", "-", "production"]),
        "{table}"
    );
    assert!(rows.contains(&vec!["canary", "1", "2=0.5"]), "{table}");
    let list =
        parse(&server.cli_ok(&["--output", "json", "alias", "list", "--function", FUNCTION]));
    let canary = list["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "canary")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(
        canary["routing"],
        serde_json::json!({"version": "2", "weight": 0.5})
    );
    let cleared = parse(&server.cli_ok(&[
        "--output",
        "json",
        "alias",
        "update",
        "--function",
        FUNCTION,
        "--name",
        "canary",
        "--no-routing",
    ]));
    assert!(cleared.get("routing").is_none(), "{cleared}");
    assert_eq!(cleared["version"], "1", "{cleared}");

    // Bad input: refused before anything is sent, or by the server, with a clear message.
    let update = ["alias", "update", "--function", FUNCTION, "--name", "live"];
    server.cli_fails(
        &[&update[..], &["--routing", "nope"]].concat(),
        2,
        "expected VERSION=WEIGHT",
    );
    server.cli_fails(
        &[&update[..], &["--routing", "2=lots"]].concat(),
        2,
        "is not a number",
    );
    server.cli_fails(&update, 1, "nothing to update");
    server.cli_fails(
        &[&update[..], &["--routing", "1=1.5"]].concat(),
        1,
        "between 0.0 and 1.0",
    );

    // A deleted alias is gone: invoking it fails and says so.
    let out = server.cli_ok(&["alias", "delete", "--function", FUNCTION, "--name", "live"]);
    assert_eq!(out, format!("deleted alias live of function {FUNCTION}\n"));
    server.cli_fails(
        &[
            "function",
            "invoke",
            "--name",
            FUNCTION,
            "--qualifier",
            "live",
        ],
        1,
        "not found",
    );
    server.cli_fails(
        &["alias", "get", "--function", FUNCTION, "--name", "live"],
        1,
        "not found",
    );
    let names: Vec<String> =
        parse(&server.cli_ok(&["--output", "json", "alias", "list", "--function", FUNCTION]))
            ["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(names, ["canary"]);
}
