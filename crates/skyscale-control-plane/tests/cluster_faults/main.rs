//! A Skyscale cluster on one machine, under load and faults: PostgreSQL, two API nodes and
//! three workers, each worker in its own network namespace (its own address, a veth pair on
//! a bridge) and PID namespace, running real runc sandboxes.
//!
//! - `cluster_survives_worker_and_api_node_faults_under_load`: sync invocations of several
//!   functions (one with reserved concurrency 2) through both API nodes and a stream of
//!   async events, for `SKYSCALE_CLUSTER_TEST_SECS` (default 60) seconds, while the test
//!   kills -9 every process of one worker's namespace, takes another worker's link down for
//!   longer than its lease and up again, and kills -9 one API node. Then: every event
//!   accepted with a 202 ran at least once (duplicates counted and printed), sync failures
//!   were retryable (503/429) and only inside a fault's detection window, never a wrong
//!   answer, reserved concurrency never exceeded, and every function answers afterwards.
//! - `key_revocation_reaches_the_other_api_node_within_a_second`: the cross-node cache.
//!
//! Needs root, iproute2, util-linux (nsenter, unshare, setpriv), runc and PostgreSQL
//! (`SKYSCALE_TEST_DATABASE_URL`, which `scripts/test-postgres` prints): any of them missing
//! fails the test with what to do, never skips it. It runs once in CI, alone (see
//! `.config/nextest.toml`).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "../common/mod.rs"]
mod common;
mod load;
mod nodes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{create_fn, Http, ADMIN_KEY};
use load::{Call, Outcome, Shared, Window};
use nodes::Node;
use serde_json::{json, Value};
use skyscale_testnet::{forward, net, pg};

/// The worker lease the cluster runs with (the documented default).
const LEASE: Duration = Duration::from_secs(3);

/// How long after a fault ends failures may still happen: a dead worker stops getting work
/// within lease + 0.5 s (the API nodes' refresh) of its last renewal (docs/cluster.md);
/// 1.5 s more for the renewal that was due and a loaded 2-core machine.
const DETECTION: Duration = Duration::from_secs(5);

/// How long the second worker's link stays down: twice the lease, so that it fences itself
/// and the database lets its lease run out.
const LINK_DOWN: Duration = Duration::from_secs(6);

/// The echo functions: each answers `{"token": <the token sent>, "fn": <its name>}`.
const ECHO_FUNCTIONS: &[&str] = &["echo-a", "echo-b", "echo-c", "echo-d"];

const LIMITED: &str = "limited";
const RESERVED: usize = 2;
const SINK: &str = "sink";

fn echo_source(name: &str) -> String {
    format!("def handler(event, context):\n    return {{\"token\": event[\"token\"], \"fn\": \"{name}\"}}\n")
}

/// Answers when it ran (the host's clock: sandboxes share it), long enough that concurrent
/// calls overlap.
const LIMITED_SOURCE: &str = r#"
import time

def handler(event, context):
    start = time.time()
    time.sleep(0.15)
    return {"token": event["token"], "start": start, "end": time.time()}
"#;

/// The async events' function: what it ran is in its invocation records, by event id.
const SINK_SOURCE: &str = r#"
import time

def handler(event, context):
    time.sleep(0.02)
    return {"seq": event["seq"]}
"#;

/// Fails (never skips) when something the cluster test needs is missing.
fn preflight() {
    skyscale_testnet::require_root("the cluster test (CI runs it as root)").unwrap();
    skyscale_testnet::require_tools(
        "the cluster test",
        &[
            ("ip", "iproute2"),
            ("nsenter", "util-linux"),
            ("unshare", "util-linux"),
            ("setpriv", "util-linux"),
            ("runc", "runc (scripts/install-deps installs it)"),
            (
                "psql",
                "postgresql-client (scripts/test-postgres installs PostgreSQL)",
            ),
        ],
    )
    .unwrap();
}

/// The PostgreSQL server from `SKYSCALE_TEST_DATABASE_URL`; missing is a failure, never a
/// skip.
fn base_url() -> pg::PgUrl {
    let url = std::env::var("SKYSCALE_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| {
            panic!(
                "SKYSCALE_TEST_DATABASE_URL is not set: the cluster tests need PostgreSQL. \
                 Start it with `export SKYSCALE_TEST_DATABASE_URL=$(scripts/test-postgres)` \
                 (scripts/test does), or point it at a server where the user may create \
                 databases"
            )
        });
    pg::PgUrl::parse(&url).unwrap()
}

fn runtime() -> String {
    skyscale_core::Runtimes::discover(Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed")
        .as_str()
        .to_owned()
}

fn http(url: &str) -> Http {
    Http {
        base: url.to_owned(),
        key: Some(ADMIN_KEY.to_owned()),
        client: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    }
}

/// A secret every node of one run shares.
fn cluster_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// PostgreSQL, the network, and the nodes. Fields drop in order: the nodes stop before the
/// database is dropped and the network deleted. On a failure, the tail of every node's
/// output is printed.
struct Cluster {
    workers: Vec<Node>,
    apis: Vec<Node>,
    _forwarder: Option<forward::Forwarder>,
    db: pg::Database,
    network: Option<net::Network>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in self.apis.iter().chain(&self.workers) {
                eprintln!("{}", n.tails(40));
            }
        }
    }
}

/// Settings of the API nodes: short async leases and backoffs, so that the events of a
/// killed API node run again within the test.
fn api_env(db: &pg::PgUrl, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SKYSCALE_DATABASE_URL", db.to_string()),
        ("SKYSCALE_CLUSTER_SECRET", secret.to_owned()),
        ("SKYSCALE_ASYNC_LEASE", "3s".into()),
        ("SKYSCALE_ASYNC_RETRY_BACKOFF", "200ms".into()),
        ("SKYSCALE_ASYNC_THROTTLE_BACKOFF", "100ms".into()),
        ("SKYSCALE_ASYNC_MAX_THROTTLE_BACKOFF", "500ms".into()),
        ("SKYSCALE_SHUTDOWN_GRACE", "5s".into()),
    ]
}

impl Cluster {
    /// PostgreSQL's database and `api` API nodes; with `workers` workers, the network, the
    /// forwarder and the workers too, and waits until every worker is live.
    fn start(run: u32, apis: usize, workers: usize) -> Cluster {
        preflight();
        let base = base_url();
        let db = pg::Database::create(&base, "skyscale_ctest", run).unwrap();
        let secret = cluster_secret();
        let mut cluster = Cluster {
            workers: Vec::new(),
            apis: Vec::new(),
            _forwarder: None,
            db,
            network: None,
        };
        for i in 1..=apis {
            let env = api_env(&cluster.db.url, &secret);
            cluster.apis.push(Node::api(&format!("api-{i}"), &env));
        }
        if workers == 0 {
            return cluster;
        }
        let network = net::Network::create(workers).unwrap();
        let forwarder = forward::Forwarder::start(
            SocketAddr::new(network.host.into(), 0),
            base.socket_addr().unwrap(),
        )
        .unwrap();
        let worker_db = cluster.db.url.via(forwarder.addr);
        for (i, ns) in network.namespaces.iter().enumerate() {
            let env = vec![
                ("SKYSCALE_DATABASE_URL", worker_db.to_string()),
                ("SKYSCALE_CLUSTER_SECRET", secret.clone()),
                ("SKYSCALE_WORKER_LISTEN", format!("{}:7100", ns.addr)),
                ("SKYSCALE_DRIVER", "runc".into()),
                ("WARM_POOL_SIZE", "1".into()),
                ("SKYSCALE_SHUTDOWN_GRACE", "5s".into()),
            ];
            cluster
                .workers
                .push(Node::worker(&format!("worker-{}", i + 1), &ns.name, &env));
        }
        cluster._forwarder = Some(forwarder);
        cluster.network = Some(network);
        let api = cluster.api(0);
        cluster.wait("every worker to be live", Duration::from_secs(90), || {
            let live = live_workers(&api);
            (live.len() == workers).then_some(())
        });
        // And in every API node's routing snapshot (refreshed every 500 ms).
        for i in 0..cluster.apis.len() {
            let api = cluster.api(i);
            cluster.wait(
                &format!("api-{} to route to every worker", i + 1),
                Duration::from_secs(10),
                || (routable_workers(&api) == workers).then_some(()),
            );
        }
        cluster
    }

    fn api(&self, i: usize) -> Http {
        http(self.apis[i].url())
    }

    fn network(&self) -> &net::Network {
        self.network.as_ref().unwrap()
    }

    /// Polls `f` every 100 ms until it gives a value; past `within`, fails with `what`.
    fn wait<T>(&self, what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out ({within:?}) waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `GET /v1/cluster` (admin).
fn cluster_view(api: &Http) -> Value {
    let r = api.get("/v1/cluster");
    assert_eq!(
        r.status,
        200,
        "GET /v1/cluster: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// The live workers by name, with their generation.
fn live_workers(api: &Http) -> BTreeMap<String, u64> {
    let view = cluster_view(api);
    view["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers list in GET /v1/cluster: {view}"))
        .iter()
        .filter(|w| w["live"] == true)
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_owned(),
                w["generation"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// How many workers an API node routes to (`skyscale_cluster_worker_live` of its
/// `/metrics`: its own snapshot, not the database's view).
fn routable_workers(api: &Http) -> usize {
    let r = api.get("/metrics");
    assert_eq!(r.status, 200);
    String::from_utf8_lossy(&r.body)
        .lines()
        .filter(|l| l.starts_with("skyscale_cluster_worker_live{") && l.ends_with(" 1"))
        .count()
}

/// The sum over the API nodes' `/metrics` of the series whose name and labels are `series`
/// (`skyscale_cluster_stale_results_refused_total`, `..._spills_total{worker="..."}`).
fn series_sum(apis: &[&Http], series: &str) -> f64 {
    apis.iter()
        .map(|api| {
            let r = api.get("/metrics");
            assert_eq!(r.status, 200);
            String::from_utf8_lossy(&r.body)
                .lines()
                .filter_map(|l| l.strip_prefix(series))
                .filter_map(|rest| rest.strip_prefix(' '))
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

/// An un-labelled counter, summed over the API nodes.
fn counter(apis: &[&Http], name: &str) -> f64 {
    series_sum(apis, name)
}

/// A per-worker counter (`worker="<address>"`), summed over the API nodes.
fn worker_counter(apis: &[&Http], name: &str, address: &str) -> f64 {
    series_sum(apis, &format!("{name}{{worker=\"{address}\"}}"))
}

/// The workers' addresses by name, from `GET /v1/cluster`.
fn worker_addresses(api: &Http) -> BTreeMap<String, String> {
    cluster_view(api)["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_owned(),
                w["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Successful runs per event id, from the function's invocation records (the records are in
/// the shared database: any API node lists every node's).
fn event_successes(api: &Http, function: &str) -> BTreeMap<String, usize> {
    let r = api.get(&format!("/v1/functions/{function}/invocations?limit=10000"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let mut by_event = BTreeMap::new();
    for rec in r.json()["invocations"].as_array().unwrap() {
        if rec["status"] == "success" {
            if let Some(id) = rec["event_id"].as_str() {
                *by_event.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
    }
    by_event
}

/// Events of `function` still queued or running (`GET /v1/functions/<f>/events`).
fn queued_events(api: &Http, function: &str) -> usize {
    let r = api.get(&format!("/v1/functions/{function}/events"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["events"].as_array().unwrap().len()
}

fn test_secs() -> u64 {
    std::env::var("SKYSCALE_CLUSTER_TEST_SECS")
        .ok()
        .map(|s| {
            s.parse().unwrap_or_else(|_| {
                panic!("SKYSCALE_CLUSTER_TEST_SECS={s:?} is not a number of seconds")
            })
        })
        .unwrap_or(60)
}

#[test]
fn cluster_survives_worker_and_api_node_faults_under_load() {
    let secs = test_secs();
    assert!(
        secs >= 30,
        "SKYSCALE_CLUSTER_TEST_SECS={secs}: at least 30 seconds leave room for the three faults"
    );
    let total = Duration::from_secs(secs);
    let mut cluster = Cluster::start(1, 2, 3);
    let api1 = cluster.api(0);
    let runtime = runtime();

    // The functions, created through API node 1 and used through both.
    for name in ECHO_FUNCTIONS {
        let r = create_fn(&api1, name, &echo_source(name), json!({"runtime": runtime}));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = create_fn(&api1, LIMITED, LIMITED_SOURCE, json!({"runtime": runtime}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = api1.send(
        "PUT",
        &format!("/v1/functions/{LIMITED}/concurrency"),
        Some(
            json!({"reserved_concurrency": RESERVED})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = create_fn(&api1, SINK, SINK_SOURCE, json!({"runtime": runtime}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Cold starts before the clock starts: every function answers through both nodes.
    for i in 0..2 {
        let api = cluster.api(i);
        for name in ECHO_FUNCTIONS {
            let r = api.invoke(name, r#"{"token": "warm"}"#);
            assert_eq!(
                (r.status, r.json()),
                (200, json!({"token": "warm", "fn": name})),
                "{name} through api-{}",
                i + 1
            );
        }
        let r = api.invoke(LIMITED, r#"{"token": "warm"}"#);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    // The load.
    let urls: Vec<String> = cluster.apis.iter().map(|n| n.url().to_owned()).collect();
    let shared = Shared::new(urls);
    let echo: Vec<String> = ECHO_FUNCTIONS.iter().map(|s| s.to_string()).collect();
    let mut threads = Vec::new();
    for id in 0..4 {
        let (s, f) = (shared.clone(), echo.clone());
        threads.push(std::thread::spawn(move || {
            load::echo_client(s, f, id, Duration::from_millis(20))
        }));
    }
    for id in 0..3 {
        let s = shared.clone();
        threads.push(std::thread::spawn(move || {
            load::limited_client(s, LIMITED.into(), id, Duration::from_millis(30))
        }));
    }
    {
        let s = shared.clone();
        threads.push(std::thread::spawn(move || {
            load::event_client(s, SINK.into(), Duration::from_millis(40))
        }));
    }

    let at = |fraction: f64| total.mul_f64(fraction);
    let sleep_until = |t: Duration| {
        let now = shared.now();
        if t > now {
            std::thread::sleep(t - now);
        }
    };
    let mut windows: Vec<Window> = Vec::new();

    // Fault 1: kill -9 every process of worker 1's namespace.
    sleep_until(at(0.2));
    let from = shared.now();
    cluster.workers[0].kill9();
    eprintln!("{from:?}: killed -9 worker-1's PID namespace");
    windows.push(Window {
        what: "kill -9 of worker-1".into(),
        from,
        until: shared.now() + DETECTION,
    });
    let api_https: Vec<Http> = (0..2).map(|i| cluster.api(i)).collect();
    let api_https: Vec<&Http> = api_https.iter().collect();
    cluster.wait("worker-1's lease to run out", LEASE + DETECTION, || {
        (!live_workers(&api1).contains_key("worker-1")).then_some(())
    });
    eprintln!("{:?}: worker-1 is no longer live", shared.now());

    // Fault 2: the link of the busier surviving worker (by what the API nodes routed to it
    // over the last 2 s) down for longer than its lease, then up: it must fence itself, come
    // back under a new generation, and none of its answers may be taken meanwhile.
    sleep_until(at(0.4) - Duration::from_secs(2));
    let addresses = worker_addresses(&api1);
    let routed = |name: &str| {
        worker_counter(
            &api_https,
            "skyscale_cluster_routed_total",
            &addresses[name],
        )
    };
    let early: Vec<f64> = ["worker-2", "worker-3"].iter().map(|w| routed(w)).collect();
    sleep_until(at(0.4));
    let late: Vec<f64> = ["worker-2", "worker-3"].iter().map(|w| routed(w)).collect();
    let cut = if late[0] - early[0] >= late[1] - early[1] {
        2
    } else {
        3
    };
    let cut_name = format!("worker-{cut}");
    eprintln!(
        "routed over 2 s: worker-2 {}, worker-3 {}: cutting {cut_name} off",
        late[0] - early[0],
        late[1] - early[1]
    );
    let before = live_workers(&api1);
    let generation = *before
        .get(&cut_name)
        .unwrap_or_else(|| panic!("{cut_name} is not live before its link goes down: {before:?}"));
    let refused_before = counter(&api_https, "skyscale_cluster_stale_results_refused_total");
    let spills_before = worker_counter(
        &api_https,
        "skyscale_cluster_spills_total",
        &addresses[&cut_name],
    );
    let from = shared.now();
    cluster.network().set_link(cut, false).unwrap();
    eprintln!("{from:?}: {cut_name}'s link is down");
    std::thread::sleep(LINK_DOWN);
    cluster.network().set_link(cut, true).unwrap();
    let up = shared.now();
    eprintln!("{up:?}: {cut_name}'s link is up");
    windows.push(Window {
        what: format!("{cut_name}'s link down"),
        from,
        until: up + DETECTION,
    });
    let new_generation = cluster.wait(
        &format!("{cut_name} to be live again under a new generation"),
        Duration::from_secs(15),
        || {
            live_workers(&api1)
                .get(&cut_name)
                .copied()
                .filter(|g| *g > generation)
        },
    );
    let back = shared.now();
    eprintln!("{back:?}: {cut_name} is live again, generation {generation} -> {new_generation}");
    // Both API nodes route to it again.
    for api in &api_https {
        cluster.wait(
            "the API nodes to route to the worker again",
            Duration::from_secs(5),
            || (routable_workers(api) == 2).then_some(()),
        );
    }
    // What the API nodes did with the calls routed to it: read from api-2 before it is
    // killed and from api-1 after the load, once every call has ended.
    let stale = |apis: &[&Http]| counter(apis, "skyscale_cluster_stale_results_refused_total");
    let spills = |apis: &[&Http]| {
        worker_counter(apis, "skyscale_cluster_spills_total", &addresses[&cut_name])
    };

    // Fault 3: kill -9 API node 2; the load goes on through API node 1.
    sleep_until(at(0.7));
    let (refused_api2, spilled_api2) = (stale(&api_https[1..]), spills(&api_https[1..]));
    shared.node_down[1].store(true, Ordering::SeqCst);
    let from = shared.now();
    cluster.apis[1].kill9();
    eprintln!("{from:?}: killed -9 api-2");
    windows.push(Window {
        what: "kill -9 of api-2".into(),
        from,
        until: shared.now() + DETECTION,
    });

    sleep_until(total);
    shared.stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let ended = shared.now();
    let calls: Vec<Call> = std::mem::take(&mut *shared.calls.lock().unwrap());

    // Wrong answers: never, fault or not.
    let wrong: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Wrong(_)))
        .collect();
    // Retryable refusals and dead-node errors: only inside a fault's window.
    let outside: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Retryable(..) | Outcome::NodeDown(_)))
        .filter(|c| !windows.iter().any(|w| w.covers(c)))
        .collect();
    let count = |f: &dyn Fn(&Call) -> bool| calls.iter().filter(|c| f(c)).count();
    let sync_ok = count(&|c| c.seq.is_none() && matches!(c.outcome, Outcome::Ok));
    let throttled = count(&|c| matches!(c.outcome, Outcome::Throttled));
    let retryable = count(&|c| matches!(c.outcome, Outcome::Retryable(..)));
    let node_down = count(&|c| matches!(c.outcome, Outcome::NodeDown(_)));
    let in_link_window = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Retryable(503, _)) && windows[1].covers(c))
        .count();
    let windows_text = windows
        .iter()
        .map(Window::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    eprintln!(
        "load: {} calls in {ended:?}: {sync_ok} sync answers right, {throttled} throttled \
         (reserved concurrency), {retryable} retryable refusals, {node_down} to the killed \
         API node, {} wrong, {} failures outside the fault windows ({windows_text})",
        calls.len(),
        wrong.len(),
        outside.len(),
    );
    let mut by_function: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for c in &calls {
        let slot = match c.outcome {
            Outcome::Ok => 0,
            Outcome::Throttled => 1,
            Outcome::Retryable(..) | Outcome::NodeDown(_) => 2,
            Outcome::Wrong(_) => 3,
        };
        by_function.entry(c.function.as_str()).or_default()[slot] += 1;
    }
    for (f, [ok, throttled, retryable, wrong]) in &by_function {
        eprintln!("  {f}: {ok} ok, {throttled} throttled, {retryable} retryable, {wrong} wrong");
    }
    let first = |list: &[&Call]| {
        list.iter()
            .take(8)
            .map(|c| c.describe())
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    assert!(
        wrong.is_empty(),
        "{} calls got a wrong answer, first:\n  {}",
        wrong.len(),
        first(&wrong)
    );
    assert!(
        outside.is_empty(),
        "{} failures outside the fault windows ({windows_text}), first:\n  {}",
        outside.len(),
        first(&outside)
    );
    assert!(
        sync_ok > 100,
        "the load hardly ran: {sync_ok} sync successes"
    );

    let refused = stale(&api_https[..1]) + refused_api2 - refused_before;
    let spilled = spills(&api_https[..1]) + spilled_api2 - spills_before;
    let slow: Vec<&Call> = calls
        .iter()
        .filter(|c| windows[1].covers(c) && c.end - c.start > Duration::from_secs(1))
        .collect();
    eprintln!(
        "{} calls took more than 1 s in {cut_name}'s window: {}",
        slow.len(),
        slow.iter()
            .take(6)
            .map(|c| c.describe())
            .collect::<Vec<_>>()
            .join("; ")
    );
    // The calls routed to the cut-off worker were not answered by it: they went on to another
    // worker (unreachable, or fenced: `spills`), were refused as stale, or were answered 503.
    eprintln!(
        "{cut_name}'s link down: {spilled} calls moved to another worker, {refused} stale \
         results refused, {in_link_window} calls answered 503 in its window"
    );
    assert!(
        spilled > 0.0 || refused > 0.0 || in_link_window > 0,
        "{cut_name} lost its link under load, yet no call routed to it moved to another worker, \
         was refused as stale or was answered 503"
    );

    // Reserved concurrency, from when the handler really ran.
    let ran: Vec<(f64, f64)> = calls.iter().filter_map(|c| c.ran).collect();
    let overlap = load::max_overlap(&ran);
    eprintln!(
        "{LIMITED}: {} successful runs, at most {overlap} at once (reserved {RESERVED})",
        ran.len()
    );
    assert!(ran.len() > 10, "{LIMITED} hardly ran: {}", ran.len());
    assert!(
        overlap <= RESERVED,
        "{LIMITED} ran {overlap} at once with reserved concurrency {RESERVED}"
    );

    // Every event accepted with a 202 ran at least once.
    let accepted: Vec<&str> = calls.iter().filter_map(|c| c.event_id.as_deref()).collect();
    assert!(
        accepted.len() > 50,
        "few events accepted: {}",
        accepted.len()
    );
    let drain = Instant::now();
    let successes = cluster.wait(
        "every accepted event to run",
        Duration::from_secs(60),
        || {
            let s = event_successes(&api1, SINK);
            (queued_events(&api1, SINK) == 0 && accepted.iter().all(|id| s.contains_key(*id)))
                .then_some(s)
        },
    );
    let twice: Vec<(&String, &usize)> = successes.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "events: {} accepted, all ran (queue drained {:?} after the load); {} ran more than \
         once: {twice:?}",
        accepted.len(),
        drain.elapsed(),
        twice.len()
    );

    // After the faults: worker-1 is gone, worker-2 and worker-3 live, and every function
    // answers through the surviving API node.
    let live = live_workers(&api1);
    assert_eq!(
        live.keys().map(String::as_str).collect::<Vec<_>>(),
        ["worker-2", "worker-3"],
        "{live:?}"
    );
    for name in ECHO_FUNCTIONS {
        let r = api1.invoke(name, r#"{"token": "after"}"#);
        assert_eq!(
            (r.status, r.json()),
            (200, json!({"token": "after", "fn": name}))
        );
    }
    let r = api1.invoke(LIMITED, r#"{"token": "after"}"#);
    assert_eq!(
        (r.status, r.json()["token"].clone()),
        (200, json!("after")),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = api1.post_json(&format!("/v1/functions/{SINK}/invoke"), &json!({"seq": -1}));
    assert_eq!((r.status, r.json()), (200, json!({"seq": -1})));
}

#[test]
fn key_revocation_reaches_the_other_api_node_within_a_second() {
    let cluster = Cluster::start(2, 2, 0);
    let nodes = [cluster.api(0), cluster.api(1)];
    // Three rounds, revoked on either node and checked on the other.
    for round in 0..3 {
        let (here, there) = (round % 2, 1 - round % 2);
        let r = nodes[here].post_json(
            "/v1/keys",
            &json!({"role": "developer", "functions": ["*"], "description": "cache test"}),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let (id, token) = (
            r.json()["id"].as_str().unwrap().to_owned(),
            r.json()["key"].as_str().unwrap().to_owned(),
        );
        // Usable on the other node within the bound too (no stale "unknown key" there),
        // then used (and so cached) there.
        let user = http(nodes[there].base.as_str()).with_key(&token);
        let created = Instant::now();
        let took = poll_status(&user, 200, created, here, there, "created");
        eprintln!(
            "round {round}: created on api-{}, accepted on api-{} after {took:?}",
            here + 1,
            there + 1
        );
        assert!(
            took <= Duration::from_secs(1),
            "the key created on api-{} was accepted on api-{} only after {took:?} (bound: 1 s)",
            here + 1,
            there + 1
        );
        for _ in 0..3 {
            let r = user.get("/v1/functions");
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        let r = nodes[here].send("DELETE", &format!("/v1/keys/{id}"), None);
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        let revoked = Instant::now();
        // Refused at once where it was revoked.
        let r = http(nodes[here].base.as_str())
            .with_key(&token)
            .get("/v1/functions");
        assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));
        // And on the other node within the bound.
        let took = poll_status(&user, 401, revoked, here, there, "revoked");
        eprintln!(
            "round {round}: revoked on api-{}, refused on api-{} after {took:?}",
            here + 1,
            there + 1
        );
        assert!(
            took <= Duration::from_secs(1),
            "the key revoked on api-{} was refused on api-{} only after {took:?} (bound: 1 s)",
            here + 1,
            there + 1
        );
    }
}

/// Polls `GET /v1/functions` with `user`'s key every 50 ms until it answers `status`
/// (200 or 401, the only answers allowed meanwhile, and 429 while a refused key waits to be
/// accepted: failed authentications are rate limited per address); returns how long after
/// `since`. Fails after 5 s.
fn poll_status(
    user: &Http,
    status: u16,
    since: Instant,
    here: usize,
    there: usize,
    what: &str,
) -> Duration {
    loop {
        let r = user.get("/v1/functions");
        if r.status == status {
            if status == 401 {
                assert_eq!(r.error_code(), "unauthorized");
            }
            return since.elapsed();
        }
        assert!(
            r.status == 200 || r.status == 401 || (status == 200 && r.status == 429),
            "{}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the key {what} on api-{} still answers {} on api-{} after 5 s",
            here + 1,
            r.status,
            there + 1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
