//! Invocations through the real agent and the real Python bootstrap.

#[macro_use]
mod common;

use common::{json, meta, now_ms, Agent};
use skyscale_protocol::{Frame, InvokeStatus, MAX_LOG_BYTES};

const APP: &str = r#"
import os, sys, json

count = 0

def handler(event, context):
    global count
    count += 1
    print(f"hello from {context.aws_request_id}")
    action = event.get("action") if isinstance(event, dict) else None
    if action == "boom":
        raise ValueError("boom")
    if action == "env":
        return {"value": os.environ.get("MY_VAR")}
    if action == "count":
        return {"count": count}
    if action == "echo":
        return event
    if action == "shout":
        sys.stdout.write("x" * (2 * 1024 * 1024) + "\n")
        print("the end")
        return "done"
    if action == "bytes":
        return b"\x00\xffraw"
    if action == "unserializable":
        return {"s": {1, 2}}
    if action == "too_big":
        return "x" * (6 * 1024 * 1024)
    if action == "fds":
        # Descriptors a subprocess of the handler would inherit, besides stdio.
        out = {}
        for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
            try:
                if fd > 2 and os.get_inheritable(fd):
                    out[str(fd)] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass  # the listing's own descriptor
        return {"inheritable": out, "fds_env": os.environ.get("_SKYSCALE_RUNTIME_FDS")}
    return {"ok": True, "n": event["n"] + 1}
"#;

fn app() -> Agent {
    Agent::ready(
        &[("app.py", APP)],
        "app.handler",
        &[("MY_VAR", "hello env")],
    )
}

both_channels! {
    fn success_returns_the_exact_json_body() {
        let mut agent = app();
        let (result, body) = agent.invoke("req-1", r#"{"n": 1}"#);
        assert_eq!(result.status, InvokeStatus::Ok);
        assert_eq!(result.status.error_type(), None);
        assert_eq!(body, br#"{"ok": true, "n": 2}"#);
        assert!(result.duration_us > 0);
        assert!(result.max_rss_kb > 1000, "max_rss_kb {}", result.max_rss_kb);
    }

    fn state_survives_between_invocations_and_logs_are_per_invocation() {
        let mut agent = app();
        let (r1, b1) = agent.invoke("first", r#"{"action": "count"}"#);
        assert_eq!(json(&b1)["count"], 1);
        assert!(r1.logs.contains("hello from first\n"), "{:?}", r1.logs);
        let (r2, b2) = agent.invoke("second", r#"{"action": "count"}"#);
        assert_eq!(json(&b2)["count"], 2);
        assert!(r2.logs.contains("hello from second\n"), "{:?}", r2.logs);
        assert!(!r2.logs.contains("hello from first"), "{:?}", r2.logs);
    }

    fn environment_variables_reach_the_handler() {
        let mut agent = app();
        let (_, body) = agent.invoke("r", r#"{"action": "env"}"#);
        assert_eq!(json(&body)["value"], "hello env");
    }

    fn handler_exception_is_an_error_result() {
        let mut agent = app();
        let (result, body) = agent.invoke("req-boom", r#"{"action": "boom"}"#);
        assert!(matches!(result.status, InvokeStatus::Error { .. }));
        assert_eq!(result.status.error_type(), Some("ValueError"));
        let doc = json(&body);
        assert_eq!(doc["errorType"], "ValueError");
        assert_eq!(doc["errorMessage"], "boom");
        assert_eq!(doc["requestId"], "req-boom");
        let trace = doc["stackTrace"].as_array().unwrap();
        assert_eq!(trace.len(), 1, "{trace:?}");
        let frame = trace[0].as_str().unwrap();
        assert!(frame.contains("app.py\", line 12, in handler"), "{frame}");
        assert!(frame.contains("raise ValueError(\"boom\")"), "{frame}");
        assert!(
            result.logs.contains("[ERROR] ValueError: boom\nTraceback"),
            "{}",
            result.logs
        );
        // The runtime is still usable.
        let (result, _) = agent.invoke("after", r#"{"n": 1}"#);
        assert_eq!(result.status, InvokeStatus::Ok);
    }

    fn big_payloads_round_trip_byte_exact() {
        let mut agent = app();
        // 1 MiB, and close to the 6 MB limit: many times what a pipe or socket holds.
        for size in [1024 * 1024, 5 * 1024 * 1024 + 512 * 1024] {
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let data: String = (0..size)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(
                        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
                            [(seed % 63) as usize],
                    )
                })
                .collect();
            let payload = format!(r#"{{"action": "echo", "data": "{data}"}}"#);
            let (result, body) = agent.invoke("big", &payload);
            assert_eq!(result.status, InvokeStatus::Ok, "{size}");
            assert!(body == payload.as_bytes(), "payload of {size} changed on the way");
        }
    }

    fn a_response_over_six_megabytes_is_a_function_error_and_the_runtime_lives() {
        // As Lambda: `Function.ResponseSizeTooLarge` for the caller, and the same runtime
        // takes the next event.
        let mut agent = app();
        let (result, body) = agent.invoke("huge", r#"{"action": "too_big"}"#);
        assert!(matches!(result.status, InvokeStatus::Error { .. }));
        assert_eq!(
            result.status.error_type(),
            Some("Function.ResponseSizeTooLarge")
        );
        let doc = json(&body);
        assert_eq!(doc["errorType"], "Function.ResponseSizeTooLarge");
        assert!(
            doc["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("exceeded maximum allowed payload size")),
            "{doc}"
        );
        let (result, body) = agent.invoke("after", r#"{"action": "count"}"#);
        assert_eq!(result.status, InvokeStatus::Ok);
        assert_eq!(json(&body)["count"], 2, "the same runtime answered");
    }

    fn the_channel_leaves_no_trace_for_the_handler() {
        // Same environment on both channels, and no runtime-pipe descriptor a subprocess of
        // the handler could inherit.
        let mut agent = app();
        let (result, body) = agent.invoke("fds", r#"{"action": "fds"}"#);
        assert_eq!(result.status, InvokeStatus::Ok);
        let v = json(&body);
        assert_eq!(v["fds_env"], serde_json::Value::Null);
        let ours = common::own_fd_targets();
        let leaked: Vec<_> = v["inheritable"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, target)| !ours.contains(&target.as_str().unwrap().to_string()))
            .collect();
        assert!(leaked.is_empty(), "{leaked:?}");
    }

    fn huge_output_is_truncated_with_a_marker() {
        let mut agent = app();
        let (result, body) = agent.invoke("loud", r#"{"action": "shout"}"#);
        assert_eq!(result.status, InvokeStatus::Ok);
        assert_eq!(body, br#""done""#);
        assert!(result.logs.len() <= MAX_LOG_BYTES, "{}", result.logs.len());
        assert!(
            result.logs.starts_with("[skyscale: "),
            "{}",
            &result.logs[..80]
        );
        assert!(result.logs.contains(" bytes of output dropped]\n"));
        assert!(result.logs.ends_with("xxx\nthe end\n"));
        // The next invocation starts with clean logs.
        let (result, _) = agent.invoke("quiet", r#"{"n": 0}"#);
        assert_eq!(result.logs, "hello from quiet\n");
    }

    fn bad_input_and_unserializable_output_are_runtime_errors() {
        let mut agent = app();
        let (result, body) = agent.invoke("bad-in", "{not json");
        assert!(matches!(result.status, InvokeStatus::Error { .. }));
        assert_eq!(result.status.error_type(), Some("Runtime.UnmarshalError"));
        assert!(json(&body)["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("Unable to unmarshal input"));
        let (result, body) = agent.invoke("bad-out", r#"{"action": "unserializable"}"#);
        assert_eq!(result.status.error_type(), Some("Runtime.MarshalError"));
        assert_eq!(
            json(&body)["errorMessage"],
            "Unable to marshal response: Object of type set is not JSON serializable"
        );
    }

    fn bytes_results_are_a_marshal_error() {
        // As Lambda's Python runtime: a result is JSON, and bytes are not.
        let mut agent = app();
        let (result, body) = agent.invoke("raw", r#"{"action": "bytes"}"#);
        assert!(matches!(result.status, InvokeStatus::Error { .. }));
        assert_eq!(result.status.error_type(), Some("Runtime.MarshalError"));
        assert_eq!(
            json(&body)["errorMessage"],
            "Unable to marshal response: Object of type bytes is not JSON serializable"
        );
    }

    fn context_carries_the_invocation() {
        let code = r#"
import os, time
def handler(event, context):
    cc = context.client_context
    return {
        "aws_request_id": context.aws_request_id,
        "request_id": context.request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "now": int(time.time() * 1000),
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
        "custom": cc.custom if cc else None,
        "app_title": cc.client.app_title if cc and cc.client else None,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
    }
"#;
        let mut agent = Agent::ready(&[("ctx.py", code)], "ctx.handler", &[]);
        let deadline = now_ms() + 20_000;
        let mut m = meta("ctx-1", deadline);
        m.client_context =
            Some(r#"{"custom": {"k": "v"}, "client": {"app_title": "t"}, "env": {}}"#.into());
        m.trace_id = Some("Root=1-abc;Sampled=1".into());
        let (result, body, _) = agent.invoke_raw(m, b"{}");
        assert_eq!(
            result.status,
            InvokeStatus::Ok,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let v = json(&body);
        assert_eq!(v["aws_request_id"], "ctx-1");
        assert_eq!(v["request_id"], "ctx-1");
        assert_eq!(v["function_name"], "test-fn");
        assert_eq!(v["function_version"], "$LATEST");
        assert_eq!(v["memory_limit_in_mb"], 256);
        assert_eq!(
            v["invoked_function_arn"],
            "arn:aws:lambda:us-east-1:000000000000:function:test-fn"
        );
        assert_eq!(v["log_group_name"], "/aws/lambda/test-fn");
        assert_eq!(v["log_stream_name"], "2025/01/01/[$LATEST]abc");
        let remaining = v["remaining"].as_u64().unwrap();
        let now = v["now"].as_u64().unwrap();
        assert!(
            remaining > 0 && remaining <= deadline - now + 1,
            "remaining {remaining}"
        );
        assert_eq!(v["identity"], serde_json::json!([null, null]));
        assert_eq!(v["custom"], serde_json::json!({"k": "v"}));
        assert_eq!(v["app_title"], "t");
        assert_eq!(v["trace"], "Root=1-abc;Sampled=1");
        // Without a trace id the variable is gone; without client context it is None.
        let (_, body, _) = agent.invoke_raw(meta("ctx-2", now_ms() + 20_000), b"{}");
        let v = json(&body);
        assert_eq!(v["trace"], serde_json::Value::Null);
        assert_eq!(v["custom"], serde_json::Value::Null);
    }

    fn runtime_api_rejects_unknown_ids_and_routes() {
        let code = r#"
import http.client, os, json
def handler(event, context):
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
    out = {}
    for name, method, path in [
        ("stale", "POST", "/2018-06-01/runtime/invocation/not-this-one/response"),
        ("unknown", "GET", "/2018-06-01/runtime/nope"),
        ("init_error_late", "POST", "/2018-06-01/runtime/init/error"),
        ("next_while_invoking", "GET", "/2018-06-01/runtime/invocation/next"),
    ] + ([] if os.environ.get("SKYSCALE_RUNTIME_API_ONLY") else [
        # On the pipe, even the current id is refused over HTTP (on HTTP it would answer).
        ("own_id_over_http", "POST", f"/2018-06-01/runtime/invocation/{context.aws_request_id}/response"),
    ]):
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request(method, path, body=b"{}")
        r = c.getresponse()
        out[name] = [r.status, r.getheader("Content-Type"), json.loads(r.read())]
        c.close()
    return out
"#;
        let mut agent = Agent::ready(&[("api.py", code)], "api.handler", &[]);
        let (result, body) = agent.invoke("api-1", "{}");
        assert_eq!(result.status, InvokeStatus::Ok);
        let v = json(&body);
        assert_eq!(v["stale"][0], 400);
        assert_eq!(v["stale"][1], "application/json");
        assert_eq!(v["stale"][2]["errorType"], "InvalidRequestID");
        assert_eq!(v["unknown"][0], 404);
        assert!(v["unknown"][2]["errorMessage"].is_string());
        assert_eq!(v["init_error_late"][0], 403);
        assert_eq!(
            v["init_error_late"][2]["errorType"],
            "InvalidStateTransition"
        );
        assert_eq!(v["next_while_invoking"][0], 403);
        if common::channel() == common::Channel::Pipe {
            assert_eq!(v["own_id_over_http"][0], 403);
        }
    }

    fn output_between_invocations_arrives_as_log_frames() {
        let code = r#"
import threading
def handler(event, context):
    threading.Timer(0.05, lambda: print("late output", flush=True)).start()
    return "ok"
"#;
        let mut agent = Agent::ready(&[("late.py", code)], "late.handler", &[]);
        let (result, _) = agent.invoke("r1", "{}");
        assert_eq!(result.status, InvokeStatus::Ok);
        assert!(!result.logs.contains("late output"));
        match agent.recv() {
            Frame::Log(bytes) => assert_eq!(bytes, b"late output\n"),
            other => panic!("expected Log, got {other:?}"),
        }
    }
}
