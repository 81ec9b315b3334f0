//! `skyscale function deploy` with a `requirements.txt`, end to end on runc: pip runs in a
//! networked sandbox of the function's runtime (PyPI must be reachable), the result is a
//! `skyscale-deps-<key>` layer attached first, in the same update as the code; the same
//! requirements again install nothing (no new layer version is published); a bad
//! requirement is pip's error and leaves the function as it was. Nothing is installed into
//! the host's Python.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::Path;

use common::{tail, Server};

/// The python3.N of the host: the runtime the functions use.
fn runtime() -> String {
    skyscale_core::Runtimes::discover(Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed")
        .to_string()
}

/// A pure-Python package and a manylinux wheel with native code (and its dependency).
const REQUIREMENTS: &str = "# the function's dependencies\n\
                            six==1.16.0\n\
                            pydantic-core==2.27.2   # native code\n";

const HANDLER: &str = r#"import six
import pydantic_core


def handler(event, context):
    v = pydantic_core.SchemaValidator({'type': 'int'}).validate_python('42')
    return f'{six.__version__} {pydantic_core.__version__} {v} {pydantic_core._pydantic_core.__file__}'
"#;

fn write_dir(dir: &Path, handler: &str, requirements: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("handler.py"), handler).unwrap();
    if let Some(r) = requirements {
        std::fs::write(dir.join("requirements.txt"), r).unwrap();
    }
}

/// Runs the CLI, asserts success and returns (stdout, stderr).
fn cli(server: &Server, args: &[&str]) -> (String, String) {
    let out = server.cli(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "skyscale {args:?} failed\nstdout: {stdout}\nstderr: {stderr}\nserver log tail:\n{}",
        tail(&server.log(), 60)
    );
    (stdout, stderr)
}

/// The versions of the requirements layers (`skyscale-deps-*`) as `skyscale layer list`
/// shows them: their names.
fn deps_layers(server: &Server) -> Vec<String> {
    let list = server.http().get("/v1/layers").json();
    list["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["layer"].as_str().unwrap().to_owned())
        .filter(|n| n.starts_with("skyscale-deps-"))
        .collect()
}

fn versions_of(server: &Server, layer: &str) -> usize {
    let v = server
        .http()
        .get(&format!("/v1/layers/{layer}/versions"))
        .json();
    v["layers"].as_array().unwrap().len()
}

#[test]
fn requirements_build_into_a_shared_layer_on_runc() {
    requirements_build_into_a_shared_layer("runc");
}

#[test]
fn requirements_build_into_a_shared_layer_on_gvisor() {
    requirements_build_into_a_shared_layer("gvisor");
}

fn requirements_build_into_a_shared_layer(driver: &str) {
    let server = Server::start(driver);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();

    // A function answering from its first code, without dependencies.
    let v1 = dir.path().join("v1");
    write_dir(&v1, "def handler(event, context):\n    return 'v1'\n", None);
    cli(
        &server,
        &[
            "function",
            "create",
            "--name",
            "deps",
            "--runtime",
            &rt,
            "--path",
            v1.to_str().unwrap(),
        ],
    );
    let (answer, _) = cli(&server, &["function", "invoke", "--name", "deps"]);
    assert!(answer.contains("v1"), "{answer}");

    // Deploying a directory with a requirements.txt builds it (pip's output streams to
    // stderr) and attaches the layer.
    let v2 = dir.path().join("v2");
    write_dir(&v2, HANDLER, Some(REQUIREMENTS));
    let (out, err) = cli(
        &server,
        &[
            "function",
            "deploy",
            "--name",
            "deps",
            "--path",
            v2.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("Successfully installed") && err.contains("pydantic_core"),
        "pip's output: {err}"
    );
    assert!(err.contains("published layer"), "{err}");
    assert!(out.contains("deployed"), "{out}");
    let (answer, _) = cli(&server, &["function", "invoke", "--name", "deps"]);
    // The native module is the one from the layer, under /opt/python.
    assert!(
        answer.contains("1.16.0 2.27.2 42 /opt/python/pydantic_core/_pydantic_core"),
        "{answer}"
    );
    let layers = deps_layers(&server);
    assert_eq!(layers.len(), 1, "{layers:?}");
    let layer = layers[0].clone();
    assert_eq!(versions_of(&server, &layer), 1);
    let info = server.http().get("/v1/functions/deps").json();
    assert_eq!(
        info["layers"][0]["layer"], layer,
        "the requirements layer comes first: {info}"
    );

    // The same requirements again (new code, comments and spacing changed): nothing is
    // installed, no layer version is published, the same layer stays attached.
    let v3 = dir.path().join("v3");
    write_dir(
        &v3,
        &HANDLER.replace("return f'", "return 'again ' + f'"),
        Some("six==1.16.0\n\n  pydantic-core==2.27.2\n"),
    );
    let (_, err) = cli(
        &server,
        &[
            "function",
            "deploy",
            "--name",
            "deps",
            "--path",
            v3.to_str().unwrap(),
        ],
    );
    assert!(err.contains("reusing layer"), "{err}");
    assert!(!err.contains("Successfully installed"), "{err}");
    assert_eq!(
        versions_of(&server, &layer),
        1,
        "no new build was published"
    );
    assert_eq!(deps_layers(&server), vec![layer.clone()]);
    let (answer, _) = cli(&server, &["function", "invoke", "--name", "deps"]);
    assert!(answer.contains("again 1.16.0 2.27.2 42"), "{answer}");

    // Another function with the same requirements (given by --requirements) shares it.
    let other = dir.path().join("other");
    write_dir(&other, HANDLER, None);
    let req_file = dir.path().join("reqs.txt");
    std::fs::write(&req_file, REQUIREMENTS).unwrap();
    cli(
        &server,
        &[
            "function",
            "create",
            "--name",
            "deps2",
            "--runtime",
            &rt,
            "--path",
            v1.to_str().unwrap(),
        ],
    );
    let (_, err) = cli(
        &server,
        &[
            "function",
            "deploy",
            "--name",
            "deps2",
            "--path",
            other.to_str().unwrap(),
            "--requirements",
            req_file.to_str().unwrap(),
        ],
    );
    assert!(err.contains("reusing layer"), "{err}");
    assert_eq!(versions_of(&server, &layer), 1);
    let (answer, _) = cli(&server, &["function", "invoke", "--name", "deps2"]);
    assert!(answer.contains("1.16.0 2.27.2 42"), "{answer}");

    // A requirement pip cannot satisfy: pip's error, and the function is unchanged.
    let before = server.http().get("/v1/functions/deps").json();
    let bad = dir.path().join("bad");
    write_dir(
        &bad,
        "def handler(event, context):\n    return 'bad code deployed'\n",
        Some("skyscale-no-such-package-for-tests==0.0.1\n"),
    );
    let out = server.cli(&[
        "function",
        "deploy",
        "--name",
        "deps",
        "--path",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("error:") && err.contains("pip exited with 1"),
        "{err}"
    );
    assert!(
        err.contains("No matching distribution found for skyscale-no-such-package-for-tests"),
        "pip's message: {err}"
    );
    let after = server.http().get("/v1/functions/deps").json();
    assert_eq!(after["revision"], before["revision"], "{after}");
    assert_eq!(after["code_sha256"], before["code_sha256"]);
    assert_eq!(after["layers"], before["layers"]);
    let (answer, _) = cli(&server, &["function", "invoke", "--name", "deps"]);
    assert!(answer.contains("again 1.16.0 2.27.2 42"), "{answer}");
    assert_eq!(
        deps_layers(&server),
        vec![layer],
        "a failed build publishes nothing"
    );
}

/// What a one-file build cannot honour is refused by name before any sandbox starts.
#[test]
fn requirements_naming_other_files_are_refused() {
    let server = Server::start("process");
    let resp = server.http().post_json(
        "/v1/requirements",
        &serde_json::json!({"runtime": runtime(), "requirements": "-r base.txt\n"}),
    );
    assert_eq!(resp.status, 400, "{:?}", resp.json());
    assert!(
        resp.error_message()
            .contains("line 1: including another file (-r)"),
        "{}",
        resp.error_message()
    );
    // The process driver isolates nothing: it has no build sandbox to offer.
    let resp = server.http().post_json(
        "/v1/requirements",
        &serde_json::json!({"runtime": runtime(), "requirements": "six\n"}),
    );
    assert!(
        resp.error_message()
            .contains("needs the runc or gvisor driver"),
        "{}",
        resp.error_message()
    );
    let resp = server.http().post_json(
        "/v1/requirements",
        &serde_json::json!({"runtime": "provided.al2023", "requirements": "six\n"}),
    );
    assert_eq!(resp.status, 400);
    assert!(
        resp.error_message()
            .contains("requirements.txt is for Python runtimes"),
        "{}",
        resp.error_message()
    );
}

/// The control plane's `PIP_INDEX_URL` reaches pip (here an index that has nothing: pip
/// says where it looked and what it could not find).
#[test]
fn the_pip_index_comes_from_the_control_planes_environment() {
    let index = "https://pypi.org/skyscale-no-such-index/";
    let server = Server::start_with("runc", &[("PIP_INDEX_URL", index)]);
    let resp = server.http().post_json(
        "/v1/requirements",
        &serde_json::json!({"runtime": runtime(), "requirements": "six==1.16.0\n"}),
    );
    let message = resp.error_message();
    assert_eq!(resp.status, 400, "{message}");
    assert!(
        message.contains(&format!("Looking in indexes: {index}")),
        "{message}"
    );
    assert!(
        message.contains("No matching distribution found for six==1.16.0"),
        "{message}"
    );
}

/// One server-sent event of a streamed build: when it arrived (since the request was
/// sent), its name and its data (JSON).
struct Streamed {
    at: std::time::Duration,
    event: String,
    data: serde_json::Value,
}

/// `POST /v1/requirements` with `Accept: text/event-stream`: every event, as it arrived.
fn stream_build(server: &Server, requirements: &str) -> Vec<Streamed> {
    use std::io::BufRead;
    let started = std::time::Instant::now();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/requirements", server.url))
        .bearer_auth(common::ADMIN_KEY)
        .header("accept", "text/event-stream")
        .json(&serde_json::json!({"runtime": runtime(), "requirements": requirements}))
        .timeout(std::time::Duration::from_secs(600))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut events = Vec::new();
    let (mut event, mut data) = (String::new(), String::new());
    for line in std::io::BufReader::new(resp).lines() {
        let line = line.unwrap();
        if line.is_empty() {
            if !data.is_empty() {
                events.push(Streamed {
                    at: started.elapsed(),
                    event: std::mem::take(&mut event),
                    data: serde_json::from_str(&data).unwrap(),
                });
                data.clear();
            }
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
    }
    events
}

fn output_of(events: &[Streamed]) -> String {
    events
        .iter()
        .filter(|e| e.event == "output")
        .map(|e| format!("{}\n", e.data["line"].as_str().unwrap()))
        .collect()
}

/// The sha256 of six 1.16.0's wheel on PyPI.
const SIX_WHEEL_SHA256: &str = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254";

/// pip's output streams while it runs; two requests for the same requirements at once
/// build once (the second waits and reuses); `--require-hashes` is pip's to enforce: the
/// right hash installs, a wrong or missing one is pip's error; the metrics count it all.
#[test]
fn builds_stream_run_once_per_key_and_honour_hashes() {
    let server = Server::start("runc");
    let pinned =
        format!("--require-hashes\nsix==1.16.0 \\\n    --hash=sha256:{SIX_WHEEL_SHA256}\n");

    let both: Vec<Vec<Streamed>> = std::thread::scope(|s| {
        let a = s.spawn(|| stream_build(&server, &pinned));
        let b = s.spawn(|| stream_build(&server, &pinned));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    let result = |events: &[Streamed]| {
        let last = events.last().expect("some events");
        assert_eq!(last.event, "result", "{}", output_of(events));
        last.data.clone()
    };
    let (built, waited): (Vec<_>, Vec<_>) = both
        .iter()
        .partition(|events| result(events)["built"] == true);
    assert_eq!((built.len(), waited.len()), (1, 1), "one build, one reuse");
    let (built, waited) = (built[0], waited[0]);
    let output = output_of(built);
    assert!(
        output.contains("Successfully installed six-1.16.0"),
        "{output}"
    );
    // Live: the first line came well before the end (pip alone takes over a second).
    let first = built.iter().find(|e| e.event == "output").unwrap().at;
    let end = built.last().unwrap().at;
    assert!(
        end - first > std::time::Duration::from_millis(300),
        "the output came all at once: first line at {first:?}, result at {end:?}"
    );
    assert!(
        output_of(waited).contains("being built by another request: waiting"),
        "{}",
        output_of(waited)
    );
    let layer = result(built)["layer"]["layer"].as_str().unwrap().to_owned();
    assert_eq!(result(waited)["layer"], result(built)["layer"]);
    assert_eq!(versions_of(&server, &layer), 1, "one version published");

    // A wrong hash: pip refuses the download, and nothing is published.
    let wrong = format!(
        "--require-hashes\nsix==1.16.0 --hash=sha256:{}\n",
        "0".repeat(64)
    );
    let events = stream_build(&server, &wrong);
    let last = events.last().unwrap();
    assert_eq!(last.event, "error", "{}", output_of(&events));
    assert_eq!(last.data["status"], 400);
    let message = last.data["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("THESE PACKAGES DO NOT MATCH THE HASHES"),
        "{message}"
    );
    // A requirement without a hash in hash-checking mode.
    let events = stream_build(&server, "--require-hashes\nsix==1.16.0\n");
    let message = events.last().unwrap().data["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("Hashes are required in --require-hashes mode"),
        "{message}"
    );
    assert_eq!(deps_layers(&server), vec![layer]);

    let metrics = server.http().get("/metrics");
    let text = String::from_utf8_lossy(&metrics.body);
    for (result, n) in [("built", 1), ("reused", 1), ("failed", 2)] {
        let line = format!("skyscale_requirements_builds_total{{result=\"{result}\"}} {n}\n");
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
}
