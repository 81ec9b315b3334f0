//! Handshake, shutdown, timeouts and crashes: the ends of an agent's life.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{json, meta, now_ms, Agent};
use skyscale_protocol::{ExitStatus, Frame, InvokeStatus};

const APP: &str = r#"
import os, signal, threading, time

def handler(event, context):
    with open("pid", "w") as f:
        f.write(str(os.getpid()))
    a = event.get("action")
    print("before", flush=True)
    if a == "spin":
        while True:
            pass
    if a == "exit3":
        os._exit(3)
    if a == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if a == "exit_later":
        threading.Timer(0.05, lambda: os._exit(7)).start()
    return "ok"
"#;

fn app() -> Agent {
    Agent::ready(&[("app.py", APP)], "app.handler", &[])
}

/// Whether a process is gone (or a zombie waiting for someone else to reap it).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

fn assert_gone_soon(pid: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(pid) {
        assert!(Instant::now() < deadline, "runtime {pid} still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
}

both_channels! {
    fn shutdown_stops_runtime_and_agent() {
        let mut agent = app();
        let (result, _) = agent.invoke("r", "{}");
        assert_eq!(result.status, InvokeStatus::Ok);
        let pid = std::fs::read_to_string(agent.code.path().join("pid")).unwrap();
        agent.send(&Frame::Shutdown);
        assert!(agent.wait_exit(Duration::from_secs(10)).success());
        assert_gone_soon(&pid);
    }

    fn end_of_stdin_stops_the_agent() {
        let mut agent = app();
        agent.close_stdin();
        assert!(agent.wait_exit(Duration::from_secs(10)).success());
    }

    fn deadline_kills_the_runtime() {
        let mut agent = app();
        let started = Instant::now();
        let (result, body, _) =
            agent.invoke_raw(meta("spin-1", now_ms() + 1000), br#"{"action": "spin"}"#);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert_eq!(result.status, InvokeStatus::Timeout);
        assert_eq!(result.status.error_type(), Some("Sandbox.Timedout"));
        assert!(result.logs.contains("before\n"), "{}", result.logs);
        let doc = json(&body);
        assert_eq!(doc["errorType"], "Sandbox.Timedout");
        let message = doc["errorMessage"].as_str().unwrap();
        // 2025-01-01T00:00:00.000Z spin-1 Task timed out after 1.00 seconds
        let (stamp, rest) = message.split_once(' ').unwrap();
        assert_eq!(stamp.len(), 24, "{message}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{message}"
        );
        assert!(
            rest == "spin-1 Task timed out after 1.00 seconds"
                || rest == "spin-1 Task timed out after 0.99 seconds",
            "{message}"
        );
        assert!(agent.wait_exit(Duration::from_secs(10)).success());
        let pid = std::fs::read_to_string(agent.code.path().join("pid")).unwrap();
        assert_gone_soon(&pid);
    }

    fn exit_during_invocation_is_a_crash() {
        let mut agent = app();
        let (result, body) = agent.invoke("crash-1", r#"{"action": "exit3"}"#);
        assert_eq!(
            result.status,
            InvokeStatus::Crashed {
                exit: ExitStatus::Code(3)
            }
        );
        assert_eq!(result.status.error_type(), Some("Runtime.ExitError"));
        assert_eq!(result.logs, "before\n");
        let doc = json(&body);
        assert_eq!(doc["errorType"], "Runtime.ExitError");
        assert_eq!(
            doc["errorMessage"],
            "RequestId: crash-1 Error: Runtime exited with error: exit status 3"
        );
        assert!(agent.wait_exit(Duration::from_secs(10)).success());
    }

    fn sigkill_reads_like_an_oom_kill() {
        let mut agent = app();
        let (result, body) = agent.invoke("oom-1", r#"{"action": "kill"}"#);
        assert_eq!(
            result.status,
            InvokeStatus::Crashed {
                exit: ExitStatus::Signal(9)
            }
        );
        assert_eq!(
            json(&body)["errorMessage"],
            "RequestId: oom-1 Error: Runtime exited with error: signal: killed"
        );
    }

    fn exit_between_invocations_fails_the_next_one() {
        let mut agent = app();
        let (result, _) = agent.invoke("r1", r#"{"action": "exit_later"}"#);
        assert_eq!(result.status, InvokeStatus::Ok);
        let pid = std::fs::read_to_string(agent.code.path().join("pid")).unwrap();
        assert_gone_soon(&pid);
        // The runtime is dead: whether the agent notices before or during the next
        // invocation, that one reports the exit.
        let (result, body) = agent.invoke("r2", "{}");
        assert!(matches!(result.status, InvokeStatus::Crashed { .. }));
        assert!(json(&body)["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("exit status 7"));
        assert!(agent.wait_exit(Duration::from_secs(10)).success());
    }
}

#[test]
fn shutdown_before_init() {
    let mut agent = Agent::start();
    agent.send(&Frame::Shutdown);
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
}
