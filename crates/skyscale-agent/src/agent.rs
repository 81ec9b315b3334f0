//! Start-up: Hello, pre-start the zygote if configured, wait for Init, start the Runtime API,
//! hand the zygote its Init or start the runtime with its pipe, then hand over to the state
//! machine in [`crate::machine`].

use std::net::TcpListener;
use std::time::{Duration, Instant};

use rustix::process::Pid;
use skyscale_protocol::{Frame, Hello, Init, InitDone, PROTOCOL_VERSION};

use crate::control::Control;
use crate::error::AgentError;
use crate::logs::Logs;
use crate::machine::{Machine, Parts};
use crate::pipe::RuntimePipe;
use crate::process::{self, kill_group, Runtime};
use crate::zygote::Zygote;
use crate::{http, pipe, report, wake, Config};

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
    let mut control = Control::stdio()?;
    control.send(&Frame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    }))?;
    // Dropping it (Shutdown, end of stdin, an error) kills it.
    let zygote = config
        .prewarm
        .as_ref()
        .and_then(|prewarm| match Zygote::start(prewarm) {
            Ok(zygote) => Some(zygote),
            Err(e) => {
                eprintln!("skyscale-agent: {e}");
                None
            }
        });
    let Some(init) = wait_for_init(&mut control)? else {
        return Ok(());
    };
    let started = Instant::now();

    let listener =
        TcpListener::bind(config.runtime_api_addr).map_err(|source| AgentError::Bind {
            addr: config.runtime_api_addr.to_string(),
            source,
        })?;
    let api_addr = listener
        .local_addr()
        .map_err(AgentError::io("read runtime api address"))?
        .to_string();
    let (notifier, inbox) = wake::channel()?;
    http::serve(listener, notifier.clone())?;

    let adopted = zygote.and_then(|zygote| match zygote.adopt(&init, &api_addr) {
        Ok(adopted) => Some(adopted),
        Err(why) => {
            eprintln!("skyscale-agent: not using the pre-started runtime: {why}");
            None
        }
    });
    let spawned = match adopted {
        Some(adopted) => Ok((adopted.runtime, adopted.pipe)),
        None => spawn(&init, &api_addr)?,
    };
    let (runtime, runtime_pipe) = match spawned {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("skyscale-agent: {}", e.0);
            let body = report::error_doc("Runtime.InvalidEntrypoint", &e.0);
            let done = InitDone {
                ok: false,
                error_type: Some("Runtime.InvalidEntrypoint".to_string()),
                failure: None,
                duration_us: started.elapsed().as_micros() as u64,
                logs: String::new(),
            };
            return control.send(&Frame::InitDone(done, body));
        }
    };
    let _kill = KillOnDrop(runtime.pid);
    process::start_reaper(runtime.pid, notifier)?;
    let logs = Logs::new(runtime.stdout, runtime.stderr)?;

    let init_deadline = started + Duration::from_millis(init.init_timeout_ms);
    let parts = Parts {
        control,
        pipe: runtime_pipe,
        inbox,
        logs,
        pid: runtime.pid,
    };
    Machine::new(parts, started, init_deadline).run()
}

/// Starts `init.command` with a new runtime pipe. The outer error stops the agent; the inner one
/// is the runtime's (reported as a failed init).
fn spawn(
    init: &Init,
    api_addr: &str,
) -> Result<Result<(Runtime, RuntimePipe), process::SpawnError>, AgentError> {
    let (runtime_pipe, child_ends) = pipe::pair()?;
    let spawned = process::spawn(init, api_addr, &child_ends);
    // The runtime holds its ends now; closing ours lets either side see end of file.
    drop(child_ends);
    Ok(spawned.map(|runtime| (runtime, runtime_pipe)))
}

/// Waits for `Init`, reading stdin directly (nothing else runs yet). `None` means Shutdown or
/// end of stdin came first: exit quietly.
fn wait_for_init(control: &mut Control) -> Result<Option<Init>, AgentError> {
    match control.recv()? {
        Some(Frame::Init(init)) => Ok(Some(init)),
        Some(Frame::Shutdown) => Ok(None),
        Some(other) => Err(AgentError::UnexpectedFrame {
            frame: other.kind(),
            state: "waiting for Init",
        }),
        None => {
            eprintln!("skyscale-agent: control channel closed before Init");
            Ok(None)
        }
    }
}
