//! SnapStart's hooks through the agent: `Snapshot` frames to an idle agent, answered by the
//! built-in runtime's `snapshot_restore_py` hooks on the pipe channel, and by the agent itself
//! for a runtime on the Runtime API (which has no hooks to run).

#[macro_use]
mod common;

use common::{channel, json, Agent, Channel};
use skyscale_protocol::{Frame, Snapshot, SnapshotDone, SnapshotPhase};

const APP: &str = r#"
import os, random
import snapshot_restore_py

RAN = []
VALUE = random.random()

@snapshot_restore_py.register_before_snapshot
def before():
    RAN.append("before")
    print("before hook")

def after(tag):
    global VALUE
    VALUE = random.random()
    RAN.append("after:" + tag)
    if os.environ.get("FAIL_AFTER") == "1":
        raise ValueError("cannot reconnect")

snapshot_restore_py.register_after_restore(after, "x")

def handler(event, context):
    return {"ran": RAN, "value": VALUE, "stream": context.log_stream_name,
            "init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"#;

fn hooks(agent: &mut Agent, phase: SnapshotPhase, env: &[(&str, &str)]) -> SnapshotDone {
    agent.send(&Frame::Snapshot(Snapshot {
        phase,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }));
    match agent.recv() {
        Frame::SnapshotDone(done) => done,
        other => panic!("expected SnapshotDone, got {other:?}"),
    }
}

both_channels! {
    /// Before and after hooks run in order on the pipe channel, with the new identity and a
    /// reseeded `random`; on the Runtime API the agent answers for the runtime and nothing
    /// runs. Invocations go on either way.
    fn hooks_run_before_the_snapshot_and_after_the_restore() {
        let mut agent = Agent::ready(&[("app.py", APP)], "app.handler", &[]);
        let (_, body) = agent.invoke("r1", "{}");
        let first = json(&body);
        let done = hooks(&mut agent, SnapshotPhase::Before, &[]);
        assert!(done.ok, "{done:?}");
        let done = hooks(
            &mut agent,
            SnapshotPhase::AfterRestore,
            &[("AWS_LAMBDA_LOG_STREAM_NAME", "restored-stream"),
              ("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")],
        );
        assert!(done.ok, "{done:?}");
        let (_, body) = agent.invoke("r2", "{}");
        let after = json(&body);
        match channel() {
            Channel::Pipe => {
                assert!(done.logs.is_empty(), "{done:?}");
                assert_eq!(after["ran"], serde_json::json!(["before", "after:x"]));
                assert_eq!(after["stream"], "restored-stream");
                assert_eq!(after["init"], "snap-start");
                assert_ne!(after["value"], first["value"], "the hook drew again after a reseed");
            }
            Channel::Http => {
                assert_eq!(after["ran"], serde_json::json!([]), "no hooks on the Runtime API");
                assert_eq!(after["value"], first["value"]);
            }
        }
    }
}

/// A raising after-restore hook answers `ok: false` with its error and traceback; the
/// runtime lives on.
#[test]
fn a_failing_hook_is_reported_with_its_traceback() {
    let mut agent = Agent::ready(&[("app.py", APP)], "app.handler", &[("FAIL_AFTER", "1")]);
    let done = hooks(&mut agent, SnapshotPhase::Before, &[]);
    assert!(done.ok && done.logs.contains("before hook"), "{done:?}");
    let done = hooks(&mut agent, SnapshotPhase::AfterRestore, &[]);
    assert!(!done.ok, "{done:?}");
    assert_eq!(done.error.as_deref(), Some("ValueError: cannot reconnect"));
    assert!(
        done.logs.contains("Traceback") && done.logs.contains("in after"),
        "{done:?}"
    );
    let (result, _) = agent.invoke("r1", "{}");
    assert_eq!(result.status, skyscale_protocol::InvokeStatus::Ok);
}

/// A `Snapshot` is refused outside of idle (before init).
#[test]
fn a_snapshot_before_init_stops_the_agent() {
    let mut agent = Agent::start();
    agent.send(&Frame::Snapshot(Snapshot {
        phase: SnapshotPhase::Before,
        env: Vec::new(),
    }));
    let status = agent.wait_exit(std::time::Duration::from_secs(10));
    assert!(!status.success(), "{status:?}");
    assert!(agent.stderr().contains("Snapshot"), "{}", agent.stderr());
}
