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

/// One process of the cluster. Dropping it kills it (SIGKILL).
struct Node {
    child: Option<Child>,
    /// `http://ip:port` of an API node, `ip:port` of a worker.
    address: String,
    log: PathBuf,
}

impl Node {
    fn spawn(dir: &Path, name: &str, env: &[(&str, String)]) -> Node {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyscale-control-plane"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DB_PATH", dir.join("skyscale.db"))
            .env("SKYSCALE_DATA_DIR", dir.join("data"))
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
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("skyscale-control-plane listening on ") {
                        return Node {
                            child: Some(child),
                            address: url.trim().to_owned(),
                            log,
                        };
                    }
                    if let Some(url) =
                        line.strip_prefix("skyscale-control-plane worker listening on http://")
                    {
                        return Node {
                            child: Some(child),
                            address: url.trim().to_owned(),
                            log,
                        };
                    }
                }
                Err(_) => panic!(
                    "{name} did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
    }

    fn api(dir: &Path, name: &str) -> Node {
        Node::spawn(
            dir,
            name,
            &[
                ("SKYSCALE_ROLE", "api".into()),
                ("PORT", "0".into()),
                ("SKYSCALE_ADMIN_KEY", ADMIN_KEY.into()),
            ],
        )
    }

    fn worker(dir: &Path, name: &str, listen: SocketAddr) -> Node {
        Node::spawn(
            dir,
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

fn ran_on(r: &common::Resp) -> u32 {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["worker"].as_u64().unwrap() as u32
}

#[test]
fn routed_sticky_and_a_lost_worker_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let api = Node::api(dir.path(), "api-1");
    let a1 = free_addr("127.0.0.2");
    let a2 = free_addr("127.0.0.3");
    let w1 = Node::worker(dir.path(), "worker-1", a1);
    let w2 = Node::worker(dir.path(), "worker-2", a2);
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
    let mut workers = vec![(w1, a1, "worker-1"), (w2, a2, "worker-2")];
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
    workers[v].0 = Node::worker(dir.path(), victim_name, victim_addr);
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
