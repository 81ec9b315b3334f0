//! Function URLs through the real `skyscale` CLI and `/v1`: the address the CLI prints
//! answers plain HTTP requests, `AWS_IAM` refuses unsigned ones, a deleted URL is gone.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::Server;
use serde_json::Value;

const HANDLER: &str = "\
def handler(event, context):
    return {'statusCode': 200, 'headers': {'content-type': 'text/plain'},
            'body': 'hi ' + event['rawPath']}
";

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The address on the first line of a text answer, `url: http://...`.
fn printed_url(out: &str) -> String {
    let first = out.lines().next().unwrap_or_default();
    first
        .strip_prefix("url:")
        .unwrap_or_else(|| panic!("first line is not the URL: {out}"))
        .trim()
        .to_owned()
}

/// A plain GET with no key or signature: the status and the body.
fn get(url: &str) -> (u16, String) {
    let resp = reqwest::blocking::get(url).unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn function_urls_through_the_cli() {
    let server = Server::start(common::API_DRIVER);
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("handler.py"), HANDLER).unwrap();
    server.cli_ok(&[
        "function",
        "create",
        "--name",
        "f",
        "--runtime",
        "python3.11",
        "--path",
        code.path().to_str().unwrap(),
    ]);

    // A public URL for $LATEST: the printed address answers without a key.
    let out = server.cli_ok(&["function", "url", "create", "--name", "f"]);
    let latest = printed_url(&out);
    assert_eq!(latest, format!("{}/url/f/", server.url), "{out}");
    assert!(out.contains("\nauth:         NONE (public)\n"), "{out}");
    assert_eq!(get(&format!("{latest}x/y")), (200, "hi /x/y".to_owned()));

    let out = server.cli_ok(&["function", "url", "get", "--name", "f"]);
    assert_eq!(printed_url(&out), latest, "{out}");
    let info =
        parse(&server.cli_ok(&["--output", "json", "function", "url", "get", "--name", "f"]));
    assert_eq!(
        (&info["url"], &info["auth_type"], &info["invoke_mode"]),
        (&latest.as_str().into(), &"NONE".into(), &"BUFFERED".into()),
        "{info}"
    );
    assert!(
        info.get("alias").is_none() && info.get("cors").is_none(),
        "{info}"
    );

    // Refused: a second URL for $LATEST, a CORS method Lambda does not allow.
    server.cli_fails(
        &["function", "url", "create", "--name", "f"],
        1,
        "already exists",
    );
    let live = [
        "function",
        "url",
        "create",
        "--name",
        "f",
        "--qualifier",
        "live",
    ];
    server.cli_ok(&[
        "alias",
        "create",
        "--function",
        "f",
        "--name",
        "live",
        "--version",
        "$LATEST",
    ]);
    server.cli_fails(
        &[&live[..], &["--cors-method", "TRACE"]].concat(),
        1,
        "\"TRACE\": expected one of GET, PUT, HEAD, POST, PATCH, DELETE",
    );

    // An alias's URL that needs a signature: an unsigned request is refused.
    let out = server.cli_ok(
        &[
            &live[..],
            &[
                "--auth",
                "aws-iam",
                "--cors-origin",
                "https://app.example",
                "--cors-method",
                "get",
            ],
        ]
        .concat(),
    );
    let aliased = printed_url(&out);
    assert_eq!(aliased, format!("{}/url/f:live/", server.url), "{out}");
    assert!(out.contains("\nqualifier:    live\n"), "{out}");
    assert!(
        out.contains("\ncors:         origins https://app.example; methods GET\n"),
        "{out}"
    );
    assert_eq!(get(&format!("{aliased}x")).0, 403);

    let table = server.cli_ok(&["function", "url", "list", "--name", "f"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["URL", "QUALIFIER", "AUTH", "CORS"],
            vec![latest.as_str(), "$LATEST", "NONE", "-"],
            vec![aliased.as_str(), "live", "AWS_IAM", "yes"],
        ],
        "{table}"
    );

    // Made public and without CORS, the alias's URL answers unsigned requests.
    let update = [
        "function",
        "url",
        "update",
        "--name",
        "f",
        "--qualifier",
        "live",
    ];
    let out = server.cli_ok(&[&update[..], &["--auth", "none", "--no-cors"]].concat());
    assert!(out.contains("\ncors:         -\n"), "{out}");
    assert_eq!(get(&format!("{aliased}a")), (200, "hi /a".to_owned()));
    server.cli_fails(&update, 1, "nothing to update");

    // A deleted URL answers 404 and is no longer listed.
    let out = server.cli_ok(&["function", "url", "delete", "--name", "f"]);
    assert_eq!(out, "deleted the function URL of f\n");
    assert_eq!(get(&format!("{latest}x/y")).0, 404);
    server.cli_fails(
        &["function", "url", "get", "--name", "f"],
        1,
        "has no function URL",
    );
    let list =
        parse(&server.cli_ok(&["--output", "json", "function", "url", "list", "--name", "f"]));
    let urls: Vec<&Value> = list["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["url"])
        .collect();
    assert_eq!(urls, [&Value::from(aliased.as_str())], "{list}");

    // `/v1` takes the qualifier as a query parameter, and nothing else there.
    let r = server.http().get("/v1/functions/f/url?qualifer=live");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    let r = server.http().get("/v1/functions/f/url?qualifier=1");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_parameter")
    );
}
