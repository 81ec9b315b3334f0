//! Init failures: each ends with `InitDone{ok:false}` and the agent exiting.

#[macro_use]
mod common;

use std::time::Duration;

use common::{json, Agent};
use skyscale_protocol::{Frame, InitDone};

fn init_error(files: &[(&str, &str)], handler: &str) -> (InitDone, serde_json::Value) {
    let (mut agent, done, body) = Agent::init(files, handler, &[]);
    assert!(!done.ok);
    if common::prewarmed() {
        assert!(
            !agent.stderr().contains("not using the pre-started runtime"),
            "{}",
            agent.stderr()
        );
    }
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
    let doc = json(&body);
    assert_eq!(doc["errorType"].as_str(), done.failure_type(), "{doc}");
    (done, doc)
}

both_channels! {
    fn import_error() {
        let (done, doc) = init_error(
            &[("handler.py", "import x_not_installed\n")],
            "handler.handler",
        );
        assert_eq!(
            done.failure_type(),
            Some("Runtime.ImportModuleError")
        );
        assert_eq!(
            doc["errorMessage"],
            "Unable to import module 'handler': No module named 'x_not_installed'"
        );
        assert!(doc["stackTrace"].is_array());
        assert!(
            done.logs
                .contains("[ERROR] Runtime.ImportModuleError: Unable to import module"),
            "{}",
            done.logs
        );
    }

    fn missing_module() {
        let (done, doc) = init_error(&[], "nothere.handler");
        assert_eq!(
            done.failure_type(),
            Some("Runtime.ImportModuleError")
        );
        assert_eq!(
            doc["errorMessage"],
            "Unable to import module 'nothere': No module named 'nothere'"
        );
    }

    fn syntax_error() {
        let (done, doc) = init_error(&[("handler.py", "def handler(:\n")], "handler.handler");
        assert_eq!(
            done.failure_type(),
            Some("Runtime.UserCodeSyntaxError")
        );
        assert!(doc["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("Syntax error in module 'handler'"));
    }

    fn missing_handler() {
        let (done, doc) = init_error(&[("handler.py", "x = 1\n")], "handler.nope");
        assert_eq!(done.failure_type(), Some("Runtime.HandlerNotFound"));
        assert_eq!(
            doc["errorMessage"],
            "Handler 'nope' missing on module 'handler'"
        );
    }

    fn malformed_handler() {
        let (done, _) = init_error(&[("handler.py", "x = 1\n")], "nodots");
        assert_eq!(
            done.failure_type(),
            Some("Runtime.MalformedHandlerName")
        );
    }

    fn exception_during_import_keeps_its_class_name() {
        let code = "print('starting')\nraise KeyError('cfg')\n";
        let (done, doc) = init_error(&[("handler.py", code)], "handler.handler");
        assert_eq!(done.failure_type(), Some("KeyError"));
        assert_eq!(doc["errorMessage"], "'cfg'");
        assert!(done.logs.starts_with("starting\n"), "{}", done.logs);
    }

    fn module_path_with_slashes() {
        let code = "def handler(event, context):\n    return 'nested'\n";
        let mut agent = Agent::ready(&[("pkg/sub/mod.py", code)], "pkg/sub/mod.handler", &[]);
        let (_, body) = agent.invoke("r", "{}");
        assert_eq!(body, br#""nested""#);
    }

    fn runtime_exiting_during_init() {
        let code = "import os\nprint('bye', flush=True)\nos._exit(4)\n";
        let (done, doc) = init_error(&[("handler.py", code)], "handler.handler");
        assert_eq!(done.failure_type(), Some("Runtime.ExitError"));
        assert_eq!(
            doc["errorMessage"],
            "RequestId: <none> Error: Runtime exited with error: exit status 4"
        );
        assert_eq!(done.logs, "bye\n");
    }

    fn init_timeout() {
        let mut agent = Agent::start();
        std::fs::write(
            agent.code.path().join("slow.py"),
            "import time\ntime.sleep(60)\n",
        )
        .unwrap();
        let init = agent.init_frame("slow.handler", &[], 500);
        agent.send(&Frame::Init(init));
        let Frame::InitDone(done, body) = agent.recv() else {
            panic!("expected InitDone")
        };
        assert!(!done.ok);
        assert_eq!(done.failure_type(), Some("Sandbox.Timedout"));
        assert_eq!(
            json(&body)["errorMessage"],
            "Init timed out after 0.50 seconds"
        );
        assert!(agent.wait_exit(Duration::from_secs(10)).success());
    }
}

#[test]
fn command_that_cannot_start() {
    let mut agent = Agent::start();
    let mut init = agent.init_frame("x.handler", &[], 5_000);
    init.command = vec!["/nonexistent/runtime".into()];
    agent.send(&Frame::Init(init));
    let Frame::InitDone(done, body) = agent.recv() else {
        panic!("expected InitDone")
    };
    assert!(!done.ok);
    assert_eq!(done.failure_type(), Some("Runtime.InvalidEntrypoint"));
    assert!(json(&body)["errorMessage"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/runtime"));
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
}
