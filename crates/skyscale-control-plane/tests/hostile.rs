//! Hostile input (issue 5): hostile code packages, names, headers, bodies and environments,
//! functions that try to take their sandbox or the host down, and a storm of requests. Every
//! one gets a clear error, and afterwards the control plane is healthy, a "canary" function
//! created first still answers, and its stored record is unchanged.
//!
//! Covered elsewhere and not repeated here:
//! - `bad_input.rs`: a `../../` zip-slip deploy, a zip that is not a zip, invoke payloads over
//!   6 MB and that are not JSON, a create body that is not JSON or has unknown fields, names
//!   that are too long (65 characters) or have a `!`, reserved or malformed environment
//!   variable names, missing and wrong API keys.
//! - `scheduler.rs` (`failures_are_contained_on_*`): an endless loop (timeout), one large
//!   allocation over the memory limit and an `os._exit` on both drivers; reserved
//!   concurrency of 1 and 0 with two callers.
//! - `skyscale-agent/tests/invoke.rs`: the `[skyscale: N bytes of output dropped]` marker of
//!   cut output. An API caller sees only the 4 KB log tail, so here a gigabyte of output is
//!   checked for what the caller can see: the answer, the newest lines, bounded memory.
//! - `skyscale-store`'s unit tests (`code.rs`): the same package checks with tiny limits.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{create_fn, tail, zip_of, Resp, Server};
use serde_json::{json, Value};

const CANARY: &str = "def handler(event, context):\n    return {'canary': event.get('n', 0) + 1}\n";

/// Misbehaves on request; `{}` answers `{"ok": true}`.
const ROGUE: &str = r#"
import os, sys, time


def handler(event, context):
    mode = event.get("mode")
    if mode == "fork":
        # Every process forks for ever; failed forks (the pids limit) are ignored.
        while True:
            try:
                os.fork()
            except OSError:
                pass
    if mode == "fill_tmp":
        chunk = b"x" * (1 << 20)
        written = 0
        fd = os.open("/tmp/fill", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            while True:
                written += os.write(fd, chunk)
        except OSError as e:
            err = e.errno
        finally:
            os.close(fd)
        st = os.statvfs("/tmp")
        os.unlink("/tmp/fill")
        return {"written": written, "errno": err, "tmp_bytes": st.f_blocks * st.f_frsize}
    if mode == "alloc":
        hog = []
        while True:
            hog.append(b"\x01" * (16 << 20))
    if mode == "print":
        block = ("y" * 1023 + "\n") * 1024
        printed = 0
        while printed < event["bytes"] and context.get_remaining_time_in_millis() > 1200:
            sys.stdout.write(block)
            printed += len(block)
        print("LAST-LINE", printed, flush=True)
        return {"printed": printed}
    if mode == "spew":
        block = "z" * (1 << 20)
        while True:
            sys.stdout.write(block)
    if mode == "deep":
        result = []
        for _ in range(100_000):
            result = [result]
        return result
    if mode == "close":
        print("closing", flush=True)
        os.close(1)
        os.close(2)
        return {"closed": True}
    return {"ok": True}
"#;

/// Says when it ran, so that overlapping invocations can be counted.
const NAPPER: &str = r#"
import time


def handler(event, context):
    start = time.time()
    time.sleep(event.get("sleep", 0.2))
    return {"start": start, "end": time.time()}
"#;

fn body(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The canary: created before anything hostile happens, checked after every step.
struct Canary {
    record: Value,
    functions: Value,
}

impl Canary {
    fn create(server: &Server) -> Canary {
        let http = server.http();
        let r = create_fn(&http, "canary", CANARY, json!({"timeout_s": 3}));
        assert_eq!(r.status, 201, "{}", body(&r));
        let c = Canary {
            record: http.get("/v1/functions/canary").json(),
            functions: json!([]),
        };
        c.answers(server, "creating it");
        c
    }

    /// Remembers the current function list as the one that must not change.
    fn with_functions(mut self, server: &Server) -> Canary {
        self.functions = function_names(server);
        self
    }

    fn answers(&self, server: &Server, after: &str) {
        let r = server.http().invoke("canary", r#"{"n": 41}"#);
        assert_eq!(
            (r.status, r.header("x-skyscale-function-error")),
            (200, None),
            "after {after}: the canary failed: {}\nserver log tail:\n{}",
            body(&r),
            tail(&server.log(), 30)
        );
        assert_eq!(r.json(), json!({"canary": 42}), "after {after}");
    }

    /// Health 200, the canary answers, its record and the function list are unchanged.
    fn check(&self, server: &Server, after: &str) {
        let h = server.http().without_key().get("/v1/health");
        assert_eq!(
            (h.status, h.json()["status"].clone()),
            (200, json!("ok")),
            "after {after}"
        );
        self.answers(server, after);
        let r = server.http().get("/v1/functions/canary");
        assert_eq!(r.status, 200, "after {after}: {}", body(&r));
        assert_eq!(
            r.json(),
            self.record,
            "after {after}: the canary's record changed"
        );
        assert_eq!(function_names(server), self.functions, "after {after}");
    }
}

fn function_names(server: &Server) -> Value {
    let list = server.http().get("/v1/functions").json();
    list["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect()
}

fn assert_error(r: &Resp, status: u16, code: &str, message: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", body(r));
    assert_eq!(r.error_code(), code, "{what}: {}", body(r));
    assert!(
        r.error_message().contains(message),
        "{what}: expected {message:?} in {:?}",
        r.error_message()
    );
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP: paths, header names and values that a client library would refuse or normalise.

/// A response read off a raw connection.
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends `method path` with `headers` (raw lines without CRLF; the admin key unless they
/// have an `Authorization` of their own) and `body` on a new connection and reads the
/// answer to the end.
fn raw(server: &Server, method: &str, path: &[u8], headers: &[Vec<u8>], body: &[u8]) -> Raw {
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut req = Vec::new();
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(path);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    req.extend_from_slice(addr.as_bytes());
    req.extend_from_slice(b"\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with(b"authorization:"))
    {
        req.extend_from_slice(b"Authorization: Bearer ");
        req.extend_from_slice(common::ADMIN_KEY.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    for h in headers {
        req.extend_from_slice(h);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer and close before it has read everything (e.g. a refused head).
    let _ = conn.write_all(&req);
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no HTTP answer to {method} {}: {:?}",
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(&answer)
            )
        });
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    Raw {
        status,
        head,
        body: answer[split + 4..].to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// Code packages

/// One entry of `name` whose headers declare `declared` unzipped bytes: the local header
/// and the central directory of a single-entry zip written by `zip_of` are patched.
fn with_declared_size(mut zip: Vec<u8>, declared: u32) -> Vec<u8> {
    assert_eq!(&zip[..4], b"PK\x03\x04");
    zip[22..26].copy_from_slice(&declared.to_le_bytes());
    let central = zip
        .windows(4)
        .rposition(|w| w == b"PK\x01\x02")
        .expect("central directory");
    zip[central + 24..central + 28].copy_from_slice(&declared.to_le_bytes());
    zip
}

/// A single stored entry whose CRC-32 is wrong (in both headers).
fn with_bad_crc(mut zip: Vec<u8>) -> Vec<u8> {
    zip[14] ^= 0xff;
    let central = zip.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    zip[central + 16] ^= 0xff;
    zip
}

fn stored_zip(name: &str, data: &[u8]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file(name, opts).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

/// `handler.py`, plus a symbolic link `name` → `target`.
fn zip_with_symlink(name: &str, target: &str) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("handler.py", SimpleFileOptions::default())
        .unwrap();
    w.write_all(CANARY.as_bytes()).unwrap();
    w.add_symlink(name, target, SimpleFileOptions::default())
        .unwrap();
    w.finish().unwrap().into_inner()
}

/// One deflated entry of `bytes` zeros (a few hundred KB zipped).
fn zeros_zip(bytes: usize) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    w.start_file("zeros.bin", opts).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        w.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    w.finish().unwrap().into_inner()
}

fn many_entries_zip(count: usize) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..count {
        w.start_file(format!("f{i}.py"), opts).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Total size of the regular files under `dir`.
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += tree_bytes(&entry.path());
        } else {
            total += meta.len();
        }
    }
    total
}

/// Every name under `dir`, recursively, relative to it.
fn tree_names(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn hostile_code_packages_are_refused_and_change_nothing() {
    let server = Server::start("runc");
    let http = server.http();
    let canary = Canary::create(&server).with_functions(&server);
    let code_dir = server.dir.path().join("data/code");
    let stored = tree_names(&code_dir);
    let escape = format!("skyscale-hostile-{}", std::process::id());
    let host_target = std::env::temp_dir().join(&escape);

    // Each package is deployed over the canary's code (the deploy must change nothing) and
    // used to create a new function (which must not appear).
    let zeros = zeros_zip(300 << 20);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "an absolute path",
            zip_of(&[("handler.py", CANARY), (host_target.to_str().unwrap(), "x")]),
            400,
            "has an absolute path or '..'",
        ),
        (
            "a '..' inside the path",
            zip_of(&[("handler.py", CANARY), (&format!("a/../../{escape}"), "x")]),
            400,
            "has an absolute path or '..'",
        ),
        (
            "a backslash '..'",
            zip_of(&[("handler.py", CANARY), (&format!("..\\{escape}"), "x")]),
            400,
            "has an absolute path or '..'",
        ),
        (
            "a symbolic link to /etc/shadow",
            zip_with_symlink("secrets", "/etc/shadow"),
            400,
            "is a symbolic link",
        ),
        (
            "a symbolic link over the handler",
            zip_with_symlink("lib", "../../../../"),
            400,
            "is a symbolic link",
        ),
        (
            "an entry declaring 300 MB",
            with_declared_size(zip_of(&[("handler.py", CANARY)]), 300 << 20),
            400,
            "unzips to more than 262144000 bytes",
        ),
        (
            "300 MB of zeros (an honest bomb)",
            zeros.clone(),
            400,
            "unzips to more than 262144000 bytes",
        ),
        (
            "300 MB of zeros declaring 100 bytes (a lying bomb)",
            with_declared_size(zeros, 100),
            400,
            "more bytes than its header declares",
        ),
        (
            "10,001 entries",
            many_entries_zip(10_001),
            400,
            "has 10001 entries: the limit is 10000",
        ),
        (
            "a file that is also a directory",
            zip_of(&[("handler.py", CANARY), ("lib", "x"), ("lib/mod.py", "y")]),
            400,
            "clashes with another entry of the same path",
        ),
        (
            "a 300-byte file name",
            zip_of(&[("handler.py", CANARY), (&"n".repeat(300), "x")]),
            400,
            "has a name that is too long",
        ),
        (
            "a corrupt entry (bad CRC-32)",
            with_bad_crc(stored_zip("handler.py", CANARY.as_bytes())),
            400,
            "is corrupt",
        ),
    ];
    for (what, zip, status, message) in &cases {
        let started = Instant::now();
        let r = http.send("PUT", "/v1/functions/canary/code", Some(zip.clone()));
        assert_error(&r, *status, "invalid_parameter", message, what);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: refusing took {:?}",
            started.elapsed()
        );
        let r = http.post_json(
            "/v1/functions",
            &json!({
                "name": "hostile",
                "runtime": "python3.11",
                "code_zip_base64": base64::engine::general_purpose::STANDARD.encode(zip),
            }),
        );
        assert_error(&r, *status, "invalid_parameter", message, what);
        assert!(
            !host_target.exists(),
            "{what}: wrote {}",
            host_target.display()
        );
        assert!(!server.dir.path().join(&escape).exists(), "{what}: escaped");
        assert_eq!(
            tree_names(&code_dir),
            stored,
            "{what}: the code store changed"
        );
        canary.check(&server, what);
    }

    // Half a million entries in under 50 MB: refused before they are parsed, so the
    // control plane's memory does not balloon.
    let crowd = many_entries_zip(500_000);
    let rss_before = server.rss_kb();
    let r = http.send("PUT", "/v1/functions/canary/code", Some(crowd));
    let rss_after = server.rss_kb();
    assert_error(
        &r,
        400,
        "invalid_parameter",
        "has 500000 entries: the limit is 10000",
        "half a million entries",
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "control plane RSS grew from {rss_before} to {rss_after} KiB"
    );
    canary.check(&server, "half a million entries");

    // Uploads over the 50 MB limit: a raw deploy, and a base64 zip inside a create.
    let limit = 50 << 20;
    let r = http.send(
        "PUT",
        "/v1/functions/canary/code",
        Some(vec![0u8; limit + 1]),
    );
    assert_error(
        &r,
        413,
        "payload_too_large",
        "code package is larger than the 52428800-byte limit",
        "a 50 MB + 1 byte deploy",
    );
    canary.check(&server, "a 50 MB + 1 byte deploy");
    let r = http.post_json(
        "/v1/functions",
        &json!({
            "name": "hostile",
            "runtime": "python3.11",
            "code_zip_base64": base64::engine::general_purpose::STANDARD.encode(vec![0u8; limit + 1]),
        }),
    );
    assert_error(
        &r,
        413,
        "payload_too_large",
        "code package is 52428801 bytes: the limit is 52428800 bytes",
        "a 50 MB + 1 byte create",
    );
    let r = http.send("POST", "/v1/functions", Some(vec![b' '; 71 << 20]));
    assert_error(
        &r,
        413,
        "payload_too_large",
        "request body is larger than",
        "a 71 MB create body",
    );
    canary.check(&server, "uploads over the limit");
    assert_eq!(tree_names(&code_dir), stored);
}

// ---------------------------------------------------------------------------------------------
// Names, headers, bodies, environments

#[test]
fn hostile_names_headers_bodies_and_environments_are_refused() {
    let server = Server::start("runc");
    let http = server.http();
    let canary = Canary::create(&server).with_functions(&server);

    // Names in a create body.
    let names = [
        "x'; DROP TABLE functions;--",
        "$(reboot)",
        "`reboot`",
        "a;b",
        "a|b",
        "../etc",
        "a/b",
        "/etc/passwd",
        "a\u{0}b",
        "名前",
        "",
    ];
    let long = "n".repeat(65);
    for name in names.iter().copied().chain([long.as_str()]) {
        let r = http.post_json(
            "/v1/functions",
            &json!({"name": name, "runtime": "python3.11",
                    "code_zip_base64": base64::engine::general_purpose::STANDARD
                        .encode(zip_of(&[("handler.py", CANARY)]))}),
        );
        assert_error(
            &r,
            400,
            "invalid_parameter",
            "invalid function name",
            &format!("create {name:?}"),
        );
    }
    canary.check(&server, "hostile names in create bodies");

    // Names in the URL path, percent-encoded as a client would send them, and raw.
    let paths: [&[u8]; 9] = [
        b"x%27%3B%20DROP%20TABLE%20functions%3B--",
        b"%24(reboot)",
        b"a%3Bb",
        b"..%2Fetc",
        b"..%2F..%2F..%2Fetc%2Fpasswd",
        b"a%2Fb",
        b"%2Fetc",
        b"..",
        b"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    ];
    for name in paths {
        let shown = String::from_utf8_lossy(name).into_owned();
        for (method, suffix, payload) in [
            ("GET", "", &b""[..]),
            ("DELETE", "", b""),
            ("PATCH", "", b"{\"timeout_s\": 5}"),
            ("POST", "/invoke", b"{}"),
            ("PUT", "/code", b"PK"),
            ("PUT", "/concurrency", b"{\"reserved_concurrency\": 1}"),
            ("GET", "/versions", b""),
        ] {
            let mut path = b"/v1/functions/".to_vec();
            path.extend_from_slice(name);
            path.extend_from_slice(suffix.as_bytes());
            let r = raw(&server, method, &path, &[], payload);
            assert_eq!(
                r.status, 400,
                "{method} /v1/functions/{shown}{suffix}: {}",
                r.head
            );
            assert!(
                r.error_message().starts_with("invalid function name"),
                "{method} {shown}{suffix}: {}",
                r.error_message()
            );
        }
    }
    // Bytes that are not UTF-8 once decoded, and paths that leave the route.
    for path in [
        &b"/v1/functions/%FF%FE"[..],
        b"/v1/functions/%00",
        b"/v1/functions/../etc",
        b"/v1/functions/a/b",
        b"/v1/functions/%2E%2E/%2E%2E/etc/passwd",
    ] {
        let shown = String::from_utf8_lossy(path).into_owned();
        let r = raw(&server, "GET", path, &[], b"");
        assert!((400..500).contains(&r.status), "GET {shown}: {}", r.head);
        assert!(
            !r.error_message().is_empty(),
            "GET {shown}: no message: {}",
            r.head
        );
    }
    canary.check(&server, "hostile names in paths");

    // Environment variables: Lambda's 4 KB total.
    let big_value = "v".repeat(5000);
    let many: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("VAR_{i:03}"), json!("x".repeat(40))))
        .collect();
    let huge_value = "h".repeat(1 << 20);
    for (what, env) in [
        ("one 5000-byte value", json!({"BIG": big_value})),
        ("100 variables of 47 bytes", Value::Object(many)),
        ("one 1 MB value", json!({"HUGE": huge_value})),
    ] {
        let r = create_fn(&http, "envy", CANARY, json!({"environment": env}));
        assert_error(
            &r,
            400,
            "invalid_parameter",
            "the limit is 4096",
            &format!("create with {what}"),
        );
        assert!(
            r.error_message().starts_with("environment variables take "),
            "{}",
            r.error_message()
        );
        let r = http.send(
            "PATCH",
            "/v1/functions/canary",
            Some(serde_json::to_vec(&json!({"environment": env})).unwrap()),
        );
        assert_error(
            &r,
            400,
            "invalid_parameter",
            "the limit is 4096",
            &format!("update with {what}"),
        );
        canary.check(&server, &format!("environment with {what}"));
    }
    // Exactly at the limit is fine.
    let at_limit = json!({"K": "v".repeat(4095)});
    let r = create_fn(&http, "envy", CANARY, json!({"environment": at_limit}));
    assert_eq!(r.status, 201, "{}", body(&r));
    assert_eq!(http.send("DELETE", "/v1/functions/envy", None).status, 204);

    // Bodies: nested without end, not UTF-8.
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    // Valid JSON to the control plane; the runtime refuses it like invalid JSON and lives on.
    let r = http.send(
        "POST",
        "/v1/functions/canary/invoke",
        Some(deep.clone().into_bytes()),
    );
    assert_eq!(
        (r.status, r.header("x-skyscale-function-error")),
        (200, Some("Unhandled")),
        "{}",
        body(&r)
    );
    assert_eq!(
        r.json()["errorType"],
        "Runtime.UnmarshalError",
        "{}",
        body(&r)
    );
    let message = r.json()["errorMessage"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("Unable to unmarshal input: maximum recursion depth exceeded"),
        "{message}"
    );
    let r = http.invoke("canary", "{}");
    assert_eq!(
        r.header("x-skyscale-cold-start"),
        Some("false"),
        "the runtime crashed"
    );
    canary.check(&server, "a 200,000-deep invoke payload");
    for (what, method, path) in [
        ("a 200,000-deep create body", "POST", "/v1/functions"),
        (
            "a 200,000-deep update body",
            "PATCH",
            "/v1/functions/canary",
        ),
    ] {
        let r = http.send(method, path, Some(deep.clone().into_bytes()));
        assert_error(&r, 400, "invalid_request", "not valid JSON", what);
    }
    let r = http.send(
        "POST",
        "/v1/functions/canary/invoke",
        Some(b"{\"a\": \"\xff\xfe\"}".to_vec()),
    );
    assert_error(
        &r,
        400,
        "invalid_request",
        "not valid JSON",
        "a non-UTF-8 payload",
    );
    canary.check(&server, "hostile bodies");

    // Headers: a 100 KB value, 1000 headers, values that are not UTF-8 or not text.
    let big_header = format!("X-Big: {}", "b".repeat(100 * 1024)).into_bytes();
    let thousand: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("X-H{i}: {i}").into_bytes())
        .collect();
    let binary = b"X-Binary: \xff\xfe\x80 caf\xe9".to_vec();
    let log_type = b"X-Skyscale-Log-Type: \xffTail".to_vec();
    for (method, path, payload) in [
        ("GET", &b"/v1/functions"[..], &b""[..]),
        ("POST", b"/v1/functions/canary/invoke", b"{\"n\": 41}"),
    ] {
        let shown = String::from_utf8_lossy(path).into_owned();
        // Accepted as they are: the head fits the server's limits.
        for (what, headers) in [
            ("a 100 KB header", vec![big_header.clone()]),
            (
                "binary header values",
                vec![binary.clone(), log_type.clone()],
            ),
        ] {
            let r = raw(&server, method, path, &headers, payload);
            assert_eq!(r.status, 200, "{method} {shown} with {what}: {}", r.head);
            canary.check(&server, &format!("{method} {shown} with {what}"));
        }
        for (what, headers, status) in [
            ("1000 headers", thousand.clone(), 431),
            (
                "a 1 MB header",
                vec![format!("X-Huge: {}", "h".repeat(1 << 20)).into_bytes()],
                431,
            ),
            (
                "a header name that is not a token",
                vec![b"X-\xff: a".to_vec()],
                400,
            ),
            (
                "a NUL in a header value",
                vec![b"X-Nul: a\x00b".to_vec()],
                400,
            ),
        ] {
            let r = raw(&server, method, path, &headers, payload);
            assert_eq!(r.status, status, "{method} {shown} with {what}: {}", r.head);
            canary.check(&server, &format!("{method} {shown} with {what}"));
        }
    }
    // An Authorization header that is not UTF-8 is refused like a wrong key.
    let r = raw(
        &server,
        "GET",
        b"/v1/functions",
        &[b"Authorization: Bearer \xff\xfe".to_vec()],
        b"",
    );
    assert_eq!(r.status, 401, "{}", r.head);
    // The Lambda API's invoke route, unsigned: refused before anything else is looked at.
    for headers in [vec![big_header.clone()], vec![binary.clone()]] {
        let r = raw(
            &server,
            "POST",
            b"/2015-03-31/functions/canary/invocations",
            &headers,
            b"{}",
        );
        assert_eq!(r.status, 403, "{}", r.head);
    }
    canary.check(&server, "hostile headers");
}

// ---------------------------------------------------------------------------------------------
// Functions that misbehave inside their sandbox

/// Where a sandbox's pids cgroup is (cgroup v1 `pids` hierarchy or the unified one).
fn pids_cgroup(id: &str) -> Option<PathBuf> {
    for root in ["/sys/fs/cgroup/pids/skyscale", "/sys/fs/cgroup/skyscale"] {
        for instance in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let dir = instance.path().join(id);
            if dir.join("pids.current").exists() {
                return Some(dir);
            }
        }
    }
    None
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Invokes `name`, which must cold-start, and returns the sandbox it started: the one
/// sandbox not in `known`.
fn cold_start_in(server: &Server, name: &str, known: &BTreeSet<String>) -> String {
    invoke_ok(server, name, true, "a cold start");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let new: Vec<String> = server.sandbox_ids().difference(known).cloned().collect();
        if new.len() == 1 {
            return new[0].clone();
        }
        assert!(Instant::now() < deadline, "new sandboxes: {new:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn wait_gone(server: &Server, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.sandbox_ids().contains(id) || pids_cgroup(id).is_some() {
        assert!(
            Instant::now() < deadline,
            "sandbox {id} was not destroyed\n{}",
            tail(&server.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An ordinary call of a `ROGUE` function works; `cold` says whether it needs a new sandbox.
fn invoke_ok(server: &Server, name: &str, cold: bool, after: &str) {
    let r = server.http().invoke(name, "{}");
    assert_eq!(
        (r.status, r.header("x-skyscale-function-error")),
        (200, None),
        "{name} after {after}: {}\n{}",
        body(&r),
        tail(&server.log(), 30)
    );
    assert_eq!(r.json(), json!({"ok": true}), "{name} after {after}");
    assert_eq!(
        r.header("x-skyscale-cold-start"),
        Some(if cold { "true" } else { "false" }),
        "{name} after {after}"
    );
}

/// A failed invocation's error document, after checking it is one.
fn function_error(r: &Resp) -> (String, String) {
    assert_eq!(
        (r.status, r.header("x-skyscale-function-error")),
        (200, Some("Unhandled")),
        "{}",
        body(r)
    );
    let v = r.json();
    (
        v["errorType"].as_str().unwrap().to_owned(),
        v["errorMessage"].as_str().unwrap().to_owned(),
    )
}

fn runaway_functions_are_contained(driver: &str) {
    let server = Server::start_with(driver, &[("WARM_POOL_SIZE", "0")]);
    let http = server.http();
    let canary = Canary::create(&server);
    // `hog` has Lambda's default memory, for the memory limit to end it; with it comes 7 % of
    // a CPU (the CPU quota), so it gets the time to reach that limit under gVisor, whose
    // page faults cost CPU. `rogue` has one full vCPU (1,769 MB): printing as fast as it can
    // is about output, not CPU. `big` has room for its processes to reach the pids limit,
    // and for a full /tmp (its pages are memory and count against the limit: with 128 MB the
    // memory limit ends a function filling /tmp before /tmp is full).
    for (name, memory, timeout) in [("hog", 128, 30), ("rogue", 1769, 3), ("big", 1024, 3)] {
        let r = create_fn(
            &http,
            name,
            ROGUE,
            json!({"timeout_s": timeout, "memory_mb": memory}),
        );
        assert_eq!(r.status, 201, "{}", body(&r));
    }
    let canary = canary.with_functions(&server);
    let timeout_message = "Task timed out after 3.00 seconds";

    // A fork bomb: the pids limit holds and the canary answers meanwhile; the call times out
    // (gVisor: or the copies of the interpreter exhaust the memory limit first and the
    // sandbox is killed), and the sandbox is destroyed.
    let bombed = cold_start_in(&server, "big", &server.sandbox_ids());
    let pids = pids_cgroup(&bombed).expect("the sandbox's pids cgroup");
    let pids_max = read_number(&pids.join("pids.max")).unwrap();
    let started = Instant::now();
    let (r, peak) = std::thread::scope(|s| {
        let bomb = s.spawn(|| server.http().invoke("big", r#"{"mode": "fork"}"#));
        let (mut peak, mut checked) = (0, false);
        while !bomb.is_finished() {
            peak = peak.max(read_number(&pids.join("pids.current")).unwrap_or(0));
            if !checked && peak > 100 {
                canary.answers(&server, "a fork bomb in another sandbox");
                checked = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (bomb.join().unwrap(), peak)
    });
    let elapsed = started.elapsed();
    eprintln!(
        "{driver}: fork bomb: peak {peak} of {pids_max} pids, answered in {elapsed:?}: {}",
        body(&r)
    );
    match function_error(&r) {
        (t, m) if t == "Sandbox.Timedout" => assert!(m.ends_with(timeout_message), "{m}"),
        (t, m) if t == "Runtime.ExitError" => assert!(m.contains("Error: Runtime exited"), "{m}"),
        (t, m) => panic!("{t}: {m}"),
    }
    assert!(
        elapsed < Duration::from_secs(8),
        "the fork bomb ran {elapsed:?}"
    );
    assert!(peak > 100, "the fork bomb never got going: {peak} pids");
    assert!(peak <= pids_max, "{peak} pids over the limit of {pids_max}");
    wait_gone(&server, &bombed);
    canary.check(&server, "a fork bomb");
    invoke_ok(&server, "big", true, "a fork bomb");

    // Filling /tmp: ENOSPC at its size, nothing written on the host's disk.
    let disk_before = tree_bytes(server.dir.path());
    let r = http.invoke("big", r#"{"mode": "fill_tmp"}"#);
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.header("x-skyscale-function-error"), None, "{}", body(&r));
    let v = r.json();
    eprintln!("{driver}: filling /tmp: {v}");
    assert_eq!(v["errno"], 28, "ENOSPC expected: {v}");
    let tmp_bytes = v["tmp_bytes"].as_u64().unwrap();
    assert_eq!(tmp_bytes, 512 << 20, "{v}");
    assert!(v["written"].as_u64().unwrap() <= tmp_bytes, "{v}");
    assert!(
        tree_bytes(server.dir.path()) < disk_before + (16 << 20),
        "/tmp writes reached the host's disk"
    );
    canary.check(&server, "filling /tmp");
    invoke_ok(&server, "big", false, "filling /tmp");

    // Allocating without end: Lambda's error for a runtime the memory limit killed.
    let hog = cold_start_in(&server, "hog", &server.sandbox_ids());
    let started = Instant::now();
    let (t, m) = function_error(&http.invoke("hog", r#"{"mode": "alloc"}"#));
    eprintln!(
        "{driver}: allocating without end: {t} after {:?}: {m}",
        started.elapsed()
    );
    assert_eq!(t, "Runtime.ExitError", "{m}");
    assert!(m.contains("Error: Runtime exited"), "{m}");
    wait_gone(&server, &hog);
    canary.check(&server, "allocating without end");

    // Printing a gigabyte: the answer comes within the timeout, the output is cut to its
    // newest part, and the control plane's memory stays bounded.
    let chatty = cold_start_in(&server, "rogue", &server.sandbox_ids());
    let rss_before = server.rss_kb();
    let started = Instant::now();
    let r = http.send(
        "POST",
        "/v1/functions/rogue/invoke",
        Some(br#"{"mode": "print", "bytes": 1073741824}"#.to_vec()),
    );
    let elapsed = started.elapsed();
    let rss_after = server.rss_kb();
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.header("x-skyscale-function-error"), None, "{}", body(&r));
    let printed = r.json()["printed"].as_u64().unwrap();
    eprintln!(
        "{driver}: printed {printed} bytes in {elapsed:?}; control plane RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(printed >= 64 << 20, "printed only {printed} bytes");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "control plane RSS grew from {rss_before} to {rss_after} KiB"
    );
    let logs = tail_logs(&server, "rogue", br#"{"mode": "print", "bytes": 8388608}"#);
    assert!(
        logs.contains("LAST-LINE 8388608\nEND RequestId: "),
        "{logs}"
    );
    canary.check(&server, "printing a gigabyte");
    invoke_ok(&server, "rogue", false, "printing a gigabyte");

    // Printing without end: a timeout like any other, within the deadline.
    let started = Instant::now();
    let (t, _) = function_error(&http.invoke("rogue", r#"{"mode": "spew"}"#));
    let elapsed = started.elapsed();
    assert_eq!(t, "Sandbox.Timedout");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(
        server.rss_kb() < rss_before + 64 * 1024,
        "control plane RSS grew to {} KiB",
        server.rss_kb()
    );
    wait_gone(&server, &chatty);
    canary.check(&server, "printing without end");
    invoke_ok(&server, "rogue", true, "printing without end");

    // A result nested deeper than the runtime can serialise: Lambda's marshal error.
    let (t, m) = function_error(&http.invoke("rogue", r#"{"mode": "deep"}"#));
    assert_eq!(t, "Runtime.MarshalError", "{m}");
    assert!(
        m.starts_with("Unable to marshal response: maximum recursion depth exceeded"),
        "{m}"
    );
    invoke_ok(&server, "rogue", false, "a result nested 100,000 deep");

    // Closing stdout and stderr: the answer still arrives, and so does the next one.
    let r = http.invoke("rogue", r#"{"mode": "close"}"#);
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json(), json!({"closed": true}), "{}", body(&r));
    invoke_ok(&server, "rogue", false, "closing stdout and stderr");
    canary.check(&server, "closing stdout and stderr");
}

/// Invokes with `Tail` logs and returns them.
fn tail_logs(server: &Server, name: &str, payload: &[u8]) -> String {
    let r = server
        .http()
        .client
        .post(format!("{}/v1/functions/{name}/invoke", server.url))
        .bearer_auth(common::ADMIN_KEY)
        .header("x-skyscale-log-type", "Tail")
        .body(payload.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let encoded = r
        .headers()
        .get("x-skyscale-log-result")
        .expect("log result header")
        .to_str()
        .unwrap()
        .to_owned();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn runaway_functions_are_contained_on_gvisor() {
    runaway_functions_are_contained("gvisor");
}

#[test]
fn runaway_functions_are_contained_on_runc() {
    runaway_functions_are_contained("runc");
}

// ---------------------------------------------------------------------------------------------
// A storm of requests

/// The most intervals that overlap at one instant.
fn max_overlap(intervals: &[(f64, f64)]) -> usize {
    let mut edges: Vec<(f64, i32)> = intervals
        .iter()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    // Ends sort before starts at the same instant: touching intervals do not overlap.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn a_storm_of_requests_is_throttled_cleanly() {
    const REQUESTS: usize = 2000;
    let server = Server::start("runc");
    let http = server.http();
    let canary = Canary::create(&server);
    assert_eq!(create_fn(&http, "limited", NAPPER, json!({})).status, 201);
    let r = http.send(
        "PUT",
        "/v1/functions/limited/concurrency",
        Some(br#"{"reserved_concurrency": 2}"#.to_vec()),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    let canary = canary.with_functions(&server);
    // Both sandboxes warm, so that the storm measures the throttle, not two cold starts.
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..2)
            .map(|_| s.spawn(|| server.http().invoke("limited", r#"{"sleep": 0.5}"#)))
            .collect();
        for c in calls {
            assert_eq!(c.join().unwrap().status, 200);
        }
    });
    let rss_before = server.rss_kb();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = format!("{}/v1/functions/limited/invoke", server.url);
    let started = Instant::now();
    let watching = std::sync::atomic::AtomicBool::new(true);
    let (answers, peak_rss, peak_busy) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let (mut rss, mut busy) = (0, 0);
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                rss = rss.max(server.rss_kb());
                // The counts need a key (anonymous health is liveness only).
                let h = server.http().get("/v1/health");
                assert_eq!(h.status, 200, "health during the storm: {}", body(&h));
                busy = busy.max(h.json()["busy"].as_u64().unwrap());
                std::thread::sleep(Duration::from_millis(20));
            }
            (rss, busy)
        });
        let answers = runtime.block_on(async {
            let tasks: Vec<_> = (0..REQUESTS)
                .map(|_| {
                    let req = client
                        .post(&url)
                        .bearer_auth(common::ADMIN_KEY)
                        .body(r#"{"sleep": 0.2}"#);
                    tokio::spawn(async move {
                        let r = req.send().await.map_err(|e| e.to_string())?;
                        let status = r.status().as_u16();
                        let body = r.bytes().await.map_err(|e| e.to_string())?;
                        Ok::<_, String>((status, body.to_vec()))
                    })
                })
                .collect();
            let mut answers = Vec::with_capacity(tasks.len());
            for t in tasks {
                answers.push(t.await.unwrap());
            }
            answers
        });
        watching.store(false, std::sync::atomic::Ordering::Relaxed);
        let (rss, busy) = watcher.join().unwrap();
        (answers, rss, busy)
    });
    let elapsed = started.elapsed();

    let mut ran = Vec::new();
    let mut throttled = 0;
    for a in &answers {
        let (status, bytes) = a.as_ref().unwrap_or_else(|e| panic!("request failed: {e}"));
        let v: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: not JSON ({e}): {}",
                String::from_utf8_lossy(bytes)
            )
        });
        match status {
            200 => ran.push((v["start"].as_f64().unwrap(), v["end"].as_f64().unwrap())),
            429 => {
                throttled += 1;
                assert_eq!(v["error"]["code"], "too_many_requests", "{v}");
                let message = v["error"]["message"].as_str().unwrap();
                assert!(message.contains("reserved concurrency of 2"), "{message}");
            }
            other => panic!("status {other}: {v}"),
        }
    }
    eprintln!(
        "storm: {} ran, {throttled} throttled in {elapsed:?}; peak busy {peak_busy}; \
         RSS {rss_before} KiB before, {peak_rss} KiB at the peak",
        ran.len()
    );
    assert_eq!(ran.len() + throttled, REQUESTS);
    assert!(!ran.is_empty(), "nothing ran");
    assert!(max_overlap(&ran) <= 2, "more than 2 ran at once: {ran:?}");
    assert!(peak_busy <= 2, "health saw {peak_busy} busy sandboxes");
    assert!(
        peak_rss < rss_before + 64 * 1024,
        "control plane RSS grew from {rss_before} to {peak_rss} KiB"
    );
    canary.check(&server, "a storm of requests");
    assert_eq!(http.invoke("limited", "{}").status, 200);
}
