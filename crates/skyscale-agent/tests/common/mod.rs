//! Harness: the real `skyscale-agent` binary with the real Python bootstrap, driven over its
//! stdin/stdout with agent frames. Every wait is bounded, so a bug fails a test instead of
//! hanging it.

#![allow(dead_code)] // each test binary uses a different part of the harness
#![allow(clippy::unwrap_used)] // test helpers: a panic is the right failure

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skyscale_protocol::{
    read_frame, write_frame, Frame, Hello, Init, InitDone, Invoke, InvokeResult, PROTOCOL_VERSION,
};

/// How long any single frame may take to arrive.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

pub fn bootstrap_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../runtime/python/bootstrap.py")
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: Receiver<Result<Frame, String>>,
    /// Keeps the function's code alive as long as the agent.
    pub code: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent and checks its Hello.
    pub fn start() -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skyscale-agent"))
            .env("SKYSCALE_AGENT_RUNTIME_API_ADDR", "127.0.0.1:0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn skyscale-agent");
        let mut stdout = child.stdout.take().unwrap();
        let (tx, frames) = mpsc::channel();
        thread::spawn(move || loop {
            let next = match read_frame(&mut stdout) {
                Ok(Some(frame)) => Ok(frame),
                Ok(None) => Err("agent closed stdout".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let stop = next.is_err();
            if tx.send(next).is_err() || stop {
                return;
            }
        });
        let stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[agent stderr] {line}");
            }
        });
        let mut agent = Agent {
            stdin: child.stdin.take(),
            child,
            frames,
            code: tempfile::tempdir().unwrap(),
        };
        match agent.recv() {
            Frame::Hello(Hello {
                protocol_version,
                agent_version,
            }) => {
                assert_eq!(protocol_version, PROTOCOL_VERSION);
                assert_eq!(agent_version, env!("CARGO_PKG_VERSION"));
            }
            other => panic!("expected Hello, got {other:?}"),
        }
        agent
    }

    /// Starts an agent with `files` as the function code and sends Init.
    pub fn init(
        files: &[(&str, &str)],
        handler: &str,
        env: &[(&str, &str)],
    ) -> (Agent, InitDone, Vec<u8>) {
        let mut agent = Agent::start();
        for (name, text) in files {
            let path = agent.code.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let frame = Frame::Init(agent.init_frame(handler, env, 20_000));
        agent.send(&frame);
        match agent.recv() {
            Frame::InitDone(done, body) => (agent, done, body),
            other => panic!("expected InitDone, got {other:?}"),
        }
    }

    /// Like [`Agent::init`] but insists that init succeeded.
    pub fn ready(files: &[(&str, &str)], handler: &str, env: &[(&str, &str)]) -> Agent {
        let (agent, done, body) = Agent::init(files, handler, env);
        assert!(
            done.ok,
            "init failed: {done:?} {}",
            String::from_utf8_lossy(&body)
        );
        agent
    }

    pub fn init_frame(
        &self,
        handler: &str,
        extra_env: &[(&str, &str)],
        init_timeout_ms: u64,
    ) -> Init {
        let root = self.code.path().to_str().unwrap().to_string();
        let mut env: Vec<(String, String)> = vec![
            ("_HANDLER".into(), handler.into()),
            ("LAMBDA_TASK_ROOT".into(), root.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME".into(), "test-fn".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "256".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME".into(),
                "/aws/lambda/test-fn".into(),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME".into(),
                "2025/01/01/[$LATEST]abc".into(),
            ),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Init {
            function_name: "test-fn".into(),
            function_version: "$LATEST".into(),
            memory_mb: 256,
            command: vec![
                "/usr/bin/python3".into(),
                bootstrap_path().to_str().unwrap().into(),
            ],
            cwd: root,
            env,
            init_timeout_ms,
        }
    }

    pub fn send(&mut self, frame: &Frame) {
        write_frame(self.stdin.as_mut().expect("stdin open"), frame).expect("write frame");
    }

    /// Closes the agent's stdin (end of file on its control channel).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next frame, within [`FRAME_TIMEOUT`].
    pub fn recv(&mut self) -> Frame {
        self.try_recv(FRAME_TIMEOUT)
            .expect("no frame from the agent in time")
    }

    pub fn try_recv(&mut self, timeout: Duration) -> Option<Frame> {
        match self.frames.recv_timeout(timeout) {
            Ok(Ok(frame)) => Some(frame),
            Ok(Err(e)) => panic!("control channel: {e}"),
            Err(_) => None,
        }
    }

    /// Sends an Invoke and returns its Result, collecting any Log frames on the way.
    pub fn invoke_raw(
        &mut self,
        meta: Invoke,
        payload: &[u8],
    ) -> (InvokeResult, Vec<u8>, Vec<String>) {
        let id = meta.request_id.clone();
        self.send(&Frame::Invoke(meta, payload.to_vec()));
        let mut logs = Vec::new();
        loop {
            match self.recv() {
                Frame::Result(result, body) => {
                    assert_eq!(result.request_id, id);
                    return (result, body, logs);
                }
                Frame::Log(bytes) => logs.push(String::from_utf8(bytes).unwrap()),
                other => panic!("expected Result, got {other:?}"),
            }
        }
    }

    /// Invokes with a 30 s deadline.
    pub fn invoke(&mut self, id: &str, payload: &str) -> (InvokeResult, Vec<u8>) {
        let (result, body, _) = self.invoke_raw(meta(id, now_ms() + 30_000), payload.as_bytes());
        (result, body)
    }

    /// Waits for the agent process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit within {timeout:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn meta(id: &str, deadline_ms: u64) -> Invoke {
    Invoke {
        request_id: id.into(),
        deadline_ms,
        invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:test-fn".into(),
        client_context: None,
        trace_id: None,
    }
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}
