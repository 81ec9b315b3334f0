//! The pre-started runtime (zygote): used when the function's runtime would be the same, and
//! then indistinguishable from a fresh start; replaced by a fresh start otherwise. The other
//! test files run their channel tests against a zygote too (`both_channels!`).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{json, prewarm, with_mode, Agent, Channel};
use serde_json::Value;
use skyscale_protocol::{Frame, InitDone, InvokeStatus, Prewarm};

/// Reports everything about its process that a fresh start fixes.
const FINGERPRINT: &str = r#"
import ctypes, locale, os, sys, time

def c_environ():
    libc = ctypes.CDLL(None)
    environ = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
    out, i = [], 0
    while environ[i]:
        out.append(environ[i].decode())
        i += 1
    return out

def handler(event, context):
    mask = os.umask(0)
    os.umask(mask)
    return {
        "environ": list(os.environ.items()),
        "c_environ": c_environ(),
        "cwd": os.getcwd(),
        "path": sys.path,
        "path_importer_cache": sorted(sys.path_importer_cache),
        "modules": sorted(sys.modules),
        "flags": list(sys.flags),
        "encodings": [sys.getfilesystemencoding(), sys.stdout.encoding, sys.stderr.encoding,
                      locale.getpreferredencoding(False)],
        "ctype": locale.setlocale(locale.LC_CTYPE),
        "tz": [list(time.tzname), time.timezone, time.altzone, time.daylight,
               time.strftime("%Z %z", time.localtime(0))],
        "argv": sys.argv,
        "main": sys.modules["__main__"].__file__,
        "executable": [sys.executable, sys.prefix, sys.exec_prefix],
        "umask": mask,
        "context": [context.function_name, context.function_version,
                    context.memory_limit_in_mb, context.log_group_name,
                    context.log_stream_name],
    }
"#;

/// Variables that test the rules: time zone, duplicates (the last wins), non-ASCII, and the
/// names only the agent may set.
const ENV: [(&str, &str); 7] = [
    ("TZ", "America/New_York"),
    ("DUP", "first"),
    ("DUP", "second"),
    ("UNICODE", "h\u{e9}llo \u{2713}"),
    ("_SKYSCALE_RUNTIME_FDS", "7,8"),
    ("_SKYSCALE_ZYGOTE", "1"),
    ("AWS_LAMBDA_RUNTIME_API", "not-the-agent"),
];

/// Waits until the zygote sits in `read` on its pipe: imports done, waiting for `Init`.
fn wait_until_waiting(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if wchan.contains("pipe") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "zygote {pid} never waited: {wchan}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `agent` its Init for `files`/`handler` plus `env` and returns the InitDone.
fn init(
    agent: &mut Agent,
    files: &[(&str, &str)],
    handler: &str,
    env: &[(&str, &str)],
) -> (InitDone, Vec<u8>) {
    for (name, text) in files {
        std::fs::write(agent.code.path().join(name), text).unwrap();
    }
    let frame = Frame::Init(agent.init_frame(handler, env, 20_000));
    agent.send(&frame);
    match agent.recv() {
        Frame::InitDone(done, body) => (done, body),
        other => panic!("expected InitDone, got {other:?}"),
    }
}

/// The fingerprint of the runtime `agent` runs, with what differs between any two agents (the
/// code directory, the Runtime API port) replaced by placeholders.
fn fingerprint(agent: &mut Agent) -> Value {
    let (result, body) = agent.invoke("fp", "{}");
    assert_eq!(
        result.status,
        InvokeStatus::Ok,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let api = json(&body)["environ"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv[0] == "AWS_LAMBDA_RUNTIME_API")
        .map(|kv| kv[1].as_str().unwrap().to_owned())
        .expect("AWS_LAMBDA_RUNTIME_API is set");
    let root = agent.code.path().to_str().unwrap().to_owned();
    let text = String::from_utf8(body)
        .unwrap()
        .replace(&root, "<root>")
        .replace(&api, "<api>");
    serde_json::from_str(&text).unwrap()
}

fn looks_like_a_fresh_start() {
    // Without LANG (the harness's default) Python coerces the C locale and sets LC_CTYPE at
    // start-up, which the zygote must replay; with the control plane's defaults it does not.
    looks_like_a_fresh_start_with(&[]);
    looks_like_a_fresh_start_with(&[("LANG", "C.UTF-8"), ("HOME", "/tmp")]);
}

/// Compares a fresh runtime with a zygote whose start-up variables are `startup` (besides the
/// harness's), both initialised with [`ENV`] and `startup`.
fn looks_like_a_fresh_start_with(startup: &[(&str, &str)]) {
    let files = [("fp.py", FINGERPRINT)];
    let env: Vec<(&str, &str)> = ENV.iter().chain(startup).copied().collect();
    let mut fresh = Agent::start_with(None);
    let (done, body) = init(&mut fresh, &files, "fp.handler", &env);
    assert!(done.ok, "{done:?} {}", String::from_utf8_lossy(&body));
    let expected = fingerprint(&mut fresh);

    let mut prewarm = prewarm();
    prewarm
        .env
        .extend(startup.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut agent = Agent::start_with(Some(&prewarm));
    let zygote = agent.zygote.unwrap();
    wait_until_waiting(zygote);
    let (done, body) = init(&mut agent, &files, "fp.handler", &env);
    assert!(done.ok, "{done:?} {}", String::from_utf8_lossy(&body));
    assert_eq!(agent.runtime_pid(), zygote, "{}", agent.stderr());
    agent.assert_channel(common::channel());
    let got = fingerprint(&mut agent);

    for (key, want) in expected.as_object().unwrap() {
        assert_eq!(&got[key], want, "{key} differs");
    }
    assert_eq!(got, expected);
    // The rules the test variables exercise, seen by the handler.
    let env: Vec<(String, String)> = serde_json::from_value(got["environ"].clone()).unwrap();
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(get("DUP"), Some("second"));
    assert_eq!(get("UNICODE"), Some("h\u{e9}llo \u{2713}"));
    assert_eq!(get("AWS_LAMBDA_RUNTIME_API"), Some("<api>"));
    assert_eq!(get("_SKYSCALE_RUNTIME_FDS"), None);
    assert_eq!(get("_SKYSCALE_ZYGOTE"), None);
    assert_eq!(got["cwd"], "<root>");
    assert_eq!(got["path"][0], "<root>");
    assert_eq!(got["tz"][0], serde_json::json!(["EST", "EDT"]));
    let coerced = get("LC_CTYPE").is_some();
    assert_eq!(coerced, startup.is_empty(), "{env:?}");
}

#[test]
fn looks_like_a_fresh_start_on_the_pipe() {
    with_mode(Channel::Pipe, false, looks_like_a_fresh_start);
}

#[test]
fn looks_like_a_fresh_start_over_http() {
    with_mode(Channel::Http, false, looks_like_a_fresh_start);
}

/// Whether process `pid` no longer exists, not even as a zombie: reaped.
fn reaped(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Starts an agent pre-starting `prewarm`, inits it with `env` and checks that the zygote was
/// replaced (killed, reaped, a new runtime) for `reason`.
fn replaced(prewarm: &Prewarm, env: &[(&str, &str)], reason: &str) -> Agent {
    let mut agent = Agent::start_with(Some(prewarm));
    let zygote = agent.zygote.unwrap();
    let (done, body) = init(&mut agent, &[("fp.py", FINGERPRINT)], "fp.handler", env);
    assert!(done.ok, "{done:?} {}", String::from_utf8_lossy(&body));
    agent.wait_stderr(&format!("not using the pre-started runtime: {reason}"));
    assert!(reaped(zygote), "zygote {zygote} left behind");
    assert_ne!(agent.runtime_pid(), zygote);
    agent
}

#[test]
fn another_command_gets_a_fresh_runtime() {
    let mut other = prewarm();
    other.command[0] = "/usr/bin/python3.11".into();
    let mut agent = replaced(&other, &[], "the function's runtime command");
    assert_eq!(agent.invoke("r", "{}").0.status, InvokeStatus::Ok);
}

#[test]
fn another_start_up_variable_gets_a_fresh_runtime() {
    let env = [("PYTHONPATH", "/opt/extra"), ("LANG", "C.UTF-8")];
    let mut agent = replaced(&prewarm(), &env, "LANG must be the same");
    let fp = fingerprint(&mut agent);
    assert!(
        fp["path"]
            .as_array()
            .unwrap()
            .contains(&"/opt/extra".into()),
        "{}",
        fp["path"]
    );
    assert_eq!(fp["ctype"], "C.UTF-8");
}

#[test]
fn a_zygote_that_died_is_replaced() {
    let mut agent = Agent::start_with(Some(&prewarm()));
    let zygote = agent.zygote.unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &zygote.to_string()])
        .status()
        .unwrap();
    // Dead but not yet reaped: nobody waits for it before Init.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{zygote}/stat"))
        .unwrap()
        .contains(") Z ")
    {
        assert!(Instant::now() < deadline, "zygote did not die");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (done, body) = init(&mut agent, &[("fp.py", FINGERPRINT)], "fp.handler", &[]);
    assert!(done.ok, "{done:?} {}", String::from_utf8_lossy(&body));
    agent.wait_stderr("it exited before Init (signal: killed)");
    assert!(reaped(zygote));
    assert_ne!(agent.runtime_pid(), zygote);
    assert_eq!(agent.invoke("r", "{}").0.status, InvokeStatus::Ok);
}

#[test]
fn a_zygote_that_cannot_start_changes_nothing() {
    let broken = Prewarm {
        command: vec!["/nonexistent/python".into()],
        env: Vec::new(),
    };
    let mut agent = Agent::start_raw(Some(&broken));
    agent.wait_stderr("cannot pre-start \"/nonexistent/python\"");
    assert!(agent.children().is_empty());
    let (done, body) = init(&mut agent, &[("fp.py", FINGERPRINT)], "fp.handler", &[]);
    assert!(done.ok, "{done:?} {}", String::from_utf8_lossy(&body));
    assert_eq!(agent.invoke("r", "{}").0.status, InvokeStatus::Ok);
}

#[test]
fn an_unusable_directory_fails_as_without_a_zygote() {
    let mut errors = Vec::new();
    for prewarmed in [false, true] {
        let mut agent = Agent::start_with(prewarmed.then(prewarm).as_ref());
        let mut init = agent.init_frame("x.handler", &[], 5_000);
        init.cwd = "/nonexistent/task".into();
        agent.send(&Frame::Init(init));
        let Frame::InitDone(done, body) = agent.recv() else {
            panic!("expected InitDone")
        };
        assert!(!done.ok);
        assert!(agent.wait_exit(Duration::from_secs(10)).success());
        errors.push((done.failure_type().map(str::to_owned), json(&body)));
    }
    assert_eq!(errors[0], errors[1]);
    assert_eq!(errors[0].0.as_deref(), Some("Runtime.InvalidEntrypoint"));
}

#[test]
fn shutdown_before_init_kills_the_zygote() {
    let mut agent = Agent::start_with(Some(&prewarm()));
    let zygote = agent.zygote.unwrap();
    agent.send(&Frame::Shutdown);
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
    let deadline = Instant::now() + Duration::from_secs(10);
    // The test process is not its parent: gone means no /proc entry or a zombie of the agent's.
    while std::fs::read_to_string(format!("/proc/{zygote}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z "))
    {
        assert!(
            Instant::now() < deadline,
            "zygote {zygote} survived the agent"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
