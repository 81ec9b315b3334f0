//! Control planes sharing one PostgreSQL database (`SKYSCALE_DATABASE_URL`): what one node
//! writes, another serves — code packages included, which travel through the database.
//! Needs `SKYSCALE_TEST_DATABASE_URL` (scripts/test-postgres; scripts/test sets it).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{create_fn, Server, SharedDatabase};
use serde_json::json;

const HANDLER: &str = r#"
def handler(event, context):
    return {"doubled": event["n"] * 2, "function": context.function_name}
"#;

#[test]
fn a_function_deployed_through_one_node_runs_on_another() {
    let db = SharedDatabase::create();
    let a = Server::start_shared(common::API_DRIVER, &db, &[]);
    let b = Server::start_shared(common::API_DRIVER, &db, &[]);
    let runtime = skyscale_core::Runtimes::discover(std::path::Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed");
    let r = create_fn(
        &a.http(),
        "f",
        HANDLER,
        json!({"runtime": runtime.as_str()}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let sha = r.json()["code_sha256"].as_str().unwrap().to_owned();

    // The package is in the database as soon as the function exists.
    let stored: Vec<String> = db
        .client()
        .query("SELECT sha256 FROM code_packages", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, vec![sha.clone()]);

    // B never saw the upload: its cold start fetches the package, checks it and runs it.
    let zip_on_b = b.dir.path().join("data/code").join(format!("{sha}.zip"));
    assert!(!zip_on_b.exists());
    let out = b.http().invoke("f", r#"{"n": 21}"#);
    assert_eq!(out.status, 200, "{}", common::tail(&b.log(), 30));
    assert_eq!(out.json(), json!({"doubled": 42, "function": "f"}));
    assert!(
        b.log().contains("fetched a code package from the database"),
        "{}",
        common::tail(&b.log(), 30)
    );
    assert!(
        zip_on_b.is_file(),
        "B keeps its copy: {}",
        zip_on_b.display()
    );
    // And A, which took the upload, runs it from its own copy.
    let out = a.http().invoke("f", r#"{"n": 1}"#);
    assert_eq!(out.json(), json!({"doubled": 2, "function": "f"}));
    assert!(!a.log().contains("fetched a code package from the database"));
}

/// A layer published through one node is merged into `/opt` on another, which fetches its
/// package from the database like a function's.
#[test]
fn a_layer_published_through_one_node_runs_on_another() {
    use base64::Engine;
    let db = SharedDatabase::create();
    let a = Server::start_shared(common::API_DRIVER, &db, &[]);
    let b = Server::start_shared(common::API_DRIVER, &db, &[]);
    let runtime = skyscale_core::Runtimes::discover(std::path::Path::new("/usr/bin"))
        .default_runtime()
        .expect("a python3.N is installed");
    let zip = common::zip_of(&[("python/shared.py", "WHO = 'the layer'\n")]);
    let r = a.http().post_json(
        "/v1/layers/deps/versions",
        &json!({"zip_base64": base64::engine::general_purpose::STANDARD.encode(zip)}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let layer = r.json();
    let (arn, layer_sha) = (
        layer["arn"].as_str().unwrap().to_owned(),
        layer["code_sha256"].as_str().unwrap().to_owned(),
    );
    let r = create_fn(
        &a.http(),
        "g",
        "import shared\n\ndef handler(event, context):\n    return shared.WHO\n",
        json!({"runtime": runtime.as_str(), "layers": [arn]}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["layers"][0]["arn"], layer["arn"]);

    let on_b = b
        .dir
        .path()
        .join("data/code")
        .join(format!("{layer_sha}.zip"));
    assert!(!on_b.exists());
    let out = b.http().invoke("g", "{}");
    assert_eq!(out.status, 200, "{}", common::tail(&b.log(), 30));
    assert_eq!(out.json(), json!("the layer"));
    assert!(
        on_b.is_file(),
        "B fetched the layer's package: {}",
        on_b.display()
    );
}

/// Whether `server`'s log says it took the singleton of `chore`.
fn runs(server: &Server, chore: &str) -> bool {
    server.log().lines().any(|l| {
        l.contains("this node runs the chore") && l.contains(&format!("chore=\"{chore}\""))
    })
}

#[test]
fn one_node_runs_the_schedule_chore_and_another_takes_over_when_it_stops() {
    let db = SharedDatabase::create();
    let a = Server::start_shared(common::API_DRIVER, &db, &[]);
    let b = Server::start_shared(common::API_DRIVER, &db, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let first = loop {
        match (runs(&a, "schedules"), runs(&b, "schedules")) {
            (true, false) => break 'a',
            (false, true) => break 'b',
            (true, true) => panic!("both nodes run the schedule chore"),
            (false, false) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no node runs the schedule chore"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    };
    // Each chore has its singleton: the records pruning and the package collection too.
    for chore in ["records", "code-packages"] {
        common::wait_for(&a, std::time::Duration::from_secs(90), chore, || {
            (runs(&a, chore) || runs(&b, chore)).then_some(())
        });
        assert!(
            !(runs(&a, chore) && runs(&b, chore)),
            "both nodes run {chore}"
        );
    }
    // The other node tried, and found the chore taken.
    let (mut holder, other) = if first == 'a' { (a, b) } else { (b, a) };
    common::wait_for(
        &other,
        std::time::Duration::from_secs(15),
        "a refused try",
        || {
            other
                .log()
                .lines()
                .any(|l| l.contains("another node runs the chore") && l.contains("\"schedules\""))
                .then_some(())
        },
    );
    assert!(!runs(&other, "schedules"));
    // The holder stops: the other node takes the chore at its next try, a few seconds on.
    holder.stop();
    common::wait_for(
        &other,
        std::time::Duration::from_secs(15),
        "the takeover",
        || runs(&other, "schedules").then_some(()),
    );
}

#[test]
fn a_database_url_with_db_path_or_of_another_kind_is_refused_by_name() {
    // refused_setting sets DB_PATH too: both are named.
    let err = common::refused_setting(
        "SKYSCALE_DATABASE_URL",
        "postgres://u:p@127.0.0.1:5432/skyscale",
    );
    assert!(
        err.contains("SKYSCALE_DATABASE_URL") && err.contains("DB_PATH"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skyscale-control-plane"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SKYSCALE_DATABASE_URL", "mysql://u:p@127.0.0.1/skyscale")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SKYSCALE_DATABASE_URL is invalid") && err.contains("postgres://"),
        "{err}"
    );
}
