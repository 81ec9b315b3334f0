//! Outbound network for the sandboxes that are allowed it. Every other sandbox has an empty
//! network namespace (loopback only; runsc `--network=none`).
//!
//! A networked sandbox gets a named network namespace (`/run/netns/<sandbox id>`) joined by
//! the OCI spec, with one veth pair: `eth0` inside (`10.200.x.y+2/30`, default route via
//! the host end) and `skh<12 hex of the id>` on the host (`.y+1/30`). One nftables table,
//! `inet skyscale`, shared by every control plane on the host:
//! - packets from a sandbox to the host itself are rejected (the control plane's port, the
//!   host's loopback services and every other local address: they arrive on the `input`
//!   hook whatever address they were sent to);
//! - sandboxes cannot reach each other, nor link-local addresses (cloud metadata services);
//! - everything else is forwarded and masqueraded behind the host's address.
//!
//! Addresses are claimed host-wide (see `claims`), so that several control planes on one
//! host never hand out the same one. Destroying the sandbox deletes its namespace (which
//! deletes the veth pair) and its claim. The namespace, the host interface and the claim are
//! all named or tagged by the sandbox id, so a cleanup that knows the id finds them all.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::run_cli;
use crate::SandboxId;

/// Sandbox addresses: `10.200.0.0/16`, one `/30` per networked sandbox.
const SUBNET: [u8; 2] = [10, 200];
const SLOTS: u32 = 1 << 14;
/// Host-side interface names: this prefix and 12 hex digits of the sandbox id (IFNAMSIZ).
const HOST_IF_PREFIX: &str = "skh";
const NETNS_DIR: &str = "/run/netns";
const CLAIMS_DIR: &str = "/run/skyscale/net";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The firewall, applied atomically and idempotently (`nft -f`): the table is created if
/// missing, emptied, and filled again in one transaction.
const RULES: &str = r#"
table inet skyscale {}
flush table inet skyscale
table inet skyscale {
    chain input {
        type filter hook input priority filter - 10; policy accept;
        iifname "skh*" reject with icmpx type admin-prohibited
    }
    chain forward {
        type filter hook forward priority filter - 10; policy accept;
        iifname "skh*" oifname "skh*" reject with icmpx type admin-prohibited
        iifname "skh*" ip daddr 169.254.0.0/16 reject with icmpx type admin-prohibited
        iifname "skh*" ip6 daddr fe80::/10 reject with icmpx type admin-prohibited
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 10.200.0.0/16 oifname != "skh*" masquerade
    }
}
"#;

/// The network half of a sandbox with outbound access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub slot: u32,
    /// The named namespace the OCI spec joins.
    pub netns: PathBuf,
}

fn host_if(id: &SandboxId) -> String {
    let hex = &id.as_str()[SandboxId::PREFIX.len()..];
    format!("{HOST_IF_PREFIX}{}", &hex[..12])
}

fn addresses(slot: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(SUBNET[0], SUBNET[1], 0, 0)) + slot * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

fn netns_path(id: &SandboxId) -> PathBuf {
    Path::new(NETNS_DIR).join(id.as_str())
}

/// `ip`, `nft` or `sysctl` with a deadline; a failure says which command and why.
async fn run(binary: &str, args: &[&str]) -> Result<(), String> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let out = run_cli(Path::new(binary), &args, TIMEOUT)
        .await
        .map_err(|e| format!("{binary} {}: {e}", args_text(&args)))?;
    if out.success() {
        Ok(())
    } else {
        Err(format!("{binary} {}: {}", args_text(&args), out.message()))
    }
}

fn args_text(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks that `ip` and `nft` exist, turns on IPv4 forwarding and installs the firewall.
/// Called once, before the first networked sandbox.
pub(crate) async fn prepare_host() -> Result<(), String> {
    for tool in ["ip", "nft"] {
        if which(tool).is_none() {
            return Err(format!(
                "`{tool}` is not installed (needed for sandboxes with network access): \
                 apt-get install {}",
                if tool == "ip" { "iproute2" } else { "nftables" }
            ));
        }
    }
    std::fs::create_dir_all(CLAIMS_DIR).map_err(|e| format!("creating {CLAIMS_DIR}: {e}"))?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| format!("enabling IPv4 forwarding: {e}"))?;
    let nft = which("nft").unwrap_or_else(|| PathBuf::from("nft"));
    // A file per process: concurrent control planes never read each other's half-written one.
    let rules = Path::new(CLAIMS_DIR).join(format!("firewall-{}.nft", std::process::id()));
    std::fs::write(&rules, RULES).map_err(|e| format!("writing {}: {e}", rules.display()))?;
    let applied = run(&nft.to_string_lossy(), &["-f", &rules.to_string_lossy()]).await;
    let _ = std::fs::remove_file(&rules);
    applied.map_err(|e| format!("installing the sandbox firewall: {e}"))
}

fn which(tool: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Creates `id`'s namespace and veth pair. On failure nothing is left behind.
pub(crate) async fn setup(id: &SandboxId) -> Result<Lease, String> {
    let slot = crate::claims::claim(Path::new(CLAIMS_DIR), 0, SLOTS, id)
        .map_err(|e| format!("claiming a sandbox network address: {e}"))?;
    let lease = Lease {
        slot,
        netns: netns_path(id),
    };
    if let Err(e) = configure(id, slot).await {
        teardown(id).await;
        return Err(e);
    }
    Ok(lease)
}

async fn configure(id: &SandboxId, slot: u32) -> Result<(), String> {
    let ns = id.as_str();
    let host = host_if(id);
    let peer = format!("sks{}", &host[HOST_IF_PREFIX.len()..]);
    let (host_ip, sandbox_ip) = addresses(slot);
    let host_cidr = format!("{host_ip}/30");
    let sandbox_cidr = format!("{sandbox_ip}/30");
    let gateway = host_ip.to_string();
    let steps: [&[&str]; 10] = [
        &["netns", "add", ns],
        &["link", "add", &host, "type", "veth", "peer", "name", &peer],
        &["link", "set", &peer, "netns", ns],
        &["-n", ns, "link", "set", &peer, "name", "eth0"],
        &["addr", "add", &host_cidr, "dev", &host],
        &["link", "set", &host, "up"],
        &["-n", ns, "addr", "add", &sandbox_cidr, "dev", "eth0"],
        &["-n", ns, "link", "set", "eth0", "up"],
        &["-n", ns, "link", "set", "lo", "up"],
        &["-n", ns, "route", "add", "default", "via", &gateway],
    ];
    let ip = which("ip").unwrap_or_else(|| PathBuf::from("ip"));
    for step in steps {
        run(&ip.to_string_lossy(), step).await?;
    }
    Ok(())
}

/// Deletes `id`'s namespace (and with it the veth pair) and its address claim. Idempotent.
pub(crate) async fn teardown(id: &SandboxId) {
    if netns_path(id).exists() {
        let ip = which("ip").unwrap_or_else(|| PathBuf::from("ip"));
        if let Err(e) = run(&ip.to_string_lossy(), &["netns", "delete", id.as_str()]).await {
            tracing::warn!(sandbox = %id, error = %e, "deleting the network namespace");
        }
    }
    // A host end left by a half-finished setup (the peer never moved into the namespace).
    let host = host_if(id);
    if Path::new("/sys/class/net").join(&host).exists() {
        let ip = which("ip").unwrap_or_else(|| PathBuf::from("ip"));
        let _ = run(&ip.to_string_lossy(), &["link", "delete", &host]).await;
    }
    crate::claims::release(Path::new(CLAIMS_DIR), id);
}

/// `nameserver` lines for a networked sandbox: the host's, minus loopback ones (a sandbox
/// cannot reach the host's own resolver).
pub(crate) fn resolv_conf(host_resolv: &str) -> String {
    let mut out = String::new();
    for line in host_resolv.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        match addr.parse::<std::net::IpAddr>() {
            Ok(ip) if !ip.is_loopback() => out.push_str(&format!("nameserver {ip}\n")),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push_str("# the host's resolvers are all on loopback, which sandboxes cannot reach\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        let id = SandboxId::parse("sky0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(host_if(&id), "skh0123456789ab");
        assert!(host_if(&id).len() <= 15);
        assert_eq!(
            addresses(0),
            (Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2))
        );
        assert_eq!(
            addresses(SLOTS - 1),
            (
                Ipv4Addr::new(10, 200, 255, 253),
                Ipv4Addr::new(10, 200, 255, 254)
            )
        );
    }

    #[test]
    fn resolvers_skip_loopback() {
        let host = "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\noptions edns0\n";
        assert_eq!(resolv_conf(host), "nameserver 10.255.255.53\n");
        assert!(resolv_conf("nameserver 127.0.0.1\n").starts_with('#'));
    }
}
