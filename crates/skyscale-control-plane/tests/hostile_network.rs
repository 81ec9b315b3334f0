//! A hostile network against the real control plane: unauthenticated bodies that try to pin
//! memory, idle and slowloris connections, more connections than open files, log streams
//! that outlive their key. Each test fails without the guard it checks.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{create_fn, Server};
use serde_json::json;

const QUIET: &str = "def handler(event, context):\n    return {'ok': True}\n";

fn addr(server: &Server) -> SocketAddr {
    server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("server url is http://<ip>:<port>")
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(addr(server)).expect("connect");
    s.set_nodelay(true).unwrap();
    s
}

/// What a connection does next, as seen by a reader.
#[derive(Debug, PartialEq)]
enum Seen {
    /// The server closed it (EOF or reset), after this long.
    Closed(Duration),
    /// Still open at the deadline.
    Open,
}

/// Reads (and keeps) whatever arrives until the server closes the connection or `within`
/// passes.
fn watch(s: &mut TcpStream, within: Duration, got: &mut Vec<u8>) -> Seen {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        match s.read(&mut buf) {
            Ok(0) => return Seen::Closed(start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Seen::Closed(start.elapsed()),
        }
    }
    Seen::Open
}

/// Headers of a Lambda API request that is well formed but signed by a key that does not
/// exist: the server must read the body before it can tell.
fn unsigned_create(content_length: usize) -> String {
    format!(
        "POST /2015-03-31/functions HTTP/1.1\r\nhost: lambda\r\nx-amz-date: 20261206T120000Z\r\n\
         authorization: AWS4-HMAC-SHA256 Credential=SKYNOSUCHKEY0001/20261206/us-east-1/lambda/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={}\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\n\r\n",
        "0".repeat(64)
    )
}

#[test]
fn unauthenticated_bodies_cannot_pin_memory() {
    const BODY: usize = 69 * 1024 * 1024;
    const BUDGET_MB: u64 = 80;
    let server = Server::start_with(
        "runc",
        &[
            ("WARM_POOL_SIZE", "0"),
            ("SKYSCALE_BODY_TIMEOUT", "15s"),
            ("SKYSCALE_UNAUTHENTICATED_BUFFER_MB", "80"),
        ],
    );
    let http = server.http();
    assert_eq!(http.get("/v1/functions").status, 200);
    let baseline = server.rss_kb();
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    // Twenty senders of 69 MB bodies that hold back the last byte, and twenty that send
    // theirs a byte at a time.
    for slow in [false, true] {
        for _ in 0..20 {
            let mut s = connect(&server);
            let stop = stop.clone();
            attackers.push(std::thread::spawn(move || {
                s.set_write_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                if s.write_all(unsigned_create(BODY).as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'x'; if slow { 1 } else { 1024 * 1024 }];
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    if sent + chunk.len() >= BODY {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    match s.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        // Refused (busy, timed out) and closed by the server.
                        Err(_) => return,
                    }
                    if slow {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }));
        }
    }
    // While they hold on, the memory stays within the budget (plus the server's own), and
    // a client with a key is served.
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        peak = peak.max(server.rss_kb());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        http.get("/v1/functions").status,
        200,
        "a client with a key during the attack"
    );
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    let bound = baseline + (BUDGET_MB + 48) * 1024;
    eprintln!("rss: baseline {baseline} kB, peak {peak} kB, bound {bound} kB");
    assert!(
        peak <= bound,
        "unauthenticated bodies pinned {peak} kB (baseline {baseline} kB, bound {bound} kB)"
    );
    // And the memory is given back once they are gone.
    let settle = baseline + 32 * 1024;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = server.rss_kb();
        if now <= settle {
            eprintln!("rss after the attack: {now} kB");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rss stayed at {now} kB after the attack (baseline {baseline} kB)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The refusals were answers, not silence: a declared length over the operation's limit
    // is refused before a byte of it is read.
    let mut s = connect(&server);
    s.write_all(unsigned_create(2 << 30).as_bytes()).unwrap();
    let mut got = Vec::new();
    watch(&mut s, Duration::from_secs(10), &mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("RequestTooLargeException"), "{text}");
}

#[test]
fn idle_and_slowloris_connections_are_closed_but_streams_are_not() {
    let server = Server::start_with(
        "runc",
        &[
            ("WARM_POOL_SIZE", "0"),
            ("SKYSCALE_IDLE_TIMEOUT", "2s"),
            ("SKYSCALE_HEADER_TIMEOUT", "1s"),
        ],
    );
    let http = server.http();
    assert_eq!(create_fn(&http, "f", QUIET, json!({})).status, 201);

    // A follow stream is a request in flight: no idle timeout applies to it.
    let mut stream = connect(&server);
    write!(
        stream,
        "GET /v1/functions/f/logs?follow=true HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
        common::ADMIN_KEY
    )
    .unwrap();
    // Idle from the start.
    let mut idle = connect(&server);
    // Idle after one request on a keep-alive connection.
    let mut kept = connect(&server);
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    // Slowloris: headers that never end, a line every 300 ms.
    let mut slow = connect(&server);
    slow.write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let slow_writer = {
        let mut s = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for n in 0..40 {
                if write!(s, "x-slow-{n}: 1\r\n").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };

    let mut got = Vec::new();
    let seen = watch(&mut slow, Duration::from_secs(8), &mut got);
    assert!(
        matches!(seen, Seen::Closed(d) if d < Duration::from_secs(4)),
        "slowloris headers: {seen:?}"
    );
    slow_writer.join().unwrap();
    let seen = watch(&mut idle, Duration::from_secs(8), &mut Vec::new());
    assert!(matches!(seen, Seen::Closed(_)), "idle connection: {seen:?}");
    let mut answered = Vec::new();
    let seen = watch(&mut kept, Duration::from_secs(8), &mut answered);
    assert!(
        matches!(seen, Seen::Closed(_)),
        "kept-alive connection: {seen:?}"
    );
    assert!(
        String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"),
        "the request before idling was answered"
    );
    // Well past the idle timeout, the stream is still open.
    let mut events = Vec::new();
    assert_eq!(
        watch(&mut stream, Duration::from_secs(1), &mut events),
        Seen::Open
    );
    assert!(String::from_utf8_lossy(&events).starts_with("HTTP/1.1 200"));
}

#[test]
fn at_the_connection_limit_idle_ones_make_room_and_busy_ones_get_a_clear_answer() {
    let server = Server::start_with(
        "runc",
        &[("WARM_POOL_SIZE", "0"), ("SKYSCALE_MAX_CONNECTIONS", "2")],
    );
    // Two idle connections fill the limit (nothing else has connected yet); a third takes
    // the place of the older one.
    let mut first = connect(&server);
    std::thread::sleep(Duration::from_millis(50));
    let _second = connect(&server);
    let mut third = connect(&server);
    third
        .write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    watch(&mut third, Duration::from_secs(5), &mut got);
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    let seen = watch(&mut first, Duration::from_secs(5), &mut Vec::new());
    assert!(
        matches!(seen, Seen::Closed(_)),
        "the longest idle: {seen:?}"
    );
    assert_eq!(create_fn(&server.http(), "f", QUIET, json!({})).status, 201);

    // Two streams in flight: nothing can make room, the next connection is told why.
    let mut streams: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(&server);
            write!(
                s,
                "GET /v1/functions/f/logs?follow=true HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
                common::ADMIN_KEY
            )
            .unwrap();
            s
        })
        .collect();
    for s in &mut streams {
        let mut got = Vec::new();
        watch(s, Duration::from_millis(500), &mut got);
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    }
    let mut refused = connect(&server);
    let mut got = Vec::new();
    let seen = watch(&mut refused, Duration::from_secs(5), &mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
}

#[test]
fn more_idle_connections_than_open_files_do_not_stop_real_clients() {
    let server = Server::start_limited("runc", &[("WARM_POOL_SIZE", "1")], Some(1024));
    let log = server.log();
    assert!(log.contains("open-file limit"), "{log}");
    assert!(log.contains("max_connections=768"), "{log}");
    let http = server.http();
    assert_eq!(create_fn(&http, "f", QUIET, json!({})).status, 201);
    let idle: Vec<TcpStream> = (0..1100).map(|_| connect(&server)).collect();
    // A real client, on new connections, is still answered.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = client
            .post(format!("{}/v1/functions/f/invoke", server.url))
            .bearer_auth(common::ADMIN_KEY)
            .body("{}")
            .send()
            .expect("invoke with 1,100 idle connections open");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().unwrap(), r#"{"ok": true}"#);
    }
    let out = server.cli_ok(&["function", "invoke", "--name", "f"]);
    assert!(out.contains("\"ok\": true"), "{out}");
    drop(idle);
}

/// Reads a follow stream until the server ends it; the text received.
fn until_closed(s: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let seen = watch(s, within, &mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(matches!(seen, Seen::Closed(_)), "still open: {text}");
    text
}

#[test]
fn follow_streams_end_when_their_key_is_revoked_and_at_their_lifetime() {
    let server = Server::start_with(
        "runc",
        &[
            ("WARM_POOL_SIZE", "0"),
            ("SKYSCALE_STREAM_MAX_LIFETIME", "4s"),
        ],
    );
    let http = server.http();
    assert_eq!(create_fn(&http, "f", QUIET, json!({})).status, 201);
    let r = http.post_json("/v1/keys", &json!({"role": "developer"}));
    assert_eq!(r.status, 201);
    let token = r.json()["key"].as_str().unwrap().to_owned();
    let id = token.split('.').next().unwrap().to_owned();

    let open = |key: &str| {
        let mut s = connect(&server);
        write!(
            s,
            "GET /v1/functions/f/logs?follow=true HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
             authorization: Bearer {key}\r\n\r\n"
        )
        .unwrap();
        s
    };
    let mut developer = open(&token);
    let mut admin = open(common::ADMIN_KEY);
    let mut head = Vec::new();
    assert_eq!(
        watch(&mut developer, Duration::from_millis(500), &mut head),
        Seen::Open
    );
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));

    let revoked_at = Instant::now();
    assert_eq!(
        http.send("DELETE", &format!("/v1/keys/{id}"), None).status,
        204
    );
    let text = until_closed(&mut developer, Duration::from_secs(3));
    assert!(
        revoked_at.elapsed() < Duration::from_secs(3),
        "the stream outlived its key by {:?}",
        revoked_at.elapsed()
    );
    assert!(text.contains("event: end"), "{text}");
    assert!(text.contains("key_revoked"), "{text}");

    // The admin's stream was not touched by that, and ends at its lifetime.
    let text = until_closed(&mut admin, Duration::from_secs(8));
    assert!(text.contains("event: end"), "{text}");
    assert!(text.contains("\"reason\":\"lifetime\""), "{text}");
}

#[test]
fn health_without_a_key_is_liveness_only() {
    let server = Server::start_with("runc", &[("WARM_POOL_SIZE", "0")]);
    let anonymous = server.http().without_key().get("/v1/health");
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.json(), json!({"status": "ok"}));
    let full = server.http().get("/v1/health").json();
    assert_eq!(full["status"], "ok");
    assert_eq!(full["driver"], "runc");
    assert_eq!(full["sandboxes"], 0);
    assert_eq!(full["busy"], 0);
    // A key that is wrong is an error, not a quiet downgrade.
    let wrong = server
        .http()
        .with_key("SKYNOSUCHKEY0001.not-the-secret-not-the-secret-00")
        .get("/v1/health");
    assert_eq!(wrong.status, 401);
}
