//! A bridge in the root namespace and network namespaces joined to it by veth pairs, all
//! made with `ip` (iproute2). Every name carries the owning process's pid (`skyc<pid>`
//! bridge, `skyw<pid>-<i>` namespaces, `skyv<pid>-<i>` / `skyp<pid>-<i>` veth ends), so what
//! a killed run left behind is found and removed by the next one ([`remove_stale`]) without
//! touching a run that is still going.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// Runs `ip <args>`; fails with what `ip` said.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running `ip {}` (install iproute2)", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `ip <args>` and returns its stdout, ignoring failures (teardown and discovery).
fn ip_quiet(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Runs `ip <args>` for teardown: failures are ignored, and so is what `ip` prints.
fn ip_teardown(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The pid a name made by this module carries (`skyc1234`, `skyw1234-2`), if any.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = ["skyc", "skyw", "skyv", "skyp"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    rest.split('-').next()?.parse().ok()
}

/// Removes bridges, veths and namespaces left by runs that are gone (see
/// [`crate::is_live_owner`]).
pub fn remove_stale() {
    let me = std::process::id();
    let stale =
        |name: &str| owner_pid(name).is_some_and(|pid| pid != me && !crate::is_live_owner(pid));
    for ns in ip_quiet(&["netns", "list"]).lines() {
        let name = ns.split_whitespace().next().unwrap_or_default();
        if name.starts_with("skyw") && stale(name) {
            eprintln!("skyscale-testnet: removing stale network namespace {name}");
            ip_teardown(&["netns", "del", name]);
        }
    }
    for line in ip_quiet(&["-o", "link", "show"]).lines() {
        // `7: skyv123-1@if6: <...>` or `5: skyc123: <...>`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if (name.starts_with("skyc") || name.starts_with("skyv")) && stale(name) {
            eprintln!("skyscale-testnet: removing stale link {name}");
            ip_teardown(&["link", "del", name]);
        }
    }
}

/// A third octet `x` such that no interface of the root namespace has an address in
/// `10.213.x.0/24`.
fn free_subnet() -> anyhow::Result<u8> {
    let used = ip_quiet(&["-4", "-o", "addr", "show"]);
    let start = (std::process::id() % 250) as u8 + 1;
    (0..250u16)
        .map(|i| ((u16::from(start) - 1 + i) % 250 + 1) as u8)
        .find(|x| !used.contains(&format!("10.213.{x}.")))
        .context("no free 10.213.x.0/24 subnet in the root namespace")
}

/// The bridge and the namespaces. Dropping it deletes them (also on panic or error).
pub struct Network {
    pub bridge: String,
    /// `10.213.x.1`, the bridge's address: the root namespace as the namespaces see it.
    pub host: Ipv4Addr,
    pub namespaces: Vec<Namespace>,
}

pub struct Namespace {
    pub name: String,
    /// The veth end on the bridge (root namespace): taking it down cuts the namespace off.
    pub host_veth: String,
    pub addr: Ipv4Addr,
}

impl Namespace {
    /// `/run/netns/<name>`, for `nsenter --net=<path>` (rather than `ip netns exec`, which
    /// remounts `/sys` in a mount namespace of its own and so hides the cgroup hierarchies
    /// runc needs).
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Network {
    /// A bridge with `10.213.x.1/24` and `count` namespaces `10.213.x.(10 + i)`, `i` from 1,
    /// after removing what dead runs left. What was made before a failure is removed.
    pub fn create(count: usize) -> anyhow::Result<Network> {
        if count > 200 {
            bail!("{count} namespaces do not fit in a /24 from .11");
        }
        remove_stale();
        let pid = std::process::id();
        let x = free_subnet()?;
        let mut net = Network {
            bridge: format!("skyc{pid}"),
            host: Ipv4Addr::new(10, 213, x, 1),
            namespaces: Vec::new(),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 1..=count {
            let ns = Namespace {
                name: format!("skyw{pid}-{i}"),
                host_veth: format!("skyv{pid}-{i}"),
                addr: Ipv4Addr::new(10, 213, x, 10 + i as u8),
            };
            ip(&["netns", "add", &ns.name])?;
            // Pushed before configuring, so that the drop removes a half-made one too.
            net.namespaces.push(ns);
            net.configure(net.namespaces.len() - 1, &format!("skyp{pid}-{i}"))?;
        }
        Ok(net)
    }

    /// The veth pair of namespace `i` (0-based), its addresses and its default route.
    fn configure(&self, i: usize, inner: &str) -> anyhow::Result<()> {
        let ns = &self.namespaces[i];
        ip(&[
            "link",
            "add",
            &ns.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "netns",
            &ns.name,
        ])?;
        ip(&["link", "set", &ns.host_veth, "master", &self.bridge])?;
        ip(&["link", "set", &ns.host_veth, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["-n", ns.name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        in_ns(&["link", "set", "lo", "up"])?;
        in_ns(&["addr", "add", &format!("{}/24", ns.addr), "dev", inner])?;
        in_ns(&["link", "set", inner, "up"])?;
        in_ns(&["route", "add", "default", "via", &self.host.to_string()])?;
        Ok(())
    }

    /// Takes namespace `i`'s (1-based) link down (`up = false`) or up again.
    pub fn set_link(&self, i: usize, up: bool) -> anyhow::Result<()> {
        let ns = i
            .checked_sub(1)
            .and_then(|i| self.namespaces.get(i))
            .with_context(|| {
                format!(
                    "no namespace {i}: the network has {} (numbered from 1)",
                    self.namespaces.len()
                )
            })?;
        ip(&["link", "set", &ns.host_veth, if up { "up" } else { "down" }])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            // Deleting the namespace deletes its veth end and so the pair.
            ip_teardown(&["netns", "del", &ns.name]);
            ip_teardown(&["link", "del", &ns.host_veth]);
        }
        ip_teardown(&["link", "del", &self.bridge]);
    }
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn names_carry_their_owner() {
        assert_eq!(owner_pid("skyc1234"), Some(1234));
        assert_eq!(owner_pid("skyw1234-2"), Some(1234));
        assert_eq!(owner_pid("skyv77-10"), Some(77));
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("skywx-1"), None);
    }
}
