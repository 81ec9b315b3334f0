//! Start-up and the control channel: Hello, wait for Init, start the Runtime API and the
//! runtime, then hand over to the state machine in [`crate::machine`].

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use rustix::process::Pid;
use skyscale_protocol::{read_frame, write_frame, Frame, Hello, Init, InitDone, PROTOCOL_VERSION};

use crate::error::{spawn_thread, AgentError};
use crate::logs::Logs;
use crate::machine::Machine;
use crate::process::{self, kill_group};
use crate::{http, report, Config, Event};

/// The agent's stdout, the only way frames leave it. Owned by the main thread alone, so frames
/// never interleave. It writes to a duplicate of fd 1 instead of `std::io::stdout()` because
/// the latter is line-buffered and would split binary frames at every newline byte.
pub struct Control {
    out: File,
}

impl Control {
    fn stdout() -> Result<Control, AgentError> {
        let fd = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(AgentError::io("duplicate stdout"))?;
        Ok(Control { out: fd.into() })
    }

    /// Writes one frame; `write_frame` loops over short writes.
    pub fn send(&mut self, frame: &Frame) -> Result<(), AgentError> {
        Ok(write_frame(&mut self.out, frame)?)
    }
}

/// SIGKILLs the runtime's process group when the agent leaves `run` by any path.
struct KillOnDrop(Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// Runs the agent until Shutdown, end of stdin, a failed init, or an invocation after which the
/// sandbox must not be reused (timeout, crash).
pub fn run(config: Config) -> Result<(), AgentError> {
    let mut control = Control::stdout()?;
    control.send(&Frame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    }))?;

    let (tx, rx) = mpsc::channel();
    start_control_reader(tx.clone())?;
    let Some(init) = wait_for_init(&rx)? else {
        return Ok(());
    };

    let listener =
        TcpListener::bind(config.runtime_api_addr).map_err(|source| AgentError::Bind {
            addr: config.runtime_api_addr.to_string(),
            source,
        })?;
    let api_addr = listener
        .local_addr()
        .map_err(AgentError::io("read runtime api address"))?
        .to_string();
    http::serve(listener, tx.clone())?;

    let started = Instant::now();
    let runtime = match process::spawn(&init, &api_addr) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("skyscale-agent: {}", e.0);
            let body = report::error_doc("Runtime.InvalidEntrypoint", &e.0);
            let done = InitDone {
                ok: false,
                error_type: Some("Runtime.InvalidEntrypoint".to_string()),
                duration_us: started.elapsed().as_micros() as u64,
                logs: String::new(),
            };
            return control.send(&Frame::InitDone(done, body));
        }
    };
    let _kill = KillOnDrop(runtime.pid);
    process::start_reaper(runtime.pid, tx.clone())?;
    let logs = Logs::start(runtime.stdout, runtime.stderr, tx)?;

    let init_deadline = started + Duration::from_millis(init.init_timeout_ms);
    let mut machine = Machine::new(control, logs, runtime.pid, started, init_deadline);
    machine.run(&rx)
}

/// Starts the thread that reads frames from stdin. It ends after end of file or an error,
/// which it reports as [`Event::ControlClosed`].
fn start_control_reader(events: Sender<Event>) -> Result<(), AgentError> {
    spawn_thread("control-in", move || {
        let mut stdin = io::stdin().lock();
        loop {
            match read_frame(&mut stdin) {
                Ok(Some(frame)) => {
                    if events.send(Event::Frame(frame)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = events.send(Event::ControlClosed(None));
                    return;
                }
                Err(e) => {
                    let _ = events.send(Event::ControlClosed(Some(e)));
                    return;
                }
            }
        }
    })
}

/// Waits for `Init`. `None` means Shutdown or end of stdin came first: exit quietly.
fn wait_for_init(rx: &Receiver<Event>) -> Result<Option<Init>, AgentError> {
    loop {
        match rx.recv() {
            Ok(Event::Frame(Frame::Init(init))) => return Ok(Some(init)),
            Ok(Event::Frame(Frame::Shutdown)) => return Ok(None),
            Ok(Event::Frame(other)) => {
                return Err(AgentError::UnexpectedFrame {
                    frame: other.kind(),
                    state: "waiting for Init",
                })
            }
            Ok(Event::ControlClosed(Some(e))) => return Err(e.into()),
            Ok(Event::ControlClosed(None)) | Err(_) => {
                eprintln!("skyscale-agent: control channel closed before Init");
                return Ok(None);
            }
            Ok(_) => {} // nothing else runs yet
        }
    }
}
