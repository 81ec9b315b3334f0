//! Code packages on disk: the ones nothing references any more are removed (while
//! invocations keep running), and the account's code storage limit refuses a package that
//! would take it past the limit, changing nothing.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{create_fn, tail, Http, Server};
use serde_json::{json, Value};

/// A handler answering `answer`, with `data/padding.bin` beside it if `padding` is not
/// empty (zeros make a package that unzips to far more than its zip, like the issue's
/// 245 KB zip of 240 MB).
fn package(answer: &str, padding: &[u8]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("handler.py", SimpleFileOptions::default())
        .unwrap();
    write!(
        w,
        "def handler(event, context):\n    return {}\n",
        json!(answer)
    )
    .unwrap();
    if !padding.is_empty() {
        w.start_file("data/padding.bin", SimpleFileOptions::default())
            .unwrap();
        w.write_all(padding).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Creates `name` answering `answer` and checks that it does.
fn create_answering(http: &Http, name: &str, answer: &str) {
    let source = format!(
        "def handler(event, context):\n    return {}\n",
        json!(answer)
    );
    let r = create_fn(http, name, &source, json!({}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(self::answer(http, name), answer);
}

/// `len` bytes that do not compress (xorshift; no two seeds alike).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Names directly under the code directory and the bytes of every file below it. The
/// collection runs in the background: what it removes while this walks counts for nothing
/// (the callers poll until what they expect holds).
fn code_dir(server: &Server) -> (BTreeSet<String>, u64) {
    fn bytes(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    let dir = server.dir.path().join("data/code");
    let names = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    (names, bytes(&dir))
}

/// Polls the code directory until `cond` holds (collections run in the background).
fn wait_code_dir(
    server: &Server,
    what: &str,
    cond: impl Fn(&BTreeSet<String>, u64) -> bool,
) -> (BTreeSet<String>, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (names, bytes) = code_dir(server);
        if cond(&names, bytes) {
            return (names, bytes);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the code directory holds {names:?} ({bytes} bytes)\n{}",
            tail(&server.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn deploy(http: &Http, name: &str, zip: Vec<u8>) -> common::Resp {
    http.send("PUT", &format!("/v1/functions/{name}/code"), Some(zip))
}

fn answer(http: &Http, name: &str) -> String {
    let r = http.invoke(name, "{}");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.header("x-skyscale-function-error").is_none(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice::<String>(&r.body).unwrap()
}

fn sha(http: &Http, name: &str) -> String {
    let f: Value = http.get(&format!("/v1/functions/{name}")).json();
    f["code_sha256"].as_str().unwrap().to_owned()
}

#[test]
fn unreferenced_packages_are_removed_while_invocations_go_on() {
    let server = Server::start("runc");
    let http = server.http();
    create_answering(&http, "keep", "kept");
    // The first collection (at start) has nothing to remove: the canary's package stays.
    let before = wait_code_dir(&server, "the canary's package", |n, _| n.len() == 2);

    let r = http.post_json(
        "/v1/functions",
        &json!({"name": "churn", "runtime": "python3.11"}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let padding = vec![0u8; 4 << 20];
    let r = deploy(&http, "churn", package("deploy 1", &padding));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // While the code is replaced and collected, invocations of it never fail: each cold
    // start links the package it read, or starts over with the new one.
    let stop = Arc::new(AtomicBool::new(false));
    let invoker = {
        let (http, stop) = (server.http(), stop.clone());
        std::thread::spawn(move || {
            let mut answers = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = http.invoke("churn", "{}");
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                let body = String::from_utf8_lossy(&r.body).into_owned();
                assert!(
                    r.header("x-skyscale-function-error").is_none() && body.contains("deploy "),
                    "an invocation racing the deploys failed: {body}"
                );
                answers += 1;
            }
            answers
        })
    };
    let mut version_sha = String::new();
    let mut peak = 0;
    for n in 1..=8 {
        if n > 1 {
            let r = deploy(&http, "churn", package(&format!("deploy {n}"), &padding));
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        assert_eq!(answer(&http, "churn"), format!("deploy {n}"));
        peak = peak.max(code_dir(&server).1);
        if n == 3 {
            let r = http.send("POST", "/v1/functions/churn/versions", None);
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            version_sha = sha(&http, "churn");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let answers = invoker.join().unwrap();
    assert!(answers > 0, "the racing invoker never got an answer");

    // Left: the canary's package, $LATEST's and version 1's (each a directory and a zip).
    let latest = sha(&http, "churn");
    let expected: BTreeSet<String> = before
        .0
        .iter()
        .cloned()
        .chain([
            latest.clone(),
            format!("{latest}.zip"),
            version_sha.clone(),
            format!("{version_sha}.zip"),
        ])
        .collect();
    wait_code_dir(&server, "after eight deploys", |n, _| n == &expected);
    let r = http.send(
        "POST",
        "/v1/functions/churn/invoke?qualifier=1",
        Some(b"{}".to_vec()),
    );
    assert_eq!(String::from_utf8_lossy(&r.body), "\"deploy 3\"");

    // Deleting the function frees everything it had: the directory is as before.
    assert_eq!(http.send("DELETE", "/v1/functions/churn", None).status, 204);
    let after = wait_code_dir(&server, "after the delete", |n, b| {
        n == &before.0 && b == before.1
    });
    assert_eq!(after, before);
    eprintln!(
        "code directory: {} bytes before, at most {peak} during eight deploys, {} after the \
         delete; {answers} racing invocations answered",
        before.1, after.1
    );
    assert_eq!(answer(&http, "keep"), "kept");
    assert!(
        server
            .log()
            .contains("removed code packages nothing references any more"),
        "{}",
        tail(&server.log(), 30)
    );
}

#[test]
fn a_deploy_past_the_code_storage_limit_is_refused_and_changes_nothing() {
    let server = Server::start_with("runc", &[("SKYSCALE_CODE_STORAGE_MB", "2")]);
    let http = server.http();
    create_answering(&http, "app", "old");
    let function_before: Value = http.get("/v1/functions/app").json();
    let dir_before = wait_code_dir(&server, "one package", |n, _| n.len() == 2);

    // 1.2 MB that does not compress: its zip and its unpacked copy are 2.4 MB together.
    let big = package("new", &noise(1_200_000, 7));
    let refused = |r: &common::Resp, what: &str| {
        assert_eq!(
            r.status,
            400,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), "code_storage_exceeded", "{what}");
        let m = r.error_message();
        assert!(
            m.starts_with("code storage limit exceeded: the package needs ")
                && m.contains(" of the 2097152 bytes allowed are in use"),
            "{what}: {m}"
        );
    };
    refused(&deploy(&http, "app", big.clone()), "deploy over /v1");
    {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&big);
        let r = http.post_json(
            "/v1/functions",
            &json!({"name": "other", "runtime": "python3.11", "code_zip_base64": b64}),
        );
        refused(&r, "create over /v1");
    }
    let zip_path = server.dir.path().join("big.zip");
    std::fs::write(&zip_path, &big).unwrap();
    server.cli_fails(
        &[
            "function",
            "deploy",
            "--name",
            "app",
            "--path",
            zip_path.to_str().unwrap(),
        ],
        1,
        "code storage limit exceeded",
    );

    // Nothing changed: no new files, the function as it was, answering with its old code.
    assert_eq!(code_dir(&server), dir_before);
    assert_eq!(http.get("/v1/functions/other").status, 404);
    let function_after: Value = http.get("/v1/functions/app").json();
    assert_eq!(function_after, function_before);
    assert_eq!(answer(&http, "app"), "old");

    // A package that fits is still taken; once the old one is collected the space it held
    // is free again.
    let small = package("fits", &[]);
    assert_eq!(deploy(&http, "app", small).status, 200);
    assert_eq!(answer(&http, "app"), "fits");
    wait_code_dir(&server, "the old package collected", |n, _| {
        n.len() == 2 && !n.contains(function_before["code_sha256"].as_str().unwrap())
    });
}
