//! The client against a real HTTP server on 127.0.0.1:0. The server here is a stand-in that
//! answers canned responses: it checks what the client sends and how it reads answers,
//! especially errors. The control plane's own integration tests cover the real API.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use skyscale_client::{Client, ClientError};
use skyscale_types::api::{CreateFunction, FunctionError, FunctionInfo, Health, UpdateFunction};
use skyscale_types::ApiKey;
use tiny_http::{Header, Response, Server};

/// What the stand-in server saw of one request.
#[derive(Debug)]
struct Seen {
    method: String,
    url: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// A canned answer.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        Self::new(status, serde_json::to_vec(value).expect("serializable"))
            .header("content-type", "application/json")
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Starts a server that gives `answers` in order, one per request, and reports each request
/// on the returned channel. Returns the endpoint URL.
fn serve(answers: Vec<Answer>) -> (String, mpsc::Receiver<Seen>) {
    let server = Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = server.server_addr().to_ip().expect("an IP address");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for answer in answers {
            let Ok(mut req) = server.recv() else { return };
            let header = |name: &str| {
                req.headers()
                    .iter()
                    .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                    .map(|h| h.value.as_str().to_owned())
            };
            let authorization = header("authorization");
            let content_type = header("content-type");
            let mut body = Vec::new();
            req.as_reader().read_to_end(&mut body).expect("read body");
            let _ = tx.send(Seen {
                method: req.method().as_str().to_owned(),
                url: req.url().to_owned(),
                authorization,
                content_type,
                body,
            });
            let mut resp = Response::from_data(answer.body).with_status_code(answer.status);
            for (name, value) in answer.headers {
                resp.add_header(Header::from_bytes(name, value).expect("valid header"));
            }
            req.respond(resp).expect("respond");
        }
    });
    (format!("http://{addr}"), rx)
}

fn key() -> String {
    ApiKey::generate().token()
}

fn info(name: &str) -> FunctionInfo {
    FunctionInfo {
        name: name.to_owned(),
        runtime: "python3.11".into(),
        handler: "handler.handler".into(),
        memory_mb: 128,
        timeout_s: 3,
        environment: BTreeMap::new(),
        description: String::new(),
        code_sha256: None,
        code_size: None,
        reserved_concurrency: None,
        revision: 1,
        created_at: "2025-01-01T00:00:00Z".into(),
        updated_at: "2025-01-01T00:00:00Z".into(),
        version: None,
        network: false,
        ephemeral_storage_mb: 512,
        layers: Vec::new(),
        snap_start: Default::default(),
    }
}

#[test]
fn json_error_becomes_api_error_with_code_and_message() {
    let (endpoint, _seen) = serve(vec![Answer::new(
        404,
        r#"{"error":{"code":"not_found","message":"function \"nope\" does not exist"}}"#,
    )
    .header("content-type", "application/json")]);
    let client = Client::new(&endpoint, Some(key())).unwrap();
    let err = client.get_function("nope").unwrap_err();
    match &err {
        ClientError::Api {
            status,
            code,
            message,
        } => {
            assert_eq!(*status, 404);
            assert_eq!(code, "not_found");
            assert_eq!(message, "function \"nope\" does not exist");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(err.api_code(), Some("not_found"));
    assert_eq!(
        err.to_string(),
        "function \"nope\" does not exist (not_found, HTTP 404)"
    );
}

#[test]
fn non_json_error_gives_status_and_text() {
    let (endpoint, _seen) = serve(vec![
        Answer::new(502, "<html>\n  <body>upstream   down</body>\n</html>\n"),
        Answer::new(503, ""),
    ]);
    let client = Client::new(&endpoint, Some(key())).unwrap();

    let err = client.list_functions().unwrap_err();
    assert!(matches!(
        err,
        ClientError::UnexpectedStatus { status: 502, .. }
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "Skyscale at {endpoint} answered HTTP 502: <html> <body>upstream down</body> </html>"
        )
    );

    let err = client.list_functions().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Skyscale at {endpoint} answered HTTP 503: Service Unavailable")
    );
}

#[test]
fn connection_refused_names_the_endpoint() {
    // Bind and release a port so that nothing listens on it.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = Client::new(&endpoint, Some(key())).unwrap();
    let err = client.list_functions().unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach Skyscale at {endpoint}: connection refused — is skyscale-control-plane running?"
        )
    );
}

#[test]
fn garbage_2xx_body_is_a_decode_error() {
    let (endpoint, _seen) = serve(vec![Answer::new(200, "not json")]);
    let client = Client::new(&endpoint, Some(key())).unwrap();
    let err = client.get_function("f").unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot decode the answer of Skyscale at {endpoint} to GET /v1/functions/{{name}}: "
        )),
        "{err}"
    );
}

#[test]
fn invoke_sends_payload_verbatim_and_reads_result() {
    let (endpoint, seen) = serve(vec![Answer::new(200, r#"{"answer": 42}"#)
        .header("x-skyscale-request-id", "req-1")
        .header("x-skyscale-cold-start", "true")]);
    let token = key();
    let client = Client::new(&endpoint, Some(token.clone())).unwrap();
    let payload = br#"{ "a" : [1, 2.50] }"#.to_vec();
    let out = client.invoke("hello", payload.clone()).unwrap();
    assert_eq!(out.body, br#"{"answer": 42}"#);
    assert_eq!(out.function_error, None);
    assert_eq!(out.request_id.as_deref(), Some("req-1"));
    assert_eq!(out.cold_start, Some(true));
    assert_eq!(out.error_body(), None);

    let seen = seen.recv().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.url, "/v1/functions/hello/invoke");
    assert_eq!(seen.authorization, Some(format!("Bearer {token}")));
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    assert_eq!(seen.body, payload);
}

#[test]
fn invoke_reads_the_function_error_header() {
    let (endpoint, _seen) = serve(vec![Answer::new(
        200,
        r#"{"errorMessage":"division by zero","errorType":"ZeroDivisionError","stackTrace":["  File \"/var/task/handler.py\", line 2, in handler\n"]}"#,
    )
    .header("x-skyscale-function-error", "Unhandled")
    .header("x-skyscale-request-id", "req-2")
    .header("x-skyscale-cold-start", "false")]);
    let client = Client::new(&endpoint, Some(key())).unwrap();
    let out = client.invoke("boom", b"{}".to_vec()).unwrap();
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.cold_start, Some(false));
    assert_eq!(
        out.error_body(),
        Some(FunctionError {
            error_message: "division by zero".into(),
            error_type: "ZeroDivisionError".into(),
            stack_trace: vec!["  File \"/var/task/handler.py\", line 2, in handler\n".into()],
        })
    );
}

#[test]
fn requests_have_the_documented_shape() {
    let health = Health {
        status: "ok".into(),
        version: Some("0.1.0".into()),
        driver: Some("runc".into()),
        warm_pool_idle: Some(0),
        sandboxes: Some(0),
        busy: Some(0),
    };
    let (endpoint, seen) = serve(vec![
        Answer::json(200, &health),
        Answer::json(201, &info("f")),
        Answer::json(200, &info("f")),
        Answer::json(200, &info("f")),
        Answer::new(204, ""),
    ]);
    let token = key();
    let client = Client::new(&endpoint, Some(token.clone())).unwrap();
    let bearer = Some(format!("Bearer {token}"));

    assert_eq!(client.health().unwrap().driver.as_deref(), Some("runc"));
    let s = seen.recv().unwrap();
    assert_eq!((s.method.as_str(), s.url.as_str()), ("GET", "/v1/health"));
    assert_eq!(
        s.authorization, bearer,
        "health sends the key it has: the host's details need one"
    );

    let create = CreateFunction {
        name: "f".into(),
        runtime: "python3.11".into(),
        memory_mb: Some(256),
        code_zip_base64: Some("UEsDBA==".into()),
        ..Default::default()
    };
    assert_eq!(client.create_function(&create).unwrap(), info("f"));
    let s = seen.recv().unwrap();
    assert_eq!(
        (s.method.as_str(), s.url.as_str()),
        ("POST", "/v1/functions")
    );
    assert_eq!(s.authorization, bearer);
    assert_eq!(s.content_type.as_deref(), Some("application/json"));
    let sent: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"name": "f", "runtime": "python3.11", "memory_mb": 256,
                           "code_zip_base64": "UEsDBA=="})
    );

    let update = UpdateFunction {
        environment: Some(BTreeMap::new()),
        ..Default::default()
    };
    client.update_function("f", &update).unwrap();
    let s = seen.recv().unwrap();
    assert_eq!(
        (s.method.as_str(), s.url.as_str()),
        ("PATCH", "/v1/functions/f")
    );
    assert_eq!(s.body, br#"{"environment":{}}"#);

    client.deploy_code("f", b"PK\x03\x04zip".to_vec()).unwrap();
    let s = seen.recv().unwrap();
    assert_eq!(
        (s.method.as_str(), s.url.as_str()),
        ("PUT", "/v1/functions/f/code")
    );
    assert_eq!(s.content_type.as_deref(), Some("application/zip"));
    assert_eq!(s.body, b"PK\x03\x04zip");
    assert_eq!(s.authorization, bearer);

    client.delete_function("f").unwrap();
    let s = seen.recv().unwrap();
    assert_eq!(
        (s.method.as_str(), s.url.as_str()),
        ("DELETE", "/v1/functions/f")
    );
}
