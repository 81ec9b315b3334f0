//! A cluster on one machine: API nodes and workers as real processes on 127.0.0.x
//! addresses, sharing one database, on the process driver (real agent and runtime, no
//! isolation). Routing, stickiness to a function's home worker, losing a worker (SIGKILL),
//! generations, the worker's authentication and address, reserved concurrency across API
//! nodes, and the cluster settings' errors.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{create_fn, workspace_bin, Http, ADMIN_KEY};
use serde_json::{json, Value};

const SECRET: &str = "cluster-test-secret-0123456789abcdef";

/// The handler says which worker ran it: the process driver's agent is a child of the
/// worker, and the runtime a child of the agent.
const WHO: &str = r#"
import os, time

def handler(event, context):
    agent = os.getppid()
    with open(f"/proc/{agent}/stat") as f:
        worker = int(f.read().rsplit(")", 1)[1].split()[1])
    start = time.time()
    time.sleep(event.get("sleep", 0))
    return {"worker": worker, "start": start, "end": time.time()}
"#;

/// What the nodes of one test share: a PostgreSQL database (a cluster runs on nothing
/// else) and a temporary directory holding each node's own data directory (each host has
/// one: packages reach workers through the database).
struct Shared {
    dir: tempfile::TempDir,
    db: common::SharedDatabase,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            dir: tempfile::tempdir().unwrap(),
            db: common::SharedDatabase::create(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self, node: &str) -> PathBuf {
        self.dir.path().join(node).join("data")
    }

    fn database_env(&self) -> (&'static str, String) {
        ("SKYSCALE_DATABASE_URL", self.db.url())
    }
}

/// One process of the cluster. Dropping it stops it (SIGTERM).
struct Node {
    child: Option<Child>,
    /// `http://ip:port` of an API node, `ip:port` of a worker.
    address: String,
    log: PathBuf,
}

impl Node {
    fn spawn(shared: &Shared, name: &str, env: &[(&str, String)]) -> Node {
        let dir = shared.path();
        let log = dir.join(format!("{name}.log"));
        let (db_var, db) = shared.database_env();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyscale-control-plane"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(db_var, db)
            .env("SKYSCALE_DATA_DIR", shared.data_dir(name))
            .env("SKYSCALE_DRIVER", "process")
            .env("SKYSCALE_AGENT_PATH", workspace_bin("skyscale-agent"))
            .env("SKYSCALE_CLUSTER_SECRET", SECRET)
            .env("SKYSCALE_NODE_NAME", name)
            .env("WARM_POOL_SIZE", "0")
            .env("LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut address = None;
        while address.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                break;
            };
            address = line
                .strip_prefix("skyscale-control-plane listening on ")
                .or_else(|| line.strip_prefix("skyscale-control-plane worker listening on http://"))
                .map(|a| a.trim().to_owned());
        }
        let Some(address) = address else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Node {
            child: Some(child),
            address,
            log,
        }
    }

    fn api(shared: &Shared, name: &str) -> Node {
        Node::spawn(
            shared,
            name,
            &[
                ("SKYSCALE_ROLE", "api".into()),
                ("PORT", "0".into()),
                ("SKYSCALE_ADMIN_KEY", ADMIN_KEY.into()),
            ],
        )
    }

    fn worker(shared: &Shared, name: &str, listen: SocketAddr) -> Node {
        Node::spawn(
            shared,
            name,
            &[
                ("SKYSCALE_ROLE", "worker".into()),
                ("SKYSCALE_WORKER_LISTEN", listen.to_string()),
            ],
        )
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn http(&self) -> Http {
        Http {
            base: self.address.clone(),
            key: Some(ADMIN_KEY.to_owned()),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free port on `ip` (bound and released).
fn free_addr(ip: &str) -> SocketAddr {
    let l = TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap()
}

fn cluster(api: &Node) -> Value {
    let r = api.http().get("/v1/cluster");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn live_workers(api: &Node) -> Vec<Value> {
    cluster(api)["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["live"] == true)
        .cloned()
        .collect()
}

/// Polls until `f` holds, or fails with the nodes' logs.
fn wait_until(within: Duration, what: &str, nodes: &[&Node], mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes.iter().map(|n| common::tail(&n.log(), 30)).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the API node routes (its view holds `n` live workers).
fn wait_routable(api: &Node, n: usize, nodes: &[&Node]) {
    wait_until(
        Duration::from_secs(20),
        "the workers to be live",
        nodes,
        || live_workers(api).len() == n,
    );
    // The API node's own view is refreshed every 500 ms.
    std::thread::sleep(Duration::from_millis(700));
}

fn runtime() -> String {
    skyscale_core::Runtimes::discover(Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed")
        .as_str()
        .to_owned()
}

/// Invokes `name` until it answers from the worker `survivor` (the home was killed at
/// `killed_at`): meanwhile only 503s, and for at most 6 s.
fn answers_from_after_a_kill(http: &Http, name: &str, survivor: u32, killed_at: Instant) {
    loop {
        let r = http.invoke(name, "{}");
        if r.status == 200 {
            assert_eq!(ran_on(&r), survivor);
            return;
        }
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            killed_at.elapsed() < Duration::from_secs(6),
            "{name} still refused {:?} after the kill",
            killed_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ran_on(r: &common::Resp) -> u32 {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["worker"].as_u64().unwrap() as u32
}

#[test]
fn routed_sticky_and_a_lost_worker_is_replaced() {
    let dir = Shared::new();
    let api = Node::api(&dir, "api-1");
    let a1 = free_addr("127.0.0.2");
    let a2 = free_addr("127.0.0.3");
    let w1 = Node::worker(&dir, "worker-1", a1);
    let w2 = Node::worker(&dir, "worker-2", a2);
    wait_routable(&api, 2, &[&api, &w1, &w2]);
    let http = api.http();
    let rt = runtime();

    // Each function sticks to one worker (its home, then its warm sandbox there).
    for name in ["f1", "f2", "f3"] {
        let r = create_fn(&http, name, WHO, json!({"runtime": rt}));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let first = ran_on(&http.invoke(name, "{}"));
        assert!([w1.pid(), w2.pid()].contains(&first), "{first}");
        for _ in 0..4 {
            let r = http.invoke(name, "{}");
            assert_eq!(ran_on(&r), first, "{name} moved between workers");
            assert_eq!(r.header("x-skyscale-cold-start"), Some("false"));
        }
    }
    // The records are the API node's.
    let records = http.get("/v1/functions/f1/invocations");
    assert_eq!(records.status, 200);
    assert_eq!(records.json()["invocations"].as_array().unwrap().len(), 5);

    // Kill f1's home worker.
    let home = ran_on(&http.invoke("f1", "{}"));
    let mut workers = [(w1, a1, "worker-1"), (w2, a2, "worker-2")];
    let v = workers
        .iter()
        .position(|(w, _, _)| w.pid() == home)
        .unwrap();
    let survivor_pid = workers[1 - v].0.pid();
    let (victim_addr, victim_name) = (workers[v].1, workers[v].2);
    let gen_before = live_workers(&api)
        .iter()
        .find(|w| w["address"] == victim_addr.to_string())
        .unwrap()["generation"]
        .as_u64()
        .unwrap();
    let killed_at = Instant::now();
    workers[v].0.kill();
    // Within the lease (3 s) and a refresh (0.5 s), f1 answers from the other worker;
    // meanwhile only retryable errors.
    let mut failures = Vec::new();
    loop {
        let r = http.invoke("f1", "{}");
        if r.status == 200 {
            assert_eq!(ran_on(&r), survivor_pid);
            break;
        }
        assert!(
            r.status == 503 || r.status == 429,
            "{}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        failures.push(r.status);
        assert!(
            killed_at.elapsed() < Duration::from_secs(6),
            "f1 still fails {:?} after the kill: {failures:?}\n{}",
            killed_at.elapsed(),
            common::tail(&api.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let moved_after = killed_at.elapsed();
    assert!(moved_after < Duration::from_secs(5), "{moved_after:?}");
    // Every function answers from the survivor.
    for name in ["f1", "f2", "f3"] {
        assert_eq!(ran_on(&http.invoke(name, "{}")), survivor_pid);
    }

    // Restarted at the same address: a higher generation.
    workers[v].0 = Node::worker(&dir, victim_name, victim_addr);
    wait_routable(&api, 2, &[&api, &workers[0].0, &workers[1].0]);
    let gen_after = live_workers(&api)
        .iter()
        .find(|w| w["address"] == victim_addr.to_string())
        .unwrap()["generation"]
        .as_u64()
        .unwrap();
    assert!(gen_after > gen_before, "{gen_after} <= {gen_before}");

    // Status and metrics.
    let status = cluster(&api);
    assert_eq!(status["role"], "api");
    assert_eq!(status["api_nodes"].as_array().unwrap().len(), 1);
    assert_eq!(status["api_nodes"][0]["this_node"], true);
    let text = {
        let out = Command::new(workspace_bin("skyscale"))
            .args(["cluster", "status"])
            .env("SKYSCALE_ENDPOINT", &api.address)
            .env("SKYSCALE_API_KEY", ADMIN_KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        text.contains("worker-1") && text.contains("worker-2"),
        "{text}"
    );
    assert!(
        text.contains(&a1.to_string()) && text.contains("api-1 (this)"),
        "{text}"
    );
    let metrics = http.get("/metrics");
    let metrics = String::from_utf8(metrics.body).unwrap();
    assert!(
        metrics.contains(&format!("skyscale_cluster_routed_total{{worker=\"{a2}\"}}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("skyscale_cluster_worker_live{"),
        "{metrics}"
    );
}

/// Sends a raw HTTP/1.1 request and returns the status code.
fn raw_status(addr: SocketAddr, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

#[test]
fn a_worker_answers_only_the_cluster_and_only_on_its_address() {
    let dir = Shared::new();
    // The database is made (migrated) by an API node first.
    let api = Node::api(&dir, "api-1");
    let addr = free_addr("127.0.0.2");
    let worker = Node::worker(&dir, "worker-1", addr);
    let post = |auth: Option<&str>, path: &str| {
        let auth = auth
            .map(|a| format!("authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\n{auth}content-length: 4\r\nconnection: close\r\n\r\n\0\0\0\0"
        )
    };
    assert_eq!(raw_status(addr, &post(None, "/cluster/v1/invoke")), 401);
    let wrong = format!("Cluster {}x", &SECRET[..SECRET.len() - 1]);
    assert_eq!(
        raw_status(addr, &post(Some(&wrong), "/cluster/v1/invoke")),
        401
    );
    let short = format!("Cluster {}", &SECRET[..SECRET.len() - 1]);
    assert_eq!(
        raw_status(addr, &post(Some(&short), "/cluster/v1/invoke")),
        401
    );
    let bearer = format!("Bearer {ADMIN_KEY}");
    assert_eq!(
        raw_status(addr, &post(Some(&bearer), "/cluster/v1/invoke")),
        401
    );
    // With the secret, a malformed body is refused before anything runs.
    let right = format!("Cluster {SECRET}");
    assert_eq!(
        raw_status(addr, &post(Some(&right), "/cluster/v1/invoke")),
        400
    );
    // No public API on a worker.
    assert_eq!(raw_status(addr, &post(Some(&right), "/v1/functions")), 404);
    assert_eq!(
        raw_status(
            addr,
            "GET /v1/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        ),
        404
    );
    // Bound to its address only: the same port on another loopback address is closed.
    let other: SocketAddr = format!("127.0.0.1:{}", addr.port()).parse().unwrap();
    let refused = TcpStream::connect_timeout(&other, Duration::from_secs(2));
    assert!(refused.is_err(), "the worker answers on {other}");
    wait_until(
        Duration::from_secs(10),
        "the worker to register",
        &[&worker],
        || worker.log().contains("worker registered"),
    );
    drop(api);
}

#[test]
fn reserved_concurrency_holds_across_api_nodes() {
    let dir = Shared::new();
    let api1 = Node::api(&dir, "api-1");
    let a1 = free_addr("127.0.0.2");
    let a2 = free_addr("127.0.0.3");
    let w1 = Node::worker(&dir, "worker-1", a1);
    let w2 = Node::worker(&dir, "worker-2", a2);
    let http1 = api1.http();
    let r = create_fn(&http1, "one", WHO, json!({"runtime": runtime()}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = http1.send(
        "PUT",
        "/v1/functions/one/concurrency",
        Some(br#"{"reserved_concurrency": 1}"#.to_vec()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Provisioned concurrency is refused on a cluster, by name, rather than stored and
    // never provisioned (docs/cluster.md).
    let r = http1.post_json("/v1/functions/one/versions", &json!({}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = http1.send(
        "PUT",
        "/v1/functions/one/provisioned/1",
        Some(br#"{"requested": 1}"#.to_vec()),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.error_message()
            .contains("not supported on a cluster (SKYSCALE_ROLE=api)"),
        "{}",
        r.error_message()
    );
    assert_eq!(r.error_code(), "unsupported");
    // The second API node starts after the change (caches across nodes are not this
    // test's subject).
    let api2 = Node::api(&dir, "api-2");
    wait_routable(&api1, 2, &[&api1, &w1, &w2]);
    wait_routable(&api2, 2, &[&api2, &w1, &w2]);
    assert_eq!(cluster(&api2)["api_nodes"].as_array().unwrap().len(), 2);

    let bases = [api1.address.clone(), api2.address.clone()];
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let base = bases[i % 2].clone();
            std::thread::spawn(move || {
                let http = Http {
                    base,
                    key: Some(ADMIN_KEY.to_owned()),
                    client: reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()
                        .unwrap(),
                };
                let mut ran = Vec::new();
                let mut throttled = 0;
                for _ in 0..6 {
                    let r = http.invoke("one", r#"{"sleep": 0.15}"#);
                    match r.status {
                        200 => {
                            let v = r.json();
                            ran.push((
                                v["start"].as_f64().unwrap(),
                                v["end"].as_f64().unwrap(),
                                v["worker"].as_u64().unwrap(),
                            ));
                        }
                        429 => throttled += 1,
                        s => panic!("{s}: {}", String::from_utf8_lossy(&r.body)),
                    }
                }
                (ran, throttled)
            })
        })
        .collect();
    let mut ran = Vec::new();
    let mut throttled = 0;
    for t in threads {
        let (r, n) = t.join().unwrap();
        ran.extend(r);
        throttled += n;
    }
    assert!(ran.len() >= 2, "{ran:?}");
    assert!(throttled > 0, "36 overlapping calls, none throttled");
    // One worker ran them all, one at a time.
    assert!(ran.iter().all(|r| r.2 == ran[0].2), "{ran:?}");
    ran.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in ran.windows(2) {
        assert!(w[1].0 >= w[0].1, "overlap: {:?} and {:?}", w[0], w[1]);
    }

    // Its home killed: the function is refused (503, retryable) until the lease ran out,
    // then runs on the other worker, within the lease and a refresh.
    let home = ran[0].2 as u32;
    let (mut victim, survivor) = if home == w1.pid() { (w1, w2) } else { (w2, w1) };
    let killed_at = Instant::now();
    victim.kill();
    answers_from_after_a_kill(&http1, "one", survivor.pid(), killed_at);
    let took = killed_at.elapsed();
    assert!(took < Duration::from_millis(5500), "{took:?}");
    drop(api2);
}

fn refused(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyscale-control-plane"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DB_PATH", dir.path().join("skyscale.db"))
        .env("SKYSCALE_AGENT_PATH", workspace_bin("skyscale-agent"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{env:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cluster_settings_are_checked_by_name() {
    let ok_listen = "127.0.0.2:7071";
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("SKYSCALE_ROLE", "leader")],
            "SKYSCALE_ROLE=\"leader\" is invalid",
        ),
        (
            &[("SKYSCALE_ROLE", "api")],
            "SKYSCALE_CLUSTER_SECRET is required",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "api"),
                ("SKYSCALE_CLUSTER_SECRET", SECRET),
            ],
            "SKYSCALE_ROLE=api needs SKYSCALE_DATABASE_URL",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "worker"),
                ("SKYSCALE_CLUSTER_SECRET", "short"),
            ],
            "SKYSCALE_CLUSTER_SECRET is invalid",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "worker"),
                ("SKYSCALE_CLUSTER_SECRET", SECRET),
            ],
            "SKYSCALE_WORKER_LISTEN is required",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "worker"),
                ("SKYSCALE_CLUSTER_SECRET", SECRET),
                ("SKYSCALE_WORKER_LISTEN", "0.0.0.0:7071"),
            ],
            "SKYSCALE_WORKER_LISTEN=\"0.0.0.0:7071\" is invalid",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "worker"),
                ("SKYSCALE_CLUSTER_SECRET", SECRET),
                ("SKYSCALE_WORKER_LISTEN", "[::]:7071"),
            ],
            "SKYSCALE_WORKER_LISTEN=\"[::]:7071\" is invalid",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "worker"),
                ("SKYSCALE_CLUSTER_SECRET", SECRET),
                ("SKYSCALE_WORKER_LISTEN", "127.0.0.2:0"),
            ],
            "SKYSCALE_WORKER_LISTEN=\"127.0.0.2:0\" is invalid: port 0",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "worker"),
                ("SKYSCALE_CLUSTER_SECRET", SECRET),
                ("SKYSCALE_WORKER_LISTEN", "localhost"),
            ],
            "SKYSCALE_WORKER_LISTEN=\"localhost\" is invalid",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "api"),
                ("SKYSCALE_CLUSTER_SECRET", SECRET),
                ("SKYSCALE_WORKER_LISTEN", ok_listen),
            ],
            "SKYSCALE_WORKER_LISTEN=\"127.0.0.2:7071\" is set but SKYSCALE_ROLE=api",
        ),
        (
            &[("SKYSCALE_CLUSTER_SECRET", SECRET)],
            "SKYSCALE_CLUSTER_SECRET is set but SKYSCALE_ROLE=all",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "api"),
                ("SKYSCALE_CLUSTER_SECRET", SECRET),
                ("SKYSCALE_WORKER_LEASE", "5s"),
            ],
            "SKYSCALE_WORKER_LEASE=\"5s\" is set but SKYSCALE_ROLE=api",
        ),
        (
            &[
                ("SKYSCALE_ROLE", "worker"),
                ("SKYSCALE_CLUSTER_SECRET", SECRET),
                ("SKYSCALE_WORKER_LISTEN", ok_listen),
                ("SKYSCALE_WORKER_LEASE", "500ms"),
            ],
            "SKYSCALE_WORKER_LEASE=500ms is invalid",
        ),
    ];
    for (env, needle) in cases {
        let err = refused(env);
        assert!(err.contains(needle), "{env:?}: {err}");
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A worker cut off (SIGSTOP: it neither renews nor answers) loses its work within the
/// lease and a refresh: the invocation it holds fails retryably instead of hanging, new ones
/// go to the other worker. When it comes back it has fenced itself (its sandboxes destroyed)
/// and registers again under a new generation.
#[test]
fn a_cut_off_worker_is_fenced_and_comes_back_with_a_new_generation() {
    let dir = Shared::new();
    let api = Node::api(&dir, "api-1");
    let a1 = free_addr("127.0.0.2");
    let a2 = free_addr("127.0.0.3");
    let w1 = Node::worker(&dir, "worker-1", a1);
    let w2 = Node::worker(&dir, "worker-2", a2);
    wait_routable(&api, 2, &[&api, &w1, &w2]);
    let http = api.http();
    let r = create_fn(
        &http,
        "slow",
        WHO,
        json!({"runtime": runtime(), "timeout_s": 30}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let home = ran_on(&http.invoke("slow", "{}"));
    let (cut, other) = if home == w1.pid() {
        (&w1, &w2)
    } else {
        (&w2, &w1)
    };
    let cut_addr = if home == w1.pid() { a1 } else { a2 };
    let gen_before = live_workers(&api)
        .iter()
        .find(|w| w["address"] == cut_addr.to_string())
        .unwrap()["generation"]
        .as_u64()
        .unwrap();

    let base = api.address.clone();
    let held = std::thread::spawn(move || {
        let http = Http {
            base,
            key: Some(ADMIN_KEY.to_owned()),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        let started = Instant::now();
        let r = http.invoke("slow", r#"{"sleep": 3}"#);
        (
            r.status,
            started.elapsed(),
            String::from_utf8_lossy(&r.body).into_owned(),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let stopped_at = Instant::now();
    signal(cut.pid(), "-STOP");
    // New invocations reach the other worker once the lease ran out.
    loop {
        let r = http.invoke("slow", "{}");
        if r.status == 200 {
            assert_eq!(ran_on(&r), other.pid());
            break;
        }
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert!(stopped_at.elapsed() < Duration::from_secs(8));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, took, body) = held.join().unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        took < Duration::from_secs(6),
        "the held invocation took {took:?}"
    );
    assert!(stopped_at.elapsed() < Duration::from_secs(8));

    signal(cut.pid(), "-CONT");
    wait_until(
        Duration::from_secs(15),
        "the cut-off worker to come back under a new generation",
        &[&api, cut],
        || {
            live_workers(&api).iter().any(|w| {
                w["address"] == cut_addr.to_string()
                    && w["generation"].as_u64().unwrap() > gen_before
            })
        },
    );
    assert!(
        cut.log().contains("worker fenced"),
        "{}",
        common::tail(&cut.log(), 30)
    );
    let metrics = String::from_utf8(http.get("/metrics").body).unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("skyscale_cluster_stale_results_refused_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 1, "{metrics}");
}

/// A reserved function's home is held by the worker that first ran it: a worker joining
/// (even one that outranks it in the rendezvous order) does not take it while its holder
/// lives, so the reservation never has two schedulers. When the holder dies, the home moves.
#[test]
fn reserved_homes_stay_when_a_worker_joins() {
    let dir = Shared::new();
    let api = Node::api(&dir, "api-1");
    let a1 = free_addr("127.0.0.2");
    let a2 = free_addr("127.0.0.3");
    let mut w1 = Node::worker(&dir, "worker-1", a1);
    wait_routable(&api, 1, &[&api, &w1]);
    let http = api.http();
    let names = ["r1", "r2", "r3", "r4", "r5", "r6"];
    for name in names {
        let r = create_fn(&http, name, WHO, json!({"runtime": runtime()}));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let r = http.send(
            "PUT",
            &format!("/v1/functions/{name}/concurrency"),
            Some(br#"{"reserved_concurrency": 2}"#.to_vec()),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let r = http.invoke(name, "{}");
        assert_eq!(
            r.status,
            200,
            "{}\n{}\n{}",
            String::from_utf8_lossy(&r.body),
            common::tail(&api.log(), 20),
            common::tail(&w1.log(), 20)
        );
        assert_eq!(ran_on(&r), w1.pid());
    }
    let w2 = Node::worker(&dir, "worker-2", a2);
    wait_routable(&api, 2, &[&api, &w1, &w2]);
    for name in names {
        for _ in 0..2 {
            assert_eq!(ran_on(&http.invoke(name, "{}")), w1.pid(), "{name} moved");
        }
    }
    // Unreserved functions do use the new worker (rendezvous spreads them).
    let mut used = std::collections::BTreeSet::new();
    for i in 0..8 {
        let name = format!("u{i}");
        let r = create_fn(&http, &name, WHO, json!({"runtime": runtime()}));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        used.insert(ran_on(&http.invoke(&name, "{}")));
    }
    assert_eq!(used.len(), 2, "8 functions all on one worker: {used:?}");
    // The holder dies: every home moves to the survivor within the lease and a refresh.
    let killed_at = Instant::now();
    w1.kill();
    for name in names {
        answers_from_after_a_kill(&http, name, w2.pid(), killed_at);
    }
}

/// A single node (`SKYSCALE_ROLE=all`) has no cluster: `cluster status` says so, and it is
/// an admin's read like the rest of it.
#[test]
fn a_single_node_says_it_is_one() {
    let server = common::Server::start(common::API_DRIVER);
    let out = server.cli_ok(&["cluster", "status"]);
    assert!(out.contains("single node"), "{out}");
    let status = server.http().get("/v1/cluster");
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["role"], "all");
    assert_eq!(status.json()["workers"], json!([]));
    // A developer key may not read it.
    let dev = server.http().post_json(
        "/v1/keys",
        &json!({"role": "developer", "description": "dev"}),
    );
    assert_eq!(dev.status, 201, "{}", String::from_utf8_lossy(&dev.body));
    let token = dev.json()["key"].as_str().unwrap().to_owned();
    let refused = server.http().with_key(&token).get("/v1/cluster");
    assert_eq!(
        refused.status,
        403,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
}

/// A key made through one API node signs AWS requests to another: the API nodes share the
/// server key that seals key secrets (derived from the cluster secret), checked with boto3.
#[test]
fn a_key_made_on_one_api_node_signs_requests_to_another() {
    let dir = Shared::new();
    let api1 = Node::api(&dir, "api-1");
    let api2 = Node::api(&dir, "api-2");
    let r = api1
        .http()
        .post_json("/v1/keys", &json!({"role": "developer"}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let token = r.json()["key"].as_str().unwrap().to_owned();
    let (id, secret) = token.split_once('.').unwrap();
    let script = r#"
import sys, boto3
from botocore.config import Config
c = boto3.client("lambda", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                 config=Config(retries={"max_attempts": 1}))
print(len(c.list_functions()["Functions"]))
"#;
    // The key is seen by the second node within the coherence bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new(common::test_python())
            .args(["-c", script, &api2.address, id, secret])
            .output()
            .unwrap();
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "boto3 against api-2 with a key made on api-1 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An API node has no sandboxes: `skyscale function deploy` with a `requirements.txt`
/// through it has a worker (here on runc) run pip, pip's lines streaming back through both,
/// and the API node publishes the layer; the function then runs on the worker with it. The
/// same requirements for another function reuse the layer; pip's error comes back as it is.
#[test]
fn requirements_are_built_on_a_worker_through_an_api_node() {
    let dir = Shared::new();
    let api = Node::api(&dir, "api-1");
    let w = Node::spawn(
        &dir,
        "worker-1",
        &[
            ("SKYSCALE_ROLE", "worker".into()),
            ("SKYSCALE_WORKER_LISTEN", free_addr("127.0.0.2").to_string()),
            ("SKYSCALE_DRIVER", "runc".into()),
        ],
    );
    wait_routable(&api, 1, &[&api, &w]);
    let http = api.http();
    let plain = "def handler(event, context):\n    return 'plain'\n";
    for name in ["deps", "deps2"] {
        assert_eq!(create_fn(&http, name, plain, json!({})).status, 201);
    }
    let cli = |args: &[&str]| {
        Command::new(workspace_bin("skyscale"))
            .args(args)
            .env("SKYSCALE_ENDPOINT", &api.address)
            .env("SKYSCALE_API_KEY", ADMIN_KEY)
            .output()
            .unwrap()
    };
    let code = tempfile::tempdir().unwrap();
    std::fs::write(
        code.path().join("handler.py"),
        "import six\n\ndef handler(event, context):\n    return f'six {six.__version__} from {six.__file__}'\n",
    )
    .unwrap();
    std::fs::write(code.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
    let path = code.path().to_str().unwrap();
    let out = cli(&["function", "deploy", "--name", "deps", "--path", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}\n{}", w.log());
    assert!(
        err.contains("Successfully installed six-1.16.0") && err.contains("published layer"),
        "{err}"
    );
    let r = http.invoke("deps", "{}");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!("six 1.16.0 from /opt/python/six.py"),
        "the layer the worker built"
    );

    let out = cli(&["function", "deploy", "--name", "deps2", "--path", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("reusing layer"), "{err}");

    std::fs::write(
        code.path().join("requirements.txt"),
        "skyscale-no-such-package-for-tests==0.0.1\n",
    )
    .unwrap();
    let out = cli(&["function", "deploy", "--name", "deps", "--path", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("No matching distribution found for skyscale-no-such-package-for-tests"),
        "{err}"
    );
    let r = http.invoke("deps", "{}");
    assert_eq!(r.json(), json!("six 1.16.0 from /opt/python/six.py"));
}
