//! A probe function tries to get out of its sandbox, under real gVisor and runc: host files,
//! the control plane's database and data directory, the host's processes, the control
//! plane's port, the internet, another function's `/tmp`, processes and environment. Each
//! attempt's outcome is asserted, as are the escape list of issue 10 (new user namespaces and
//! mounts, ptrace and memory of PID 1, io_uring, keyrings, bpf, perf events, userfaultfd), a
//! uid of its own per sandbox, and a mount table without host paths. A second probe with
//! outbound network reaches the internet but still not the host.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{create_fn, Server};
use serde_json::{json, Value};

const PROBE: &str = r#"
import ctypes, json, os, socket

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"unshare": 272, "clone": 56, "ptrace": 101, "process_vm_readv": 310,
      "io_uring_setup": 425, "keyctl": 250, "add_key": 248, "bpf": 321,
      "perf_event_open": 298, "userfaultfd": 323}
CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x20000, 17

def check(r):
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r

def syscall(name, *args):
    return check(libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args]))

def in_child(fn):
    # Namespaces, tracing and mounts must not stick to the runtime's own process.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, json.dumps(attempt(fn)).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)

def buf(size, words=()):
    b = ctypes.create_string_buffer(size)
    for i, v in enumerate(words):
        ctypes.c_uint32.from_buffer(b, 4 * i).value = v
    return b

def userns_mount():
    syscall("unshare", CLONE_NEWUSER | CLONE_NEWNS)
    check(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    return "mounted in a new user namespace"

def clone_newuser():
    pid = check(libc.syscall(ctypes.c_long(NR["clone"]), ctypes.c_long(CLONE_NEWUSER | SIGCHLD),
                             ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0)))
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return "cloned into a new user namespace"

def pid1_address():
    try:
        return int(open("/proc/1/maps").readline().split("-")[0], 16)
    except OSError:
        return int(open("/proc/self/maps").readline().split("-")[0], 16)

def pid1_mem():
    with open("/proc/1/mem", "rb") as f:
        f.seek(pid1_address())
        return f.read(16).hex()

def vm_readv_pid1():
    local, remote = ctypes.create_string_buffer(16), (ctypes.c_uint64 * 2)(pid1_address(), 16)
    liov = (ctypes.c_uint64 * 2)(ctypes.addressof(local), 16)
    syscall("process_vm_readv", 1, ctypes.addressof(liov), 1, ctypes.addressof(remote), 1, 0)
    return local.raw.hex()

def io_uring():
    params = buf(120)  # kept alive: the kernel writes the ring's parameters into it
    os.close(syscall("io_uring_setup", 1, ctypes.addressof(params)))
    return "io_uring ring created"

def add_key(name):
    kind, desc, data = buf(8), ctypes.create_string_buffer(name.encode()), buf(1)
    kind.value = b"user"
    return syscall("add_key", ctypes.addressof(kind), ctypes.addressof(desc),
                   ctypes.addressof(data), 1, -4 & 0xffffffff)  # the user keyring

def bpf_map():
    attr = buf(128, [2, 4, 4, 1])  # an array map: 1 entry, 4-byte keys and values
    os.close(syscall("bpf", 0, ctypes.addressof(attr), 128))
    return "bpf map created"

def perf_self():
    attr = buf(128, [1, 128])  # PERF_TYPE_SOFTWARE, size; config 0: cpu clock
    ctypes.c_uint64.from_buffer(attr, 40).value = 0x60  # exclude_kernel, exclude_hv
    os.close(syscall("perf_event_open", ctypes.addressof(attr), 0, -1, -1, 0))
    return "perf event opened"

def uffd():
    os.close(syscall("userfaultfd", 1))  # UFFD_USER_MODE_ONLY: allowed unprivileged
    return "userfaultfd created"

def escapes(key_name):
    return {
        "unshare_userns_mount": in_child(userns_mount),
        "clone_newuser": in_child(clone_newuser),
        "ptrace_pid1": in_child(lambda: syscall("ptrace", 0x4206, 1, 0, 0)),  # PTRACE_SEIZE
        "read_pid1_mem": attempt(pid1_mem),
        "process_vm_readv_pid1": attempt(vm_readv_pid1),
        "io_uring_setup": attempt(io_uring),
        "keyctl_user_keyring": attempt(lambda: syscall("keyctl", 0, -4 & 0xffffffff, 1)),
        "add_key": attempt(lambda: add_key(key_name)),
        "bpf": attempt(bpf_map),
        "perf_event_open": attempt(perf_self),
        "userfaultfd": attempt(uffd),
    }

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
    r["tmp_owner"] = [os.stat("/tmp").st_uid, os.stat("/tmp").st_gid]
    r["escapes"] = escapes(event.get("key_name", "probe-key"))
    r["mountinfo"] = open("/proc/self/mountinfo").read()
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
    let event = |plant: Option<&str>, key_name: &str| {
        json!({
            "plant": plant,
            "key_name": key_name,
            "read": ["/etc/shadow", format!("{dir}/skyscale.db"), format!("{dir}/data/server.key"),
                     format!("{dir}/data/admin-key"), "/root/.bashrc"],
            "exists": ["/root", "/home", "/var/lib/skyscale", dir.clone(), "/dev/kvm",
                       "/dev/sda", "/dev/mem", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
            "connect": [["127.0.0.1", port], [host.clone(), port], ["pypi.org", 443]],
        })
    };
    let a = invoke(&server, "probe-a", &event(Some("only-for-a"), "key-of-a"));
    let b = invoke(&server, "probe-b", &event(None, "key-of-b"));

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
        // Unprivileged (a uid of the sandbox range, its own), no capabilities, cannot become
        // root; the sandbox's /tmp is its own.
        let uid = r["uid"][0].as_u64().unwrap();
        assert!(
            (0x7000_0000..0x7001_0000).contains(&uid),
            "probe {who} runs as uid {uid}"
        );
        assert_eq!(r["uid"], json!([uid, uid, uid]), "{who}");
        assert_eq!(r["tmp_owner"], json!([uid, uid]), "{who}");
        eprintln!("{driver}: probe {who}: escapes {}", r["escapes"]);
        // The escape list of issue 10: each refused (seccomp; /proc/1/mem by the agent
        // being non-dumpable).
        for (what, outcome) in r["escapes"].as_object().unwrap() {
            refused(outcome, &format!("probe {who}: {what}"));
        }
        // Nothing of the host's data directory in the mount table.
        let mountinfo = r["mountinfo"].as_str().unwrap();
        assert!(
            !mountinfo.contains(&dir),
            "probe {who} sees host data paths:\n{mountinfo}"
        );
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
    // Different uids, so nothing uid-scoped is shared. The kernel's user keyring is per uid:
    // with one uid for all, both probes got the same keyring from `keyctl` (and /proc/keys is
    // masked, so that is the way to see it).
    assert_ne!(a["uid"][0], b["uid"][0], "two functions share a uid");
    let keyring = |r: &Value| r["escapes"]["keyctl_user_keyring"]["ok"].clone();
    assert!(
        keyring(&a).is_null() || keyring(&a) != keyring(&b),
        "probes a and b share the user keyring {}",
        keyring(&a)
    );
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
