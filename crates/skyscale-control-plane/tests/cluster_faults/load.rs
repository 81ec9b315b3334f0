//! The mixed load: client threads that invoke through the API nodes and write down every
//! call (when it started and ended on the test's clock, which node, what came back), and
//! the checks made over those records afterwards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::ADMIN_KEY;

/// What a call came back with.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 200 with exactly the expected body (or, for the async stream, 202 with an event id).
    Ok,
    /// A 429 of a function with reserved concurrency: its limit at work, not a failure.
    Throttled,
    /// A retryable refusal: 503, or 429 of a function without reserved concurrency.
    Retryable(u16, String),
    /// The API node the call went to was killed by the test (before or during the call).
    NodeDown(String),
    /// Anything else: a wrong body, another status, a transport error of a live node.
    Wrong(String),
}

#[derive(Debug, Clone)]
pub struct Call {
    pub function: String,
    /// 0-based index of the API node.
    pub node: usize,
    /// Since the load's start.
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
    /// For the reserved-concurrency function's successes: when the handler ran (seconds
    /// since the epoch, the host's clock that every sandbox reads).
    pub ran: Option<(f64, f64)>,
    /// For accepted events: the event id.
    pub event_id: Option<String>,
    /// For events: the sequence number sent in the payload.
    pub seq: Option<u64>,
}

/// What every client thread shares.
pub struct Shared {
    pub t0: Instant,
    pub urls: Vec<String>,
    /// Set by the test before it kills API node `i`: clients stop using it.
    pub node_down: Vec<AtomicBool>,
    pub stop: AtomicBool,
    pub calls: Mutex<Vec<Call>>,
    seq: AtomicU64,
}

impl Shared {
    pub fn new(urls: Vec<String>) -> Arc<Shared> {
        Arc::new(Shared {
            t0: Instant::now(),
            node_down: urls.iter().map(|_| AtomicBool::new(false)).collect(),
            urls,
            stop: AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        })
    }

    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// The node for a client's `n`-th call: alternating, skipping nodes that are down.
    fn pick(&self, n: u64) -> usize {
        let count = self.urls.len();
        (0..count)
            .map(|k| (n as usize + k) % count)
            .find(|&i| !self.node_down[i].load(Ordering::SeqCst))
            .expect("an API node is up")
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(2)
        .build()
        .unwrap()
}

/// Classifies a non-success answer.
fn refusal(status: u16, body: &[u8], reserved: bool) -> Outcome {
    let text = String::from_utf8_lossy(body).into_owned();
    match status {
        429 if reserved => Outcome::Throttled,
        429 | 503 => Outcome::Retryable(status, text),
        _ => Outcome::Wrong(format!("status {status}: {text}")),
    }
}

/// A transport error: the node was killed, or a real failure.
fn transport(shared: &Shared, node: usize, e: &reqwest::Error) -> Outcome {
    if shared.node_down[node].load(Ordering::SeqCst) {
        Outcome::NodeDown(e.to_string())
    } else {
        Outcome::Wrong(format!("transport error: {e}"))
    }
}

/// Invokes the echo functions `functions` in turn, synchronously, until told to stop; each
/// call sends a fresh token that the handler must send back with its function's name.
pub fn echo_client(shared: Arc<Shared>, functions: Vec<String>, id: u64, pause: Duration) {
    let http = client();
    let mut n = id;
    while !shared.stop.load(Ordering::SeqCst) {
        let function = functions[(n as usize) % functions.len()].clone();
        let node = shared.pick(n);
        let token = uuid::Uuid::new_v4().to_string();
        let start = shared.now();
        let sent = http
            .post(format!(
                "{}/v1/functions/{function}/invoke",
                shared.urls[node]
            ))
            .bearer_auth(ADMIN_KEY)
            .body(json!({ "token": token }).to_string())
            .send()
            .and_then(|r| {
                let status = r.status().as_u16();
                r.bytes().map(|b| (status, b.to_vec()))
            });
        let outcome = match sent {
            Ok((200, body)) => {
                let expected = json!({ "token": token, "fn": function });
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) if v == expected => Outcome::Ok,
                    _ => Outcome::Wrong(format!(
                        "200 with {} instead of {expected}",
                        String::from_utf8_lossy(&body)
                    )),
                }
            }
            Ok((status, body)) => refusal(status, &body, false),
            Err(e) => transport(&shared, node, &e),
        };
        shared.record(Call {
            function,
            node,
            start,
            end: shared.now(),
            outcome,
            ran: None,
            event_id: None,
            seq: None,
        });
        n += 1;
        std::thread::sleep(pause);
    }
}

/// Invokes the reserved-concurrency function: its handler answers the token and when it
/// started and ended.
pub fn limited_client(shared: Arc<Shared>, function: String, id: u64, pause: Duration) {
    let http = client();
    let mut n = id;
    while !shared.stop.load(Ordering::SeqCst) {
        let node = shared.pick(n);
        let token = uuid::Uuid::new_v4().to_string();
        let start = shared.now();
        let sent = http
            .post(format!(
                "{}/v1/functions/{function}/invoke",
                shared.urls[node]
            ))
            .bearer_auth(ADMIN_KEY)
            .body(json!({ "token": token }).to_string())
            .send()
            .and_then(|r| {
                let status = r.status().as_u16();
                r.bytes().map(|b| (status, b.to_vec()))
            });
        let mut ran = None;
        let outcome = match sent {
            Ok((200, body)) => match serde_json::from_slice::<Value>(&body) {
                Ok(v) if v["token"] == token.as_str() => {
                    match (v["start"].as_f64(), v["end"].as_f64()) {
                        (Some(s), Some(e)) if s <= e => {
                            ran = Some((s, e));
                            Outcome::Ok
                        }
                        _ => Outcome::Wrong(format!("200 without start/end: {v}")),
                    }
                }
                _ => Outcome::Wrong(format!(
                    "200 with {} for token {token}",
                    String::from_utf8_lossy(&body)
                )),
            },
            Ok((status, body)) => refusal(status, &body, true),
            Err(e) => transport(&shared, node, &e),
        };
        shared.record(Call {
            function: function.clone(),
            node,
            start,
            end: shared.now(),
            outcome,
            ran,
            event_id: None,
            seq: None,
        });
        n += 1;
        std::thread::sleep(pause);
    }
}

/// Sends asynchronous invocations (`x-skyscale-invocation-type: Event`) of `function`, one
/// every `every`, each with a sequence number; a 202 gives the event id.
pub fn event_client(shared: Arc<Shared>, function: String, every: Duration) {
    let http = client();
    let mut n: u64 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let node = shared.pick(n);
        let seq = shared.seq.fetch_add(1, Ordering::SeqCst);
        let start = shared.now();
        let sent = http
            .post(format!(
                "{}/v1/functions/{function}/invoke",
                shared.urls[node]
            ))
            .bearer_auth(ADMIN_KEY)
            .header("x-skyscale-invocation-type", "Event")
            .body(json!({ "seq": seq }).to_string())
            .send()
            .and_then(|r| {
                let status = r.status().as_u16();
                r.bytes().map(|b| (status, b.to_vec()))
            });
        let mut event_id = None;
        let outcome = match sent {
            Ok((202, body)) => match serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["event_id"].as_str().map(str::to_owned))
            {
                Some(id) => {
                    event_id = Some(id);
                    Outcome::Ok
                }
                None => Outcome::Wrong(format!(
                    "202 without an event id: {}",
                    String::from_utf8_lossy(&body)
                )),
            },
            Ok((status, body)) => refusal(status, &body, false),
            Err(e) => transport(&shared, node, &e),
        };
        shared.record(Call {
            function: function.clone(),
            node,
            start,
            end: shared.now(),
            outcome,
            ran: None,
            event_id,
            seq: Some(seq),
        });
        n += 1;
        std::thread::sleep(every);
    }
}

impl Call {
    /// One line for a failure message.
    pub fn describe(&self) -> String {
        let what = match &self.outcome {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Throttled => "throttled".to_owned(),
            Outcome::Retryable(status, body) => format!("{status} {body}"),
            Outcome::NodeDown(e) => format!("killed node: {e}"),
            Outcome::Wrong(e) => format!("WRONG: {e}"),
        };
        format!(
            "{} via api-{} [{:?} .. {:?}]: {what}",
            self.function,
            self.node + 1,
            self.start,
            self.end
        )
    }
}

/// The largest number of intervals that overlap at one instant (an end and a start at the
/// same instant do not overlap).
pub fn max_overlap(intervals: &[(f64, f64)]) -> usize {
    let mut points: Vec<(f64, i32)> = intervals
        .iter()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    // Ends before starts at equal times.
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in points {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// A fault the test caused: failures are allowed from `from` to `until` (the fault's end
/// plus the detection bound).
#[derive(Debug, Clone)]
pub struct Window {
    pub what: String,
    pub from: Duration,
    pub until: Duration,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{:?} .. {:?}]", self.what, self.from, self.until)
    }
}

impl Window {
    /// True when the call's span meets the window.
    pub fn covers(&self, call: &Call) -> bool {
        call.end >= self.from && call.start <= self.until
    }
}

#[cfg(test)]
mod tests {
    use super::max_overlap;

    #[test]
    fn overlap_counts_concurrent_intervals() {
        assert_eq!(max_overlap(&[]), 0);
        assert_eq!(max_overlap(&[(0.0, 1.0), (1.0, 2.0)]), 1);
        assert_eq!(max_overlap(&[(0.0, 2.0), (1.0, 3.0), (1.5, 1.6)]), 3);
        assert_eq!(max_overlap(&[(0.0, 1.0), (0.5, 2.0), (1.5, 3.0)]), 2);
    }
}
