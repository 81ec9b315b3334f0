//! (work in progress)
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod forward;
mod net;
mod pg;

#[test]
fn setup_smoke() {
    let network = net::Network::create(3);
    let base = pg::base_url();
    let db = pg::Database::create(&base, 0);
    let fwd = forward::Forwarder::start(
        std::net::SocketAddr::new(network.host.into(), 0),
        base.socket_addr(),
    );
    let url = db.url.via(fwd.addr);
    for ns in &network.namespaces {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args(["--", "psql"])
            .arg(url.to_string())
            .args(["-XAtc", "select current_database(), inet_client_addr()"])
            .output()
            .unwrap();
        eprintln!("{}: {} {}", ns.name, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success());
    }
    network.set_link(2, false);
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", network.namespaces[1].name))
        .args(["--", "timeout", "3", "psql"])
        .arg(url.to_string())
        .args(["-XAtc", "select 1"])
        .output()
        .unwrap();
    eprintln!("down: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success());
    network.set_link(2, true);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", network.namespaces[1].name))
        .args(["--", "timeout", "5", "psql"])
        .arg(url.to_string())
        .args(["-XAtc", "select 1"])
        .output()
        .unwrap();
    eprintln!("up again: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
}
