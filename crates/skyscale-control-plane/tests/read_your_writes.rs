//! Queries of invocation records and logs see every invocation that answered before the
//! query was made, although both are written by a background writer in batches.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{create_fn, tail, Server};
use serde_json::json;

const ECHO: &str =
    "def handler(event, context):\n    print('said', event['n'], flush=True)\n    return event\n";

#[test]
fn a_log_and_a_record_read_right_after_an_invocation_contain_it() {
    let server = Server::start(common::API_DRIVER);
    let http = server.http();
    let r = create_fn(&http, "echo", ECHO, json!({}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    for n in 0..50 {
        let r = http.invoke("echo", &json!({ "n": n }).to_string());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let id = r.header("x-skyscale-request-id").unwrap().to_owned();

        // No polling: the first read after the answer must have it.
        let logs = http
            .get(&format!(
                "/v1/functions/echo/logs?request_id={id}&format=json"
            ))
            .json();
        let entries = logs["entries"].as_array().unwrap();
        assert_eq!(
            entries.len(),
            1,
            "invocation {n} ({id}) answered, but its log was not there right after: {logs}\n{}",
            tail(&server.log(), 20)
        );
        let text = entries[0]["text"].as_str().unwrap();
        assert!(text.contains(&format!("said {n}\n")), "{text}");

        let record = http.get(&format!("/v1/invocations/{id}"));
        assert_eq!(
            record.status,
            200,
            "invocation {n} ({id}) answered, but its record was not there right after: {}",
            String::from_utf8_lossy(&record.body)
        );
        assert_eq!(record.json()["status"], "success");
        let newest = http.get("/v1/functions/echo/invocations?limit=1").json();
        assert_eq!(
            newest["invocations"][0]["request_id"],
            id.as_str(),
            "{newest}"
        );
    }
}
