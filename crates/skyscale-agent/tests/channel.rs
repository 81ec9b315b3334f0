//! How the agent tells the two runtime channels apart, with runtimes other than the
//! bootstrap: one that knows only the HTTP Runtime API (like awslambdaric), and hand-written
//! pipe runtimes that misbehave.

mod common;

use std::time::{Duration, Instant};

use common::{json, meta, now_ms, Agent};
use skyscale_protocol::{ExitStatus, Frame, InitDone, InvokeStatus};

/// Starts the agent with `runtime` (Python source) as the runtime command itself.
fn start(runtime: &str) -> (Agent, InitDone, Vec<u8>) {
    let mut agent = Agent::start();
    let path = agent.code.path().join("runtime.py");
    std::fs::write(&path, runtime).expect("write the runtime");
    let mut init = agent.init_frame("unused.handler", &[], 10_000);
    init.command = vec![
        "/usr/bin/python3".into(),
        path.to_string_lossy().into_owned(),
    ];
    agent.send(&Frame::Init(init));
    match agent.recv() {
        Frame::InitDone(done, body) => (agent, done, body),
        other => panic!("expected InitDone, got {other:?}"),
    }
}

/// Frame helpers for hand-written pipe runtimes.
const FRAMES: &str = r#"
import json, os, struct, sys, time
rfd, wfd = (int(fd) for fd in os.environ["_SKYSCALE_RUNTIME_FDS"].split(","))
def send(tag, meta, body=b""):
    m = json.dumps(meta).encode()
    data = struct.pack(">IBI", 5 + len(m) + len(body), tag, len(m)) + m + body
    while data:
        data = data[os.write(wfd, data):]
def recv():
    def exactly(n):
        b = b""
        while len(b) < n:
            chunk = os.read(rfd, n - len(b))
            if not chunk:
                sys.exit(0)
            b += chunk
        return b
    (n,) = struct.unpack(">I", exactly(4))
    frame = exactly(n)
    (ml,) = struct.unpack(">I", frame[1:5])
    return frame[0], json.loads(frame[5:5 + ml]), frame[5 + ml:]
"#;

/// A runtime that speaks only the HTTP Runtime API and leaves the offered pipe alone.
const HTTP_ONLY: &str = r#"
import http.client, json, os
fds = [int(fd) for fd in os.environ["_SKYSCALE_RUNTIME_FDS"].split(",")]
inherited = []
for fd in fds:
    try:
        os.fstat(fd)
        inherited.append(os.get_inheritable(fd))  # no close-on-exec flag: really inherited
    except OSError:
        inherited.append(None)
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port))
while True:
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    if event.get("fail"):
        kind = event.get("type", "Custom.Failure")
        doc = json.dumps({"errorType": kind, "errorMessage": "asked to"})
        c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/error", body=doc)
    else:
        out = json.dumps({"inherited": inherited, "rid": rid})
        c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=out)
    c.getresponse().read()
"#;

#[test]
fn a_runtime_that_ignores_the_pipe_is_served_over_http() {
    let (mut agent, done, body) = start(HTTP_ONLY);
    assert!(done.ok, "{done:?} {}", String::from_utf8_lossy(&body));
    // It talks HTTP while still holding the pipe ends it never used.
    let fds = common::fds(&agent.runtime_pid().to_string());
    assert!(fds.iter().any(|(_, l)| l.starts_with("socket:")), "{fds:?}");
    for id in ["h1", "h2"] {
        let (result, body) = agent.invoke(id, "{}");
        assert_eq!(result.status, InvokeStatus::Ok);
        let v = json(&body);
        assert_eq!(v["rid"], id);
        assert_eq!(v["inherited"], serde_json::json!([true, true]));
    }
    let (result, body) = agent.invoke("h3", r#"{"fail": true}"#);
    assert!(matches!(result.status, InvokeStatus::Error { .. }));
    assert_eq!(result.status.error_type(), Some("Custom.Failure"));
    assert_eq!(json(&body)["errorMessage"], "asked to");
}

/// A runtime's own error type is a function error whatever it says, even the name of a
/// platform error: the runtime stays up and the status says what really happened.
#[test]
fn a_runtime_error_named_like_a_platform_error_is_a_function_error() {
    let (mut agent, done, body) = start(HTTP_ONLY);
    assert!(done.ok, "{done:?} {}", String::from_utf8_lossy(&body));
    for (id, kind) in [("t1", "Sandbox.Timedout"), ("t2", "Runtime.ExitError")] {
        let event = serde_json::json!({"fail": true, "type": kind}).to_string();
        let (result, body) = agent.invoke(id, &event);
        assert_eq!(
            result.status,
            InvokeStatus::Error {
                error_type: Some(kind.into())
            }
        );
        assert_eq!(json(&body)["errorType"], kind);
    }
    let (result, _) = agent.invoke("after", "{}");
    assert_eq!(result.status, InvokeStatus::Ok);
}

#[test]
fn an_oversized_response_on_the_runtime_api_is_a_function_error_and_the_runtime_lives() {
    // Like awslambdaric returning 7 MB: the runtime gets 413, the caller Lambda's
    // `Function.ResponseSizeTooLarge`, and the same runtime takes the next event.
    let runtime = r#"
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port))
statuses = []
while True:
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    out = "x" * (7 * 1024 * 1024) if event.get("big") else json.dumps({"statuses": statuses})
    c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=out)
    resp = c.getresponse()
    resp.read()
    statuses.append(resp.status)
"#;
    let (mut agent, done, body) = start(runtime);
    assert!(done.ok, "{done:?} {}", String::from_utf8_lossy(&body));
    let (result, body) = agent.invoke("big", r#"{"big": true}"#);
    assert!(matches!(result.status, InvokeStatus::Error { .. }));
    assert_eq!(
        result.status.error_type(),
        Some("Function.ResponseSizeTooLarge")
    );
    assert_eq!(json(&body)["errorType"], "Function.ResponseSizeTooLarge");
    let (result, body) = agent.invoke("next", "{}");
    assert_eq!(result.status, InvokeStatus::Ok);
    assert_eq!(json(&body)["statuses"], serde_json::json!([413]));
}

#[test]
fn pipe_error_types_fall_back_to_the_document() {
    // Like the Runtime API without the error-type header: the document's errorType counts.
    let runtime = format!(
        "{FRAMES}
send(3, {{'ok': True, 'error_type': None, 'duration_us': 0, 'logs': ''}})
while True:
    tag, meta, body = recv()
    print('got', meta['request_id'], flush=True)
    doc = json.dumps({{'errorType': 'Doc.Type', 'errorMessage': 'm'}}).encode()
    send(5, {{'request_id': meta['request_id'], 'status': 'error', 'error_type': None,
              'duration_us': 0, 'max_rss_kb': 0, 'logs': ''}}, doc)
"
    );
    let (mut agent, done, _) = start(&runtime);
    assert!(done.ok, "{done:?}");
    let (result, body) = agent.invoke("p1", "{}");
    assert!(matches!(result.status, InvokeStatus::Error { .. }));
    assert_eq!(result.status.error_type(), Some("Doc.Type"));
    assert_eq!(json(&body)["errorMessage"], "m");
    assert_eq!(result.logs, "got p1\n");
    assert!(result.max_rss_kb > 1000, "{}", result.max_rss_kb);
}

#[test]
fn garbage_on_the_pipe_kills_the_runtime() {
    let runtime = format!(
        "{FRAMES}
os.write(wfd, b'\\x00\\x00\\x00\\x05\\x63junk')
time.sleep(60)
"
    );
    let started = Instant::now();
    let (mut agent, done, body) = start(&runtime);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!done.ok);
    assert_eq!(done.failure_type(), Some("Runtime.ExitError"));
    assert_eq!(
        json(&body)["errorMessage"],
        "RequestId: <none> Error: Runtime exited with error: signal: killed"
    );
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn a_wrong_request_id_on_the_pipe_is_a_crash() {
    let runtime = format!(
        "{FRAMES}
send(3, {{'ok': True, 'error_type': None, 'duration_us': 0, 'logs': ''}})
recv()
send(5, {{'request_id': 'someone-else', 'status': 'ok', 'error_type': None,
          'duration_us': 0, 'max_rss_kb': 0, 'logs': ''}}, b'1')
time.sleep(60)
"
    );
    let (mut agent, done, _) = start(&runtime);
    assert!(done.ok, "{done:?}");
    let (result, body) = agent.invoke("w1", "{}");
    assert_eq!(
        result.status,
        InvokeStatus::Crashed {
            exit: ExitStatus::Signal(9)
        }
    );
    assert_eq!(
        json(&body)["errorMessage"],
        "RequestId: w1 Error: Runtime exited with error: signal: killed"
    );
}

#[test]
fn the_deadline_holds_when_the_runtime_stops_reading() {
    // The event is far larger than the pipe: the agent must not block writing it.
    let runtime = format!(
        "{FRAMES}
send(3, {{'ok': True, 'error_type': None, 'duration_us': 0, 'logs': ''}})
time.sleep(60)
"
    );
    let (mut agent, done, _) = start(&runtime);
    assert!(done.ok, "{done:?}");
    let payload = format!("\"{}\"", "y".repeat(5 * 1024 * 1024));
    let started = Instant::now();
    let (result, _, _) = agent.invoke_raw(meta("slow", now_ms() + 1000), payload.as_bytes());
    let took = started.elapsed();
    assert_eq!(result.status, InvokeStatus::Timeout);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
}
