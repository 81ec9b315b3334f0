//! The process driver with the real agent and the real Python bootstrap: the cases of the
//! shared driver suite (`drivers.rs`) that mean something without isolation.
//!
//! Not run here, because the process driver does not provide what they check (its module
//! docs say so): `filesystem_is_read_only_except_tmp`, `host_paths_are_absent`,
//! `loopback_only_network`, `outbound_network_but_not_the_host`,
//! `memory_limit_kills_the_sandbox`, `pids_limit_is_enforced` and the memory half of
//! `code_and_memory_can_change_after_start` (no isolation, no limits); the uid checks of
//! `echo_round_trip` and `two_sandboxes_are_independent` (every sandbox runs as the control
//! plane's user); `missing_binary_is_not_installed` (there is no runtime binary: a missing
//! agent is `failed_create_reports_and_cleans_up` below); `create_and_destroy_latency` (a
//! figure, not a check). The channel carries agent frames (the driver translates `Init`), so
//! the cases speak frames to the agent rather than lines to a probe.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skyscale_protocol::tokio_io::{read_frame, write_frame};
use skyscale_protocol::{Frame, Init, Invoke};
use skyscale_sandbox::{Driver, ProcessConfig, ProcessDriver, Sandbox, SandboxId, SandboxSpec};

const READ_TIMEOUT: Duration = Duration::from_secs(20);

const HANDLER: &str = r#"
import os
def handler(event, context):
    if event.get("big"):
        return {"echo": event["big"]}
    return {"cwd": os.getcwd(), "task_root": os.environ["LAMBDA_TASK_ROOT"], "pid": os.getpid(),
            "sid": os.getsid(0)}
"#;

/// `target/debug`, where `cargo build --workspace --bins` put the agent.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

struct Fixture {
    driver: ProcessDriver,
    code_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let tmp = tempfile::tempdir().unwrap();
    let agent = bin_dir().join("skyscale-agent");
    assert!(
        agent.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        agent.display()
    );
    let runtime = tmp.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::copy(&agent, runtime.join("skyscale-agent")).unwrap();
    let bootstrap = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/python/bootstrap.py");
    std::fs::copy(bootstrap, runtime.join("bootstrap.py")).unwrap();
    let code_dir = tmp.path().join("code");
    std::fs::create_dir(&code_dir).unwrap();
    std::fs::write(code_dir.join("handler.py"), HANDLER).unwrap();
    let cfg = ProcessConfig::new(tmp.path().join("state"), runtime);
    Fixture {
        driver: ProcessDriver::new(cfg).unwrap(),
        code_dir,
        _tmp: tmp,
    }
}

impl Fixture {
    fn spec(&self) -> SandboxSpec {
        SandboxSpec {
            id: SandboxId::generate(),
            code_dir: self.code_dir.clone(),
            opt_dir: None,
            output_dir: None,
            memory_mb: 128,
            tmp_mb: 16,
            pids_limit: 64,
            network: false,
        }
    }

    /// A sandbox whose agent said hello and ran `Init` for the handler above.
    async fn start(&self) -> Sandbox {
        let mut sb = self.driver.create(&self.spec()).await.unwrap();
        assert!(matches!(recv(&mut sb).await, Some(Frame::Hello(_))));
        let init = Init {
            function_name: "f".into(),
            function_version: "$LATEST".into(),
            memory_mb: 128,
            command: vec![
                "/usr/bin/python3".into(),
                "/var/runtime/bootstrap.py".into(),
            ],
            cwd: "/var/task".into(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("_HANDLER".into(), "handler.handler".into()),
                ("LAMBDA_TASK_ROOT".into(), "/var/task".into()),
                ("LAMBDA_RUNTIME_DIR".into(), "/var/runtime".into()),
            ],
            init_timeout_ms: 10_000,
        };
        write_frame(&mut sb.to_agent, &Frame::Init(init))
            .await
            .unwrap();
        match recv(&mut sb).await {
            Some(Frame::InitDone(done, body)) => {
                assert!(done.ok, "init failed: {}", String::from_utf8_lossy(&body))
            }
            other => panic!("expected InitDone, got {other:?}"),
        }
        sb
    }
}

async fn recv(sb: &mut Sandbox) -> Option<Frame> {
    tokio::time::timeout(READ_TIMEOUT, read_frame(&mut sb.from_agent))
        .await
        .expect("the agent answers in time")
        .unwrap()
}

impl Fixture {
    /// A started sandbox after one invocation: its runtime's pid and its session.
    async fn running(&self) -> (Sandbox, i64, i32) {
        let mut sb = self.start().await;
        let pid = invoke(&mut sb, &serde_json::json!({})).await["pid"]
            .as_i64()
            .unwrap();
        let sid = self.driver.session_of(&sb.id).unwrap();
        (sb, pid, sid)
    }
}

/// Invokes the handler with `event` and returns its JSON answer.
async fn invoke(sb: &mut Sandbox, event: &serde_json::Value) -> serde_json::Value {
    let deadline = std::time::SystemTime::now() + Duration::from_secs(30);
    let invoke = Invoke {
        request_id: uuid::Uuid::new_v4().to_string(),
        deadline_ms: deadline
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        timeout_ms: 30_000,
        invoked_function_arn: "arn:aws:lambda:local:000000000000:function:f".into(),
        client_context: None,
        trace_id: None,
    };
    let body = serde_json::to_vec(event).unwrap();
    write_frame(&mut sb.to_agent, &Frame::Invoke(invoke, body))
        .await
        .unwrap();
    loop {
        match recv(sb).await {
            Some(Frame::Result(_, body)) => return serde_json::from_slice(&body).unwrap(),
            Some(Frame::Log(_)) => continue,
            other => panic!("expected Result, got {other:?}"),
        }
    }
}

/// Waits until no live process of session `sid` is left.
/// `pid` is gone from `/proc`: killed and reaped. A killed runtime stays a zombie until its
/// new parent reaps it, which takes a moment after its session is gone.
fn assert_reaped(pid: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "process {pid} was never reaped");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_session_gone(sid: i32) {
    let in_session = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.len() > 3 && fields[0] != "Z" && fields[3] == sid.to_string()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_session() {
        assert!(
            Instant::now() < deadline,
            "session {sid} still has processes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn closed_within(sb: &mut Sandbox, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match tokio::time::timeout(within, sb.from_agent.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// The agent runs the runtime in the code directory: `/var/task` in the `Init` frame and
/// the agent's own command reach the host as the sandbox's paths.
#[tokio::test]
async fn init_paths_are_translated_and_invocations_round_trip() {
    let f = fixture();
    let mut sb = f.start().await;
    let sid = f.driver.session_of(&sb.id).unwrap();
    for _ in 0..5 {
        let v = invoke(&mut sb, &serde_json::json!({})).await;
        let code = f.code_dir.to_str().unwrap();
        assert_eq!(v["cwd"], code, "{v}");
        assert_eq!(v["task_root"], code, "{v}");
        // The runtime is in the agent's session, which destroy kills.
        assert_eq!(v["sid"], sid, "{v}");
    }
    f.driver.destroy(&sb.id).await.unwrap();
}

/// Large frames cross the translating copy intact, both ways.
#[tokio::test]
async fn large_payload_arrives_complete() {
    let f = fixture();
    let mut sb = f.start().await;
    let big = "x".repeat(2 << 20);
    let v = invoke(&mut sb, &serde_json::json!({ "big": big })).await;
    assert_eq!(v["echo"].as_str().map(str::len), Some(2 << 20));
    f.driver.destroy(&sb.id).await.unwrap();
}

#[tokio::test]
async fn destroy_kills_the_session_removes_its_state_and_is_idempotent() {
    let f = fixture();
    let (mut sb, runtime_pid, sid) = f.running().await;
    assert!(f.driver.state_dir(&sb.id).is_dir());
    f.driver.destroy(&sb.id).await.unwrap();
    assert_session_gone(sid);
    assert_reaped(runtime_pid);
    assert!(!f.driver.state_dir(&sb.id).exists());
    assert_eq!(f.driver.session_of(&sb.id), None);
    assert!(closed_within(&mut sb, Duration::from_secs(5)).await);
    f.driver.destroy(&sb.id).await.unwrap();
    f.driver.destroy(&SandboxId::generate()).await.unwrap();
}

#[tokio::test]
async fn cleanup_leftovers_after_a_crash() {
    let f = fixture();
    let (mut sb, runtime_pid, sid) = f.running().await;
    // A second driver on the same state root, as after a control-plane restart.
    let restarted = ProcessDriver::new(f.driver.config().clone()).unwrap();
    assert_eq!(restarted.cleanup_leftovers().await.unwrap(), 1);
    assert_session_gone(sid);
    assert_reaped(runtime_pid);
    assert!(!f.driver.state_dir(&sb.id).exists());
    assert!(closed_within(&mut sb, Duration::from_secs(5)).await);
    assert_eq!(restarted.cleanup_leftovers().await.unwrap(), 0);
    // A state directory whose process is gone (or is now another process) is removed
    // without killing anything.
    let id = SandboxId::generate();
    std::fs::create_dir_all(restarted.state_dir(&id)).unwrap();
    std::fs::write(restarted.state_dir(&id).join("pid"), "1 12345\n").unwrap();
    assert_eq!(restarted.cleanup_leftovers().await.unwrap(), 1);
    assert!(!restarted.state_dir(&id).exists());
    // A live sandbox of the driver itself is never a leftover.
    let spec = f.spec();
    let mut own = restarted.create(&spec).await.unwrap();
    assert!(matches!(recv(&mut own).await, Some(Frame::Hello(_))));
    assert_eq!(restarted.cleanup_leftovers().await.unwrap(), 0);
    assert!(restarted.session_of(&own.id).is_some());
    restarted.destroy(&own.id).await.unwrap();
    f.driver.destroy(&sb.id).await.unwrap();
}

/// Two sandboxes at once: separate agents, separate Runtime API ports, and destroying one
/// leaves the other working.
#[tokio::test]
async fn two_sandboxes_are_independent() {
    let f = fixture();
    let (a, b) = tokio::join!(f.start(), f.start());
    let (mut a, mut b) = (a, b);
    let pa = invoke(&mut a, &serde_json::json!({})).await["pid"].clone();
    let pb = invoke(&mut b, &serde_json::json!({})).await["pid"].clone();
    assert_ne!(pa, pb);
    f.driver.destroy(&a.id).await.unwrap();
    assert_eq!(invoke(&mut b, &serde_json::json!({})).await["pid"], pb);
    f.driver.destroy(&b.id).await.unwrap();
}

#[tokio::test]
async fn failed_create_reports_and_cleans_up() {
    let f = fixture();
    let mut spec = f.spec();
    spec.code_dir = f.code_dir.join("missing");
    let err = f.driver.create(&spec).await.unwrap_err().to_string();
    assert!(
        err.contains("missing") && err.contains(spec.id.as_str()),
        "{err}"
    );
    assert!(!f.driver.state_dir(&spec.id).exists());
    // A missing agent: the spawn fails and names it.
    let mut cfg = f.driver.config().clone();
    cfg.init = vec!["/var/runtime/no-such-agent".into()];
    let driver = ProcessDriver::new(cfg).unwrap();
    let spec = f.spec();
    let err = driver.create(&spec).await.unwrap_err().to_string();
    assert!(err.contains("no-such-agent"), "{err}");
    assert!(!driver.state_dir(&spec.id).exists());
    // An id is never used twice.
    let sb = f.driver.create(&spec).await.unwrap();
    let again = f.driver.create(&spec).await.unwrap_err().to_string();
    assert!(again.contains("already in use"), "{again}");
    f.driver.destroy(&sb.id).await.unwrap();
}

/// A destroy that comes before the agent has even said hello leaves nothing either.
#[tokio::test]
async fn destroy_right_after_create() {
    let f = fixture();
    for _ in 0..5 {
        let sb = f.driver.create(&f.spec()).await.unwrap();
        let pid = f.driver.session_of(&sb.id).unwrap();
        f.driver.destroy(&sb.id).await.unwrap();
        assert_session_gone(pid);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "agent {pid} left"
        );
    }
}

#[tokio::test]
async fn a_build_output_directory_is_refused_by_name() {
    let f = fixture();
    let mut spec = f.spec();
    spec.output_dir = Some(f.code_dir.clone());
    let err = f.driver.create(&spec).await.unwrap_err().to_string();
    assert!(
        err.contains("output_dir") && err.contains("not supported"),
        "{err}"
    );
}
