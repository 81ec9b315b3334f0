//! The cluster test's network: a bridge in the root namespace and one network namespace per
//! worker, joined to it by a veth pair, all made with `ip` (iproute2). Every name carries the
//! test process's pid (`skyc<pid>` bridge, `skyw<pid>-<i>` namespaces, `skyv<pid>-<i>` /
//! `skyp<pid>-<i>` veth ends), so what a crashed run left behind is found and removed by the
//! next one without touching a run that is still going.

use std::net::Ipv4Addr;
use std::process::Command;

/// Runs `ip <args>`; fails the test with what `ip` said.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `ip <args>` and returns its stdout, ignoring failures (teardown and discovery).
fn ip_quiet(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The pid a name made by this module carries (`skyc1234`, `skyw1234-2`), if any.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = ["skyc", "skyw", "skyv", "skyp"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    rest.split('-').next()?.parse().ok()
}

/// True when `pid` is a live cluster test binary (so its network is in use).
fn is_live_test(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
        exe.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cluster_faults-"))
    })
}

/// Removes bridges, veths and namespaces left by cluster test runs that are gone.
pub fn remove_stale() {
    let me = std::process::id();
    let stale = |name: &str| owner_pid(name).is_some_and(|pid| pid != me && !is_live_test(pid));
    for ns in ip_quiet(&["netns", "list"]).lines() {
        let name = ns.split_whitespace().next().unwrap_or_default();
        if name.starts_with("skyw") && stale(name) {
            eprintln!("cluster test: removing stale network namespace {name}");
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    for line in ip_quiet(&["-o", "link", "show"]).lines() {
        // `7: skyv123-1@if6: <...>` or `5: skyc123: <...>`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if (name.starts_with("skyc") || name.starts_with("skyv")) && stale(name) {
            eprintln!("cluster test: removing stale link {name}");
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}

/// A third octet `x` such that no interface of the root namespace has an address in
/// `10.213.x.0/24`.
fn free_subnet() -> u8 {
    let used = ip_quiet(&["-4", "-o", "addr", "show"]);
    let start = (std::process::id() % 250) as u8 + 1;
    (0..250u16)
        .map(|i| ((u16::from(start) - 1 + i) % 250 + 1) as u8)
        .find(|x| !used.contains(&format!("10.213.{x}.")))
        .expect("a free 10.213.x.0/24 subnet")
}

/// The bridge and the workers' namespaces. Dropping it deletes them (also on panic).
pub struct Network {
    pub bridge: String,
    /// `10.213.x.1`, the bridge's address: the root namespace as the workers see it.
    pub host: Ipv4Addr,
    pub namespaces: Vec<Namespace>,
}

pub struct Namespace {
    pub name: String,
    /// The veth end on the bridge (root namespace): taking it down cuts the worker off.
    pub host_veth: String,
    pub addr: Ipv4Addr,
}

impl Network {
    /// A bridge with `10.213.x.1/24` and `count` namespaces `10.213.x.(10 + i)`, `i` from 1.
    pub fn create(count: usize) -> Network {
        remove_stale();
        let pid = std::process::id();
        let x = free_subnet();
        let mut net = Network {
            bridge: format!("skyc{pid}"),
            host: Ipv4Addr::new(10, 213, x, 1),
            namespaces: Vec::new(),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host),
            "dev",
            &net.bridge,
        ]);
        ip(&["link", "set", &net.bridge, "up"]);
        for i in 1..=count {
            let ns = Namespace {
                name: format!("skyw{pid}-{i}"),
                host_veth: format!("skyv{pid}-{i}"),
                addr: Ipv4Addr::new(10, 213, x, 10 + i as u8),
            };
            let inner = format!("skyp{pid}-{i}");
            ip(&["netns", "add", &ns.name]);
            // Pushed before configuring, so that the drop removes a half-made one too.
            net.namespaces.push(ns);
            let ns = net.namespaces.last().unwrap();
            ip(&[
                "link",
                "add",
                &ns.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                &inner,
                "netns",
                &ns.name,
            ]);
            ip(&["link", "set", &ns.host_veth, "master", &net.bridge]);
            ip(&["link", "set", &ns.host_veth, "up"]);
            let in_ns = |args: &[&str]| {
                let mut all = vec!["-n", ns.name.as_str()];
                all.extend_from_slice(args);
                ip(&all);
            };
            in_ns(&["link", "set", "lo", "up"]);
            in_ns(&["addr", "add", &format!("{}/24", ns.addr), "dev", &inner]);
            in_ns(&["link", "set", &inner, "up"]);
            in_ns(&["route", "add", "default", "via", &net.host.to_string()]);
        }
        net
    }

    /// Takes worker `i`'s (1-based) link down (`up = false`) or up again.
    pub fn set_link(&self, i: usize, up: bool) {
        let ns = &self.namespaces[i - 1];
        ip(&["link", "set", &ns.host_veth, if up { "up" } else { "down" }]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            // Deleting the namespace deletes its veth end and so the pair.
            let _ = Command::new("ip").args(["netns", "del", &ns.name]).status();
            let _ = Command::new("ip")
                .args(["link", "del", &ns.host_veth])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}
