//! Bad input always gets a clear error and changes nothing.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{create_fn, zip_of, Server, ADMIN_KEY};
use serde_json::json;

const HELLO: &str = "def handler(event, context):\n    return {'v': 1}\n";

fn function_json(http: &common::Http, name: &str) -> serde_json::Value {
    let r = http.get(&format!("/v1/functions/{name}"));
    assert_eq!(r.status, 200);
    r.json()
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let server = Server::start(common::API_DRIVER);
    let http = server.http();
    assert_eq!(create_fn(&http, "good", HELLO, json!({})).status, 201);
    let before = function_json(&http, "good");

    // Duplicate name.
    let r = create_fn(&http, "good", "x = 1\n", json!({}));
    assert_eq!((r.status, r.error_code().as_str()), (409, "conflict"));
    assert!(
        r.error_message().contains("already exists"),
        "{}",
        r.error_message()
    );

    // Names, limits, runtime, handler, environment.
    let cases = [
        (json!({"name": "bad name!"}), "invalid function name"),
        (json!({"name": "x".repeat(65)}), "invalid function name"),
        (
            json!({"name": "m1", "memory_mb": 64}),
            "between 128 and 10240",
        ),
        (
            json!({"name": "m2", "memory_mb": 20000}),
            "between 128 and 10240",
        ),
        (json!({"name": "t1", "timeout_s": 0}), "between 1 and 900"),
        (json!({"name": "t2", "timeout_s": 901}), "between 1 and 900"),
        (
            json!({"name": "r1", "runtime": "python2.7"}),
            "invalid runtime",
        ),
        (
            json!({"name": "r2", "runtime": "python3.99"}),
            "installed runtimes: python3.11",
        ),
        (json!({"name": "h1", "handler": "nodot"}), "invalid handler"),
        (
            json!({"name": "e1", "environment": {"AWS_REGION": "x"}}),
            "reserved",
        ),
        (
            json!({"name": "e2", "environment": {"1BAD": "x"}}),
            "invalid environment variable name",
        ),
    ];
    for (mut body, expected) in cases {
        let obj = body.as_object_mut().unwrap();
        obj.entry("runtime").or_insert(json!("python3.11"));
        let r = http.post_json("/v1/functions", &body);
        assert_eq!(
            r.status,
            400,
            "{body} gave {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), "invalid_parameter");
        assert!(
            r.error_message().contains(expected),
            "{body}: {}",
            r.error_message()
        );
    }
    // Malformed JSON and unknown fields.
    let r = http.send("POST", "/v1/functions", Some(b"{not json".to_vec()));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    let r = http.post_json(
        "/v1/functions",
        &json!({"name": "u", "runtime": "python3.11", "memroy": 1}),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.error_message().contains("memroy"),
        "{}",
        r.error_message()
    );

    // Not-a-zip and zip-slip deploys: refused, previous code still in place and working.
    let r = http.send(
        "PUT",
        "/v1/functions/good/code",
        Some(b"definitely not a zip".to_vec()),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.error_message().contains("not a valid zip"),
        "{}",
        r.error_message()
    );
    let slip = zip_of(&[("../../evil.py", "x = 1\n")]);
    let r = http.send("PUT", "/v1/functions/good/code", Some(slip));
    assert_eq!(r.status, 400);
    assert!(r.error_message().contains("'..'"), "{}", r.error_message());
    let r = http.send(
        "PUT",
        "/v1/functions/nope/code",
        Some(zip_of(&[("handler.py", HELLO)])),
    );
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));

    // Invoke: invalid JSON, too large, unknown function.
    let r = http.invoke("good", "{\"a\": ");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    assert!(
        r.error_message().contains("not valid JSON"),
        "{}",
        r.error_message()
    );
    let big = format!("\"{}\"", "x".repeat(6 * 1024 * 1024 + 10));
    let r = http.invoke("good", &big);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "payload_too_large")
    );
    let r = http.invoke("missing", "{}");
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));

    // Nothing changed: same record, same code, still answers.
    assert_eq!(function_json(&http, "good"), before);
    let names: Vec<_> = http.get("/v1/functions").json()["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(names, [json!("good")]);
    assert_eq!(http.invoke("good", "{}").json()["v"], 1);
}

#[test]
fn api_keys_are_required_and_checked() {
    let server = Server::start(common::API_DRIVER);
    // Health needs no key.
    assert_eq!(server.http().without_key().get("/v1/health").status, 200);

    let no_key = server.http().without_key().get("/v1/functions");
    assert_eq!(
        (no_key.status, no_key.error_code().as_str()),
        (401, "unauthorized")
    );
    assert!(no_key.error_message().contains("missing api key"));
    // A header that is there but not a bearer token says so (binary bytes included).
    for value in [&b"Basic abc"[..], &b"Bearer \xff\xfe"[..]] {
        let r = server
            .http()
            .without_key()
            .client
            .get(format!("{}/v1/functions", server.url))
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            )
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let body: serde_json::Value = r.json().unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("malformed Authorization header"),
            "{body}"
        );
    }

    let (id, _) = ADMIN_KEY.split_once('.').unwrap();
    let wrong_secret = format!("{id}.{}", "w".repeat(40));
    let unknown_id = format!("SKYNOSUCHKEY000.{}", "w".repeat(40));
    for key in [wrong_secret.as_str(), unknown_id.as_str(), "garbage"] {
        let r = server.http().with_key(key).get("/v1/functions");
        assert_eq!(r.status, 401, "key {key}");
        // The same answer whether or not the id exists.
        assert_eq!(r.error_message(), "invalid API key");
    }
    let r = server.http().with_key(&wrong_secret).post_json(
        "/v1/functions",
        &json!({"name": "sneaky", "runtime": "python3.11"}),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        server.http().get("/v1/functions").json()["functions"],
        json!([])
    );

    // The CLI says what is wrong in one line.
    let out = server.cli(&["--api-key", &wrong_secret, "function", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("invalid API key"),
        "{stderr}"
    );
}

#[test]
fn first_start_generates_an_admin_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start_with(common::API_DRIVER, &[("SKYSCALE_ADMIN_KEY", "")]);
    let path = server.dir.path().join("data/admin-key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert_eq!(
        server.http().with_key(&key).get("/v1/functions").status,
        200
    );
    // The secret itself is not in the database.
    let secret = key.split_once('.').unwrap().1;
    let db = std::fs::read(server.dir.path().join("skyscale.db")).unwrap();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));
}
