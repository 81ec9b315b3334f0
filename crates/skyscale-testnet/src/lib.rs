//! A Skyscale cluster's network on one machine, for the cluster fault test
//! (`skyscale-control-plane/tests/cluster_faults`) and the benchmark (`skyscale-bench
//! --cluster`): a bridge in the root namespace and one network namespace per worker joined
//! to it by a veth pair ([`net`]), a TCP forwarder that lets the namespaces reach a
//! PostgreSQL listening on 127.0.0.1 ([`forward`]), and a throwaway database per run
//! ([`pg`]).
//!
//! Everything made here carries the process id of the run that made it, so that what a
//! killed run left behind is found and removed by the next one without touching a run that
//! is still going. Needs root, iproute2 (`ip`) and `psql`; [`require_tools`] says which is
//! missing and what to install.

pub mod forward;
pub mod net;
pub mod pg;

use std::path::Path;

/// Executables whose runs own what this crate makes: a live process with one of these
/// names (a prefix: test binaries carry a hash) keeps its network and databases.
const OWNERS: &[&str] = &["cluster_faults-", "skyscale-bench"];

/// True when `pid` is a live run of one of [`OWNERS`].
fn is_live_owner(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
        exe.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            OWNERS.iter().any(|o| n.starts_with(o))
        })
    })
}

/// Fails unless this process runs as root (namespaces, veth pairs, sandboxes).
pub fn require_root(what: &str) -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default();
    if uid != "0" {
        anyhow::bail!("{what} needs root (network namespaces, veth pairs, runc sandboxes)");
    }
    Ok(())
}

/// Fails with the first `(tool, what to install)` not found on `PATH` (or in /usr/sbin,
/// /sbin).
pub fn require_tools(what: &str, tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let path = std::env::var("PATH").unwrap_or_default();
    for (tool, package) in tools {
        let found = path
            .split(':')
            .chain(["/usr/sbin", "/sbin"])
            .any(|d| Path::new(d).join(tool).is_file());
        if !found {
            anyhow::bail!("{what} needs `{tool}`: install {package}");
        }
    }
    Ok(())
}
