//! The OCI drivers against the real runtimes: every case runs under runsc (ptrace) and runc.
//! A missing runtime fails the test with an install hint; nothing is skipped.

// The cases are plain async functions called from the generated tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use skyscale_sandbox::{Driver, DriverError, OciDriver, Runtime, SandboxId};

macro_rules! driver_tests {
    ($($module:ident => $runtime:expr;)*) => {$(
        mod $module {
            use super::*;

            fn runtime() -> Runtime {
                $runtime
            }

            #[tokio::test]
            async fn echo_round_trip() {
                cases::echo_round_trip(runtime()).await
            }
            #[tokio::test]
            async fn filesystem_is_read_only_except_tmp() {
                cases::filesystem_is_read_only_except_tmp(runtime()).await
            }
            #[tokio::test]
            async fn host_paths_are_absent() {
                cases::host_paths_are_absent(runtime()).await
            }
            #[tokio::test]
            async fn loopback_only_network() {
                cases::loopback_only_network(runtime()).await
            }
            #[tokio::test]
            async fn outbound_network_but_not_the_host() {
                cases::outbound_network_but_not_the_host(runtime()).await
            }
            #[tokio::test]
            async fn a_build_writes_its_output_and_nothing_else() {
                cases::a_build_writes_its_output_and_nothing_else(runtime()).await
            }
            #[tokio::test]
            async fn memory_limit_kills_the_sandbox() {
                cases::memory_limit_kills_the_sandbox(runtime()).await
            }
            #[tokio::test]
            async fn code_and_memory_can_change_after_start() {
                cases::code_and_memory_can_change_after_start(runtime()).await
            }
            #[tokio::test]
            async fn pids_limit_is_enforced() {
                cases::pids_limit_is_enforced(runtime()).await
            }
            #[tokio::test]
            async fn destroy_removes_everything_and_is_idempotent() {
                cases::destroy_removes_everything_and_is_idempotent(runtime()).await
            }
            #[tokio::test]
            async fn large_write_arrives_complete() {
                cases::large_write_arrives_complete(runtime()).await
            }
            #[tokio::test]
            async fn cleanup_leftovers_after_a_crash() {
                cases::cleanup_leftovers_after_a_crash(runtime()).await
            }
            #[tokio::test]
            async fn two_sandboxes_are_independent() {
                cases::two_sandboxes_are_independent(runtime()).await
            }
            #[tokio::test]
            async fn failed_create_reports_and_cleans_up() {
                cases::failed_create_reports_and_cleans_up(runtime()).await
            }
            #[tokio::test]
            async fn missing_binary_is_not_installed() {
                cases::missing_binary_is_not_installed(runtime())
            }
            #[tokio::test]
            async fn create_and_destroy_latency() {
                cases::create_and_destroy_latency(runtime()).await
            }
        }
    )*};
}

driver_tests! {
    runsc => Runtime::runsc();
    runc => Runtime::Runc;
}

mod cases {
    use super::*;

    pub async fn echo_round_trip(rt: Runtime) {
        let f = fixture(rt);
        let mut p = f.start(128, 64).await;
        for i in 0..20 {
            let reply = p.exec(&format!("result = 'échø {i}'")).await.unwrap();
            assert_eq!(reply, format!("échø {i}"));
        }
        let who = p
            .exec("result = [os.getpid(), os.getuid(), os.getgid(), os.getcwd()]")
            .await;
        let uid = f
            .driver
            .uid_of(&p.id)
            .expect("a uid claimed for the sandbox");
        assert!(skyscale_sandbox::DEFAULT_UID_RANGE.first <= uid);
        assert_eq!(who.unwrap(), serde_json::json!([1, uid, uid, "/"]));
        let err = p.exec("raise ValueError('boom')").await.unwrap_err();
        assert!(err.contains("boom"), "{err}");
        f.driver.destroy(&p.id).await.unwrap();
        f.assert_gone(&p.id);
    }

    pub async fn filesystem_is_read_only_except_tmp(rt: Runtime) {
        let f = fixture(rt);
        let mut p = f.start(128, 64).await;
        let handler = p
            .exec("result = open('/var/task/handler.py').read()")
            .await
            .unwrap();
        assert!(handler.as_str().unwrap().contains("def handler"));
        // The code directory belongs to the sandbox user: only the read-only mount stops this.
        let err = p.exec("open('/var/task/new.py', 'w')").await.unwrap_err();
        assert!(err.contains("Read-only file system"), "{err}");
        let err = p.exec("os.mkdir('/newdir')").await.unwrap_err();
        assert!(err.contains("Errno"), "{err}");
        // Mount flags as the sandbox's kernel reports them (gVisor's statvfs has no ST_RDONLY).
        let flags = p
            .exec(
                "m = {l.split()[1]: 'ro' in l.split()[3].split(',') for l in open('/proc/self/mounts')}\n\
                 result = {d: m.get(d) for d in \
                 ['/', '/usr', '/var/task', '/var/runtime', '/etc/ssl/certs', '/tmp']}",
            )
            .await
            .unwrap();
        assert_eq!(
            flags,
            serde_json::json!({"/": true, "/usr": true, "/var/task": true,
                "/var/runtime": true, "/etc/ssl/certs": true, "/tmp": false})
        );
        let tmp = p
            .exec("open('/tmp/x', 'w').write('hello'); result = open('/tmp/x').read()")
            .await
            .unwrap();
        assert_eq!(tmp, "hello");
        // /tmp is a 16 MiB tmpfs.
        let err = p
            .exec("open('/tmp/big', 'wb').write(b'x' * (20 << 20))")
            .await
            .unwrap_err();
        assert!(err.contains("No space left"), "{err}");
        f.driver.destroy(&p.id).await.unwrap();
    }

    pub async fn host_paths_are_absent(rt: Runtime) {
        let f = fixture(rt);
        let mut p = f.start(128, 64).await;
        let exists = p
            .exec(
                "result = [d for d in ['/root', '/home', '/etc/shadow', '/etc/gshadow', \
                 '/var/lib', '/etc/ssl/private', '/work', '/mnt', '/etc/sudoers'] \
                 if os.path.lexists(d)]",
            )
            .await
            .unwrap();
        assert_eq!(exists, serde_json::json!([]));
        // `/opt` is the sandbox's own (its function's layers; none here), never the host's.
        let opt = p.exec("result = os.listdir('/opt')").await.unwrap();
        assert_eq!(opt, serde_json::json!([]));
        let listing = p
            .exec("result = [sorted(os.listdir(d)) for d in ['/', '/var', '/etc']]")
            .await
            .unwrap();
        let mut root: Vec<&str> = vec!["dev", "etc", "opt", "proc", "sys", "tmp", "usr", "var"];
        for d in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            if std::path::Path::new("/").join(d).exists() {
                root.push(d);
            }
        }
        root.sort_unstable();
        assert_eq!(listing[0], serde_json::json!(root));
        assert_eq!(listing[1], serde_json::json!(["runtime", "task"]));
        let mut etc = vec![
            "group",
            "hostname",
            "hosts",
            "nsswitch.conf",
            "passwd",
            "resolv.conf",
        ];
        if std::path::Path::new("/etc/ld.so.cache").exists() {
            etc.push("ld.so.cache");
        }
        if std::path::Path::new("/etc/ssl/certs").is_dir() {
            etc.push("ssl");
            let ssl = p
                .exec("result = sorted(os.listdir('/etc/ssl'))")
                .await
                .unwrap();
            assert_eq!(ssl[0], "certs", "only the certificates of /etc/ssl: {ssl}");
            assert!(ssl.as_array().unwrap().len() <= 2, "{ssl}");
        }
        etc.sort_unstable();
        assert_eq!(listing[2], serde_json::json!(etc));
        // Python and its standard library run from the host's /usr.
        let json = p
            .exec("import json, ssl; result = json.dumps([1])")
            .await
            .unwrap();
        assert_eq!(json, "[1]");
        f.driver.destroy(&p.id).await.unwrap();
    }

    pub async fn loopback_only_network(rt: Runtime) {
        let f = fixture(rt);
        let mut p = f.start(128, 64).await;
        let echoed = p
            .exec(
                "import socket\n\
                 srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)\n\
                 c = socket.create_connection(srv.getsockname(), timeout=5)\n\
                 s, _ = srv.accept(); c.sendall(b'ping'); result = s.recv(4).decode()\n\
                 for x in (c, s, srv): x.close()",
            )
            .await
            .unwrap();
        assert_eq!(echoed, "ping");
        // No interface but lo: nothing to route to (no traffic is sent anywhere).
        let ifaces = p
            .exec(
                "result = sorted(l.split(':')[0].strip() for l in \
                 open('/proc/net/dev').read().splitlines()[2:])",
            )
            .await
            .unwrap();
        assert_eq!(ifaces, serde_json::json!(["lo"]));
        f.driver.destroy(&p.id).await.unwrap();
    }

    /// A sandbox given network reaches the internet (pypi.org, which these machines may
    /// reach) but neither the host (a server on all of its addresses) nor its own gateway;
    /// destroying it removes the namespace and the host's end of the veth pair.
    /// A requirements build's sandbox: network, pip run by the sandbox's own interpreter
    /// into its `/tmp`, the result zipped into the one writable bind (`/var/build`), which
    /// the host then reads; `/var/task` stays read-only.
    pub async fn a_build_writes_its_output_and_nothing_else(rt: Runtime) {
        let f = fixture(rt);
        let out = f.tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let mut spec = f.spec(256, 64);
        spec.network = true;
        spec.output_dir = Some(out.clone());
        let mut p = Probe::new(f.driver.create(&spec).await.expect("create sandbox"));
        let built = p
            .exec(
                "import subprocess, sys, zipfile\n\
                 r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', \
                 '--disable-pip-version-check', '--target', '/tmp/build/python', 'six==1.16.0'], \
                 capture_output=True, text=True, env={'HOME': '/tmp', 'PATH': '/usr/bin:/bin'})\n\
                 if r.returncode == 0:\n\
                 \x20   with zipfile.ZipFile('/var/build/layer.zip', 'w') as z:\n\
                 \x20       for d, _, files in os.walk('/tmp/build'):\n\
                 \x20           for n in files:\n\
                 \x20               full = os.path.join(d, n)\n\
                 \x20               z.write(full, os.path.relpath(full, '/tmp/build'))\n\
                 result = [r.returncode, r.stdout[-2000:] + r.stderr[-2000:]]",
            )
            .await
            .unwrap();
        assert_eq!(built[0], 0, "pip failed: {}", built[1]);
        let zip = std::fs::read(out.join("layer.zip")).unwrap();
        assert!(zip.starts_with(b"PK"), "a zip");
        let names = String::from_utf8_lossy(&zip);
        assert!(names.contains("python/six.py"), "the package under python/");
        let err = p.exec("open('/var/task/x', 'w')").await.unwrap_err();
        assert!(err.contains("Read-only file system"), "{err}");
        f.driver.destroy(&p.id).await.unwrap();
        // A sandbox without an output directory has no /var/build.
        let mut p = f.start(128, 64).await;
        let exists = p
            .exec("result = os.path.exists('/var/build')")
            .await
            .unwrap();
        assert_eq!(exists, false);
        f.driver.destroy(&p.id).await.unwrap();
    }

    pub async fn outbound_network_but_not_the_host(rt: Runtime) {
        let f = fixture(rt);
        let host_ip = {
            // The address the host's default route uses (connecting a UDP socket sends nothing).
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.connect("192.0.2.254:9").unwrap();
            s.local_addr().unwrap().ip()
        };
        let server = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let mut spec = f.spec(128, 64);
        spec.network = true;
        let mut p = Probe::new(f.driver.create(&spec).await.expect("create sandbox"));
        let connect = |addr: &str, port: u16| {
            format!(
                "import socket\n\
                 try:\n    socket.create_connection(({addr:?}, {port}), timeout=5).close(); result = 'connected'\n\
                 except OSError as e:\n    result = type(e).__name__"
            )
        };
        let internet = p.exec(&connect("pypi.org", 443)).await.unwrap();
        assert_eq!(
            internet, "connected",
            "a networked sandbox reaches the internet"
        );
        let host = p.exec(&connect(&host_ip.to_string(), port)).await.unwrap();
        assert_ne!(
            host, "connected",
            "the sandbox reached the host at {host_ip}:{port}"
        );
        let gateway = p
            .exec("result = [l.split() for l in open('/proc/net/route')][1:]")
            .await
            .unwrap();
        let gw_hex = gateway
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[1] == "00000000")
            .map(|r| r[2].as_str().unwrap().to_owned())
            .expect("a default route");
        let gw = u32::from_str_radix(&gw_hex, 16).unwrap().to_le_bytes();
        let gw = std::net::Ipv4Addr::from(gw).to_string();
        let via_gateway = p.exec(&connect(&gw, port)).await.unwrap();
        assert_ne!(
            via_gateway, "connected",
            "the sandbox reached the host via {gw}"
        );
        let resolv = p
            .exec("result = open('/etc/resolv.conf').read()")
            .await
            .unwrap();
        assert!(resolv.as_str().unwrap().contains("nameserver"), "{resolv}");
        f.driver.destroy(&p.id).await.unwrap();
        f.assert_gone(&p.id);
        assert!(!std::path::Path::new("/run/netns")
            .join(p.id.as_str())
            .exists());
        let host_if = format!("skh{}", &p.id.as_str()[3..15]);
        assert!(!std::path::Path::new("/sys/class/net")
            .join(&host_if)
            .exists());
        drop(server);
    }

    pub async fn memory_limit_kills_the_sandbox(rt: Runtime) {
        let is_runsc = matches!(rt, Runtime::Runsc { .. });
        let f = fixture(rt);
        let mut p = f.start(128, 64).await;
        let limit: i64 = f
            .cgroup_value(&p.id, "memory", "memory.limit_in_bytes")
            .parse()
            .unwrap();
        let expected_mb = if is_runsc {
            128 + skyscale_sandbox::DEFAULT_RUNSC_OVERHEAD_MB
        } else {
            128
        };
        assert_eq!(limit, i64::from(expected_mb) << 20);
        let swap: i64 = f
            .cgroup_value(&p.id, "memory", "memory.memsw.limit_in_bytes")
            .parse()
            .unwrap();
        assert_eq!(swap, limit, "no swap");
        let ok = p
            .exec("b = b'x' * (50 << 20); result = len(b)")
            .await
            .unwrap();
        assert_eq!(ok, 50 << 20);
        p.send("keep = b'x' * (300 << 20); result = len(keep)")
            .await;
        assert_eq!(
            p.recv_line().await,
            None,
            "300 MB in a 128 MB sandbox must be killed"
        );
        f.driver.destroy(&p.id).await.unwrap();
        f.assert_gone(&p.id);
    }

    /// What specialising a generic sandbox relies on: files linked into the (empty at boot)
    /// code directory afterwards are visible at /var/task, and the memory limit can be
    /// raised while the sandbox runs.
    pub async fn code_and_memory_can_change_after_start(rt: Runtime) {
        let gvisor = matches!(rt, Runtime::Runsc { .. });
        let f = fixture(rt);
        let empty = f.tmp.path().join("late-code");
        std::fs::create_dir(&empty).unwrap();
        let mut spec = f.spec(128, 64);
        spec.code_dir = empty.clone();
        let mut p = Probe::new(f.driver.create(&spec).await.unwrap());
        assert_eq!(
            p.exec("result = os.listdir('/var/task')").await.unwrap(),
            serde_json::json!([])
        );
        std::fs::create_dir(empty.join("pkg")).unwrap();
        std::fs::hard_link(f.code_dir.join("handler.py"), empty.join("pkg/handler.py")).unwrap();
        let seen = p
            .exec("result = [os.listdir('/var/task'), open('/var/task/pkg/handler.py').read()]")
            .await
            .unwrap();
        assert_eq!(
            seen,
            serde_json::json!([["pkg"], "def handler(e, c):\n    return e\n"])
        );

        f.driver.set_memory_limit(&p.id, 512).await.unwrap();
        // The CPU quota, as after a function's init: Lambda's ratio per 20 ms period, and
        // on gVisor a tenth of a vCPU more for the Sentry.
        f.driver.limit_cpu(&p.id, 512).await.unwrap();
        assert_eq!(f.cgroup_value(&p.id, "cpu", "cpu.cfs_period_us"), "20000");
        let quota = if gvisor { "7788" } else { "5788" };
        assert_eq!(f.cgroup_value(&p.id, "cpu", "cpu.cfs_quota_us"), quota);
        let got = p
            .exec("keep = b'x' * (300 << 20); result = len(keep)")
            .await
            .unwrap();
        assert_eq!(got, 300 << 20, "300 MB fits once the limit is 512 MB");
        f.driver.destroy(&p.id).await.unwrap();
        f.assert_gone(&p.id);
    }

    pub async fn pids_limit_is_enforced(rt: Runtime) {
        let f = fixture(rt);
        let mut p = f.start(128, 32).await;
        let started = p
            .exec(
                "import threading\nev = threading.Event()\nn = 0\n\
                 try:\n    for i in range(100):\n        threading.Thread(target=ev.wait).start()\n        n += 1\n\
                 except RuntimeError:\n    pass\nev.set()\nresult = n",
            )
            .await
            .unwrap();
        let started = started.as_i64().unwrap();
        assert!(
            (1..32).contains(&started),
            "{started} threads with a limit of 32 tasks"
        );
        // The sandbox survives hitting its limit.
        assert_eq!(p.exec("result = 7").await.unwrap(), 7);
        f.driver.destroy(&p.id).await.unwrap();
        f.assert_gone(&p.id);
    }

    pub async fn destroy_removes_everything_and_is_idempotent(rt: Runtime) {
        let f = fixture(rt);
        let mut p = f.start(128, 64).await;
        p.exec("result = 1").await.unwrap();
        let pids = f.pids_of(&p.id);
        assert!(!pids.is_empty());
        assert!(f.driver.has_state(&p.id) && f.driver.bundle_dir(&p.id).exists());
        assert!(f.driver.uid_of(&p.id).is_some());
        f.driver.destroy(&p.id).await.unwrap();
        f.assert_gone(&p.id);
        assert_eq!(f.driver.uid_of(&p.id), None, "the uid claim is released");
        for pid in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "pid {pid} left"
            );
        }
        assert!(
            p.closed_within(Duration::from_secs(5)).await,
            "channel still open"
        );
        f.driver.destroy(&p.id).await.unwrap();
        f.driver.destroy(&SandboxId::generate()).await.unwrap();
        // The last sandbox took the instance's cgroup parent with it.
        for dir in f.driver.cgroup_dirs(&p.id) {
            assert!(!dir.parent().unwrap().exists(), "{} left", dir.display());
        }
    }

    pub async fn large_write_arrives_complete(rt: Runtime) {
        let f = fixture(rt);
        let mut p = f.start(128, 64).await;
        p.send("out(b'x' * (2 << 20) + b'\\n'); result = 'done'")
            .await;
        let data = p.read_exact((2 << 20) + 1).await;
        assert!(data[..2 << 20].iter().all(|b| *b == b'x'));
        assert_eq!(data[2 << 20], b'\n');
        assert_eq!(p.recv_line().await.unwrap().trim(), r#"{"ok": "done"}"#);
        f.driver.destroy(&p.id).await.unwrap();
    }

    pub async fn cleanup_leftovers_after_a_crash(rt: Runtime) {
        let f = fixture(rt.clone());
        let mut p = f.start(128, 64).await;
        p.exec("result = 1").await.unwrap();
        // A second driver on the same state root, as after a control-plane restart.
        let cfg = f.driver.config().clone();
        let restarted = OciDriver::new(cfg).unwrap();
        assert_eq!(restarted.cleanup_leftovers().await.unwrap(), 1);
        f.assert_gone(&p.id);
        assert!(p.closed_within(Duration::from_secs(5)).await);
        assert_eq!(restarted.cleanup_leftovers().await.unwrap(), 0);
        // Not even an orphaned bundle directory or cgroup survives.
        let id = SandboxId::generate();
        std::fs::create_dir_all(restarted.bundle_dir(&id).join("rootfs")).unwrap();
        let cg = restarted.cgroup_dirs(&id).into_iter().next().unwrap();
        std::fs::create_dir_all(&cg).unwrap();
        assert_eq!(restarted.cleanup_leftovers().await.unwrap(), 1);
        f.assert_gone(&id);
        // A live sandbox of the driver itself is never a leftover.
        let mut q = Probe::new(restarted.create(&f.spec(128, 64)).await.unwrap());
        assert_eq!(restarted.cleanup_leftovers().await.unwrap(), 0);
        assert_eq!(q.exec("result = 2").await.unwrap(), 2);
        restarted.destroy(&q.id).await.unwrap();
        f.assert_gone(&q.id);
    }

    pub async fn two_sandboxes_are_independent(rt: Runtime) {
        let f = fixture(rt);
        let (a, b) = tokio::join!(f.start(128, 64), f.start(128, 64));
        let (mut a, mut b) = (a, b);
        a.exec("open('/tmp/marker', 'w').write('a')").await.unwrap();
        let seen = b
            .exec("result = os.path.exists('/tmp/marker')")
            .await
            .unwrap();
        assert_eq!(seen, false);
        assert_eq!(b.exec("result = os.getpid()").await.unwrap(), 1);
        // A uid each: nothing uid-scoped (keyrings, per-user limits) is shared.
        let (ua, ub) = (
            a.exec("result = os.getuid()").await.unwrap(),
            b.exec("result = os.getuid()").await.unwrap(),
        );
        assert_ne!(ua, ub);
        assert_eq!(ua, f.driver.uid_of(&a.id).unwrap());
        assert_eq!(ub, f.driver.uid_of(&b.id).unwrap());
        f.driver.destroy(&a.id).await.unwrap();
        f.assert_gone(&a.id);
        assert_eq!(b.exec("result = 'still here'").await.unwrap(), "still here");
        f.driver.destroy(&b.id).await.unwrap();
        f.assert_gone(&b.id);
    }

    pub async fn failed_create_reports_and_cleans_up(rt: Runtime) {
        let f = fixture(rt);
        let mut cfg = f.driver.config().clone();
        cfg.init = vec!["/usr/bin/does-not-exist".into()];
        let driver = OciDriver::new(cfg).unwrap();
        let spec = f.spec(128, 64);
        let err = driver.create(&spec).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, DriverError::Command { .. }), "{err:?}");
        assert!(
            text.contains(spec.id.as_str()) && text.contains("run"),
            "{text}"
        );
        assert!(
            text.contains("does-not-exist") || text.contains("no such file"),
            "{text}"
        );
        f.assert_gone(&spec.id);
        // A missing code directory fails before anything starts.
        let mut spec = f.spec(128, 64);
        spec.code_dir = f.tmp.path().join("missing");
        let err = driver.create(&spec).await.unwrap_err();
        assert!(matches!(err, DriverError::Bundle { .. }), "{err:?}");
        f.assert_gone(&spec.id);
    }

    pub fn missing_binary_is_not_installed(rt: Runtime) {
        let tmp = tempfile::tempdir().unwrap();
        let name = rt.binary_name();
        let mut cfg = config(rt, tmp.path(), "skyscale-test/unused");
        cfg.binary = Some(tmp.path().join(name));
        match OciDriver::new(cfg) {
            Err(DriverError::NotInstalled { binary, hint }) => {
                assert!(binary.ends_with(name));
                assert!(hint.contains(&format!("apt-get install {name}")), "{hint}");
            }
            other => panic!("expected NotInstalled, got {other:?}"),
        }
    }

    /// Prints create/destroy latencies; destroy must stay far below runsc's 5 s wait for
    /// unreaped processes (trap 3), which is what a broken reaper looks like.
    pub async fn create_and_destroy_latency(rt: Runtime) {
        let name = format!("{rt:?}");
        let f = fixture(rt);
        let (mut create, mut answer, mut destroy) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            let sandbox = f.driver.create(&f.spec(128, 64)).await.unwrap();
            create.push(t.elapsed());
            let mut p = Probe::new(sandbox);
            p.exec("result = 1").await.unwrap();
            answer.push(t.elapsed());
            let t = Instant::now();
            f.driver.destroy(&p.id).await.unwrap();
            destroy.push(t.elapsed());
            f.assert_gone(&p.id);
        }
        for v in [&mut create, &mut answer, &mut destroy] {
            v.sort();
        }
        eprintln!(
            "{name} medians: create {:?}, first answer {:?}, destroy {:?} (max {:?})",
            create[2], answer[2], destroy[2], destroy[4]
        );
        assert!(
            destroy[4] < Duration::from_secs(1),
            "destroy took {:?}",
            destroy[4]
        );
    }
}
