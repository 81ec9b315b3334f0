//! A kill -9 between a networked sandbox's namespace and its bundle (injected with the
//! `SKYSCALE_FAILPOINT=after-netns` test hook) leaves nothing after a restart: no network
//! namespace, no host veth, no address or uid claim, no bundle, no cgroup. Another instance's
//! live networked sandbox on the same host is left alone.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use common::{create_fn, Server};
use serde_json::json;

const HANDLER: &str = "def handler(event, context):\n    return {'ok': True}\n";

/// Claim files (`/run/skyscale/<kind>/<n>`) that hold `id`.
fn claims_of(kind: &str, id: &str) -> Vec<String> {
    std::fs::read_dir(Path::new("/run/skyscale").join(kind))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|o| o == id))
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Everything of sandbox `id` on the host, by kind; empty when nothing is left.
fn traces_of(server: &Server, id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let netns = Path::new("/run/netns").join(id);
    if netns.exists() {
        found.push(netns.display().to_string());
    }
    let veth = Path::new("/sys/class/net").join(format!("skh{}", &id[3..15]));
    if veth.exists() {
        found.push(veth.display().to_string());
    }
    found.extend(claims_of("net", id));
    found.extend(claims_of("uid", id));
    let bundle = server.sandbox_root().join("bundles").join(id);
    if bundle.exists() {
        found.push(bundle.display().to_string());
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for cg in std::fs::read_dir(hierarchy.path().join("skyscale"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if cg.path().join(id).exists() {
                found.push(cg.path().join(id).display().to_string());
            }
        }
    }
    found
}

fn networked(server: &Server, name: &str) {
    let r = create_fn(&server.http(), name, HANDLER, json!({"network": true}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn kill_after_the_namespace_before_the_bundle_leaves_nothing_after_restart() {
    // Another control plane with a live networked sandbox: the cleanup must not touch it.
    let other = Server::start("runc");
    networked(&other, "bystander");
    assert_eq!(other.http().invoke("bystander", "{}").status, 200);

    let mut server = Server::start_with("runc", &[("SKYSCALE_FAILPOINT", "after-netns")]);
    networked(&server, "net-fn");
    // The invocation's cold start reaches the failpoint: the process SIGKILLs itself, so
    // the request gets no answer.
    let url = format!("{}/v1/functions/net-fn/invoke", server.url);
    let answered = reqwest::blocking::Client::new()
        .post(url)
        .bearer_auth(common::ADMIN_KEY)
        .body("{}")
        .timeout(Duration::from_secs(60))
        .send();
    assert!(
        answered.is_err(),
        "the failpoint did not fire: {answered:?}"
    );
    let status = server.wait_exit(Duration::from_secs(30));
    assert_eq!(status.signal(), Some(9), "{status}");

    // What the crash left: the networked sandbox's namespace, veth and claims. Its id from
    // the log line the failpoint wrote inside the create's span.
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("failpoint reached"))
        .unwrap_or_else(|| panic!("no failpoint line in the log:\n{log}"));
    let id = line
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.len() == 35 && w.starts_with("sky"))
        .unwrap_or_else(|| panic!("no sandbox id in {line:?}"))
        .to_owned();
    let left = traces_of(&server, &id);
    for kind in [
        "/run/netns/",
        "/sys/class/net/",
        "/run/skyscale/net/",
        "/run/skyscale/uid/",
    ] {
        assert!(
            left.iter().any(|t| t.starts_with(kind)),
            "the crash should have left a {kind} entry: {left:?}"
        );
    }

    server.set_env("SKYSCALE_FAILPOINT", None);
    server.start_again();
    // The cleanup runs before the server listens.
    assert_eq!(traces_of(&server, &id), Vec::<String>::new());
    // The function works, networked, after the restart.
    let r = server.http().invoke("net-fn", "{}");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // The other instance's sandbox was left alone: still warm.
    let r = other.http().invoke("bystander", "{}");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-skyscale-cold-start"), Some("false"));
}

#[test]
fn an_unknown_failpoint_is_refused_by_name() {
    let err = common::refused_setting("SKYSCALE_FAILPOINT", "before-lunch");
    assert!(
        err.contains("SKYSCALE_FAILPOINT") && err.contains("before-lunch"),
        "{err}"
    );
}
