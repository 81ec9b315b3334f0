//! A probe function tries to get out of its sandbox, under real gVisor and runc: host files,
//! the control plane's database and data directory, the host's processes, the control
//! plane's port, the internet, another function's `/tmp`, processes and environment. Each
//! attempt's outcome is asserted. A second probe with outbound network reaches the internet
//! but still not the host.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{create_fn, Server};
use serde_json::{json, Value};

const PROBE: &str = r#"
import os, socket

def attempt(fn):
    try:
        return {"ok": fn()}
    except BaseException as e:
        return {"err": type(e).__name__, "msg": str(e)[:200]}

def connect(host, port):
    socket.create_connection((host, port), timeout=3).close()
    return "connected"

def processes():
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ")
                env = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
                out[pid] = {"cmd": cmd.decode(errors="replace")[:200], "env": env}
            except OSError:
                pass
    return out

def handler(event, context):
    if event.get("plant"):
        with open("/tmp/planted", "w") as f:
            f.write(event["plant"])
    r = {"read": {}, "exists": {}, "connect": {}}
    for path in event["read"]:
        r["read"][path] = attempt(lambda p=path: open(p, "rb").read(64).hex())
    for path in event["exists"]:
        r["exists"][path] = os.path.exists(path)
    for host, port in event["connect"]:
        r["connect"][f"{host}:{port}"] = attempt(lambda h=host, p=port: connect(h, p))
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines()
                  if ":" in l)
    r["uid"] = [os.getuid(), os.geteuid(), os.getgid()]
    r["cap_eff"] = status.get("CapEff", "").strip()
    r["cap_bnd"] = status.get("CapBnd", "").strip()
    r["no_new_privs"] = status.get("NoNewPrivs", "").strip()
    r["processes"] = processes()
    r["secret"] = os.environ.get("SECRET")
    r["write_root"] = attempt(lambda: open("/escape", "w").write("x"))
    r["write_task"] = attempt(lambda: open("/var/task/escape", "w").write("x"))
    r["setuid_root"] = attempt(lambda: os.setuid(0))
    st = os.statvfs("/tmp")
    r["tmp_bytes"] = st.f_blocks * st.f_frsize
    r["tmp"] = sorted(os.listdir("/tmp"))
    return r
"#;

/// The host's address on its default route (connecting a UDP socket sends nothing).
fn host_ip() -> String {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.254:9").unwrap();
    s.local_addr().unwrap().ip().to_string()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn invoke(server: &Server, name: &str, event: &Value) -> Value {
    let r = server
        .http()
        .post_json(&format!("/v1/functions/{name}/invoke"), event);
    assert_eq!(
        r.status,
        200,
        "{name}: {}\n{}",
        String::from_utf8_lossy(&r.body),
        common::tail(&server.log(), 40)
    );
    assert_eq!(r.header("x-skyscale-function-error"), None, "{}", r.json());
    r.json()
}

fn refused(outcome: &Value, what: &str) {
    assert!(
        outcome.get("err").is_some(),
        "{what} must fail, but it succeeded: {outcome}"
    );
}

fn escape_attempts(driver: &str) {
    // Listening on every address: the probe must not reach the port through any of them.
    let server = Server::start_with(driver, &[("SKYSCALE_HOST", "0.0.0.0")]);
    let http = server.http();
    let port = port_of(&server.url);
    let host = host_ip();
    let dir = server.dir.path().display().to_string();
    for (name, secret) in [("probe-a", "alpha-secret"), ("probe-b", "bravo-secret")] {
        let r = create_fn(
            &http,
            name,
            PROBE,
            json!({"environment": {"SECRET": secret}, "timeout_s": 30}),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let event = |plant: Option<&str>| {
        json!({
            "plant": plant,
            "read": ["/etc/shadow", format!("{dir}/skyscale.db"), format!("{dir}/data/server.key"),
                     format!("{dir}/data/admin-key"), "/root/.bashrc"],
            "exists": ["/root", "/home", "/var/lib/skyscale", dir.clone(), "/dev/kvm",
                       "/dev/sda", "/dev/mem", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
            "connect": [["127.0.0.1", port], [host.clone(), port], ["pypi.org", 443]],
        })
    };
    let a = invoke(&server, "probe-a", &event(Some("only-for-a")));
    let b = invoke(&server, "probe-b", &event(None));

    for (who, r) in [("a", &a), ("b", &b)] {
        for (path, outcome) in r["read"].as_object().unwrap() {
            refused(outcome, &format!("probe {who} reading {path}"));
        }
        for (path, exists) in r["exists"].as_object().unwrap() {
            assert_eq!(exists, false, "probe {who} sees {path}");
        }
        for (target, outcome) in r["connect"].as_object().unwrap() {
            refused(outcome, &format!("probe {who} connecting to {target}"));
        }
        // Unprivileged, no capabilities, cannot become root.
        assert_eq!(r["uid"], json!([993, 993, 993]), "{who}");
        assert_eq!(r["cap_eff"], "0000000000000000", "{who}");
        if driver == "runc" {
            // gVisor does not report these two lines.
            assert_eq!(r["cap_bnd"], "0000000000000000", "{who}");
            assert_eq!(r["no_new_privs"], "1", "{who}");
        }
        refused(&r["setuid_root"], "setuid(0)");
        refused(&r["write_root"], "writing /");
        refused(&r["write_task"], "writing /var/task");
        // /tmp is bounded: the default 512 MiB.
        assert_eq!(r["tmp_bytes"], 512 << 20, "{who}");
        // Only the sandbox's own processes: the agent and the runtime. Nothing of the host
        // (no control plane, no runtime CLI, no other sandbox).
        let procs = r["processes"].as_object().unwrap();
        assert!(
            !procs.is_empty() && procs.len() <= 4,
            "probe {who} sees {} processes: {procs:?}",
            procs.len()
        );
        for p in procs.values() {
            let cmd = p["cmd"].as_str().unwrap();
            assert!(
                cmd.contains("/var/runtime") || cmd.contains("python"),
                "probe {who} sees a foreign process: {cmd}"
            );
        }
    }
    // Neither sees the other's /tmp nor its environment.
    assert_eq!(a["tmp"], json!(["planted"]));
    assert_eq!(b["tmp"], json!([]), "probe b sees probe a's /tmp");
    let b_envs: String = b["processes"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["env"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(b["secret"], "bravo-secret", "its own environment");
    assert!(
        !b_envs.contains("alpha-secret"),
        "probe b read probe a's environment"
    );
    // The control plane is still fine and nothing it keeps moved.
    assert_eq!(http.get("/v1/health").status, 200);
    assert!(server.dir.path().join("skyscale.db").is_file());
}

/// With outbound network: the internet answers, the host still does not.
fn outbound_network(driver: &str) {
    let server = Server::start_with(driver, &[("SKYSCALE_HOST", "0.0.0.0")]);
    let http = server.http();
    let port = port_of(&server.url);
    let host = host_ip();
    let r = create_fn(
        &http,
        "probe-net",
        PROBE,
        json!({"network": true, "ephemeral_storage_mb": 1024, "timeout_s": 30}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["network"], true);
    let event = json!({
        "read": [], "exists": [],
        "connect": [["pypi.org", 443], ["127.0.0.1", port], [host, port]],
    });
    let r = invoke(&server, "probe-net", &event);
    let c = r["connect"].as_object().unwrap();
    assert_eq!(
        c["pypi.org:443"],
        json!({"ok": "connected"}),
        "the internet is reachable"
    );
    refused(
        &c[&format!("127.0.0.1:{port}")],
        "the control plane over loopback",
    );
    refused(
        &c[&format!("{}:{port}", host_ip())],
        "the control plane over the host's address",
    );
    assert_eq!(r["tmp_bytes"], 1024 << 20, "ephemeral storage sets /tmp");
    // Warm again: the networked sandbox is reused like any other.
    let again = server
        .http()
        .post_json("/v1/functions/probe-net/invoke", &event);
    assert_eq!(again.header("x-skyscale-cold-start"), Some("false"));
}

#[test]
fn escape_attempts_fail_on_gvisor() {
    escape_attempts("gvisor");
}

#[test]
fn escape_attempts_fail_on_runc() {
    escape_attempts("runc");
}

#[test]
fn outbound_network_reaches_the_internet_not_the_host_on_gvisor() {
    outbound_network("gvisor");
}

#[test]
fn outbound_network_reaches_the_internet_not_the_host_on_runc() {
    outbound_network("runc");
}
