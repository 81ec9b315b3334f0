//! Harness: the real `skyscale-agent` binary with the real Python bootstrap, driven over its
//! stdin/stdout with agent frames. Every wait is bounded, so a bug fails a test instead of
//! hanging it.
//!
//! Most tests run four times ([`both_channels!`]): once per channel between agent and runtime —
//! the runtime pipe (the bootstrap's default) and the HTTP Runtime API (forced with
//! `SKYSCALE_RUNTIME_API_ONLY=1`) — each with a freshly started runtime and with a pre-started
//! one (a zygote, `SKYSCALE_PREWARM`). [`Agent::ready`] checks that the runtime really uses the
//! channel under test, and that the zygote was the one used.

#![allow(dead_code)] // each test binary uses a different part of the harness
#![allow(clippy::unwrap_used)] // test helpers: a panic is the right failure

use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skyscale_protocol::{
    read_frame, write_frame, Frame, Hello, Init, InitDone, Invoke, InvokeResult, Prewarm,
    PREWARM_ENV, PROTOCOL_VERSION,
};

/// How the runtime talks to the agent in the current test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Frames on the inherited pipe pair.
    Pipe,
    /// The Lambda Runtime API over loopback HTTP.
    Http,
}

thread_local! {
    static CHANNEL: Cell<Channel> = const { Cell::new(Channel::Pipe) };
    static PREWARMED: Cell<bool> = const { Cell::new(false) };
}

/// The channel the current test runs with.
pub fn channel() -> Channel {
    CHANNEL.with(Cell::get)
}

/// Whether the current test's agents pre-start the runtime.
pub fn prewarmed() -> bool {
    PREWARMED.with(Cell::get)
}

/// Runs `test` with the bootstrap on `channel`, pre-started or not.
pub fn with_mode(channel: Channel, prewarmed: bool, test: fn()) {
    CHANNEL.with(|c| c.set(channel));
    PREWARMED.with(|c| c.set(prewarmed));
    test();
}

/// Turns each `fn name() { .. }` into a module `name` with four tests, `pipe`, `http`,
/// `pipe_prewarmed` and `http_prewarmed`, that run the body with the bootstrap on that
/// channel, started when `Init` arrives or pre-started before it.
#[allow(unused_macros)] // not every test binary runs on both channels
macro_rules! both_channels {
    ($($(#[$attr:meta])* fn $name:ident() $body:block)*) => {$(
        $(#[$attr])*
        #[allow(clippy::unwrap_used)] // the body is a test, though not a `#[test]` fn itself
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body() $body

            #[test]
            fn pipe() {
                $crate::common::with_mode($crate::common::Channel::Pipe, false, body);
            }

            #[test]
            fn http() {
                $crate::common::with_mode($crate::common::Channel::Http, false, body);
            }

            #[test]
            fn pipe_prewarmed() {
                $crate::common::with_mode($crate::common::Channel::Pipe, true, body);
            }

            #[test]
            fn http_prewarmed() {
                $crate::common::with_mode($crate::common::Channel::Http, true, body);
            }
        }
    )*};
}

/// How long any single frame may take to arrive.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

pub fn bootstrap_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../runtime/python/bootstrap.py")
}

/// argv of the runtime in every `Init` of the harness.
pub fn runtime_command() -> Vec<String> {
    vec![
        "/usr/bin/python3".into(),
        bootstrap_path().to_str().unwrap().into(),
    ]
}

/// Start-up variables every `Init` of the harness has, and so the zygote's environment.
pub const STARTUP_ENV: [(&str, &str); 1] = [("PYTHONDONTWRITEBYTECODE", "1")];

/// The zygote the harness pre-starts: the harness's runtime command and start-up variables.
pub fn prewarm() -> Prewarm {
    Prewarm {
        command: runtime_command(),
        env: STARTUP_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub struct Agent {
    /// The pre-started runtime's pid, when there is one.
    pub zygote: Option<u32>,
    child: Child,
    stdin: Option<ChildStdin>,
    frames: Receiver<Result<Frame, String>>,
    /// Everything the agent printed on stderr so far, by line.
    stderr: Arc<Mutex<Vec<String>>>,
    /// Keeps the function's code alive as long as the agent.
    pub code: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent, pre-starting [`prewarm`] in a prewarmed test, and checks its Hello.
    pub fn start() -> Agent {
        Agent::start_with(prewarmed().then(prewarm).as_ref())
    }

    /// Starts the agent with `prewarm` as its zygote, if any, checks its Hello and waits for
    /// the zygote to exist.
    pub fn start_with(prewarm: Option<&Prewarm>) -> Agent {
        let mut agent = Agent::start_raw(prewarm);
        if prewarm.is_some() {
            let deadline = Instant::now() + FRAME_TIMEOUT;
            while agent.children().is_empty() {
                assert!(Instant::now() < deadline, "the zygote did not start");
                thread::sleep(Duration::from_millis(2));
            }
            agent.zygote = Some(agent.runtime_pid());
        }
        agent
    }

    /// Starts the agent with `prewarm` in its environment, if any, and checks its Hello.
    pub fn start_raw(prewarm: Option<&Prewarm>) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyscale-agent"));
        cmd.env("SKYSCALE_AGENT_RUNTIME_API_ADDR", "127.0.0.1:0")
            .env_remove(PREWARM_ENV);
        if let Some(prewarm) = prewarm {
            cmd.env(PREWARM_ENV, serde_json::to_string(prewarm).unwrap());
        }
        let mut child = cmd
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
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[agent stderr] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut agent = Agent {
            zygote: None,
            stdin: child.stdin.take(),
            child,
            frames,
            stderr: lines,
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

    /// Like [`Agent::init`] but insists that init succeeded, on the channel under test.
    pub fn ready(files: &[(&str, &str)], handler: &str, env: &[(&str, &str)]) -> Agent {
        let (agent, done, body) = Agent::init(files, handler, env);
        assert!(
            done.ok,
            "init failed: {done:?} {}",
            String::from_utf8_lossy(&body)
        );
        agent.assert_channel(channel());
        if prewarmed() {
            assert_eq!(
                agent.zygote,
                Some(agent.runtime_pid()),
                "the pre-started runtime was not used"
            );
        }
        agent
    }

    /// What the agent printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until the agent printed a line containing `needle` on stderr.
    pub fn wait_stderr(&self, needle: &str) {
        let deadline = Instant::now() + FRAME_TIMEOUT;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the agent never printed {needle:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The runtime process (the agent's only child).
    pub fn runtime_pid(&self) -> u32 {
        let children = self.children();
        assert_eq!(children.len(), 1, "agent children: {children:?}");
        children[0]
    }

    /// The agent's child processes.
    pub fn children(&self) -> Vec<u32> {
        let me = self.child.id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    // pid (comm) state ppid ...; comm may hold spaces, so split after ')'
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
                        .as_deref()
                        == Some(me.as_str())
                })
            })
            .collect()
    }

    /// Checks from the runtime's open descriptors which channel it uses: on the pipe it holds
    /// the two runtime-pipe ends besides its stdout and stderr and no socket; on HTTP it holds
    /// its Runtime API connection and has closed the pipe ends it was offered.
    /// Descriptors the test process itself passed down (a CI runner's, cargo's) are ignored.
    pub fn assert_channel(&self, expected: Channel) {
        let ours = own_fd_targets();
        let links: Vec<String> = fds(&self.runtime_pid().to_string())
            .into_iter()
            .filter(|(_, link)| !ours.contains(link))
            .map(|(fd, link)| format!("{fd}={link}"))
            .collect();
        let pipes = links.iter().filter(|l| l.contains("=pipe:")).count();
        let sockets = links.iter().filter(|l| l.contains("=socket:")).count();
        match expected {
            Channel::Pipe => assert!(pipes == 4 && sockets == 0, "{links:?}"),
            Channel::Http => assert!(pipes == 2 && sockets == 1, "{links:?}"),
        }
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
            STARTUP_ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        if channel() == Channel::Http {
            env.push(("SKYSCALE_RUNTIME_API_ONLY".into(), "1".into()));
        }
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Init {
            function_name: "test-fn".into(),
            function_version: "$LATEST".into(),
            memory_mb: 256,
            command: runtime_command(),
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

/// The open descriptors of process `pid` ("self" for this one): (number, link target).
pub fn fds(pid: &str) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let link = std::fs::read_link(e.path()).ok()?;
            let fd = e.file_name().to_string_lossy().into_owned();
            Some((fd, link.to_string_lossy().into_owned()))
        })
        .collect()
}

/// What this test process has open: whatever it leaks to the agent (and the agent to the
/// runtime) is not the agent's doing.
pub fn own_fd_targets() -> Vec<String> {
    fds("self").into_iter().map(|(_, link)| link).collect()
}

pub fn meta(id: &str, deadline_ms: u64) -> Invoke {
    Invoke {
        request_id: id.into(),
        deadline_ms,
        timeout_ms: 0,
        invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:test-fn".into(),
        client_context: None,
        trace_id: None,
    }
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}
