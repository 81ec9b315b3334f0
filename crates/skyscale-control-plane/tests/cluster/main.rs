//! (work in progress)
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod forward;
mod net;
mod nodes;
mod pg;

use std::time::Duration;

#[test]
fn launch_smoke() {
    let network = net::Network::create(1);
    let ns = &network.namespaces[0];
    let mut node = nodes::Node::worker(
        "worker-1",
        &ns.name,
        &[
            ("SKYSCALE_ROLE", "all".into()),
            ("SKYSCALE_HOST", ns.addr.to_string()),
            ("PORT", "7100".into()),
            ("SKYSCALE_DRIVER", "runc".into()),
            ("WARM_POOL_SIZE", "1".into()),
            ("DB_PATH", "/tmp/ctest-smoke.db".into()),
        ],
    );
    let dbp = node.dir.path().join("x.db");
    let _ = dbp;
    let url = node.wait_line("skyscale-control-plane listening on ", Duration::from_secs(60));
    eprintln!("url {url}");
    let http = common::Http {
        base: url.clone(),
        key: Some(common::ADMIN_KEY.into()),
        client: reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
    };
    let r = common::create_fn(&http, "f", "import os\ndef handler(e, c):\n    return {'pid': os.getpid(), 'tok': e['tok']}\n", serde_json::json!({}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = http.invoke("f", r#"{"tok": "abc"}"#);
    eprintln!("{} {}", r.status, String::from_utf8_lossy(&r.body));
    assert_eq!(r.status, 200);
    let init = node.daemon_pid();
    let members = nodes::pid_namespace_members(init);
    eprintln!("init {init} members {members:?}");
    for m in &members {
        eprintln!("  {m}: {}", std::fs::read_to_string(format!("/proc/{m}/cmdline")).unwrap_or_default().replace('\0', " "));
    }
    assert!(members.len() > 2);
    node.kill9();
    eprintln!("killed; sandbox bundles: {:?}", std::fs::read_dir("/run/skyscale/sandboxes").unwrap().count());
}
