//! Destroying sandboxes: kill through the cgroup, reap, `delete --force`, remove the bundle
//! and the cgroups; and finding the leftovers of an earlier run.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{state_ids, OciDriver, GONE_WAIT, UID_CLAIMS_DIR};
use crate::cgroup;
use crate::config::Runtime;
use crate::reaper::reap_orphans;
use crate::{DriverError, SandboxId};

impl OciDriver {
    /// Kills, reaps and deletes one sandbox and removes its network, uid claim, cgroups and
    /// bundle. Every step runs even if an earlier one failed, except that the bundle stays when
    /// one did (the next cleanup tries again); the first failure is returned.
    ///
    /// Killing goes through the sandbox's cgroup rather than `<runtime> kill`: SIGKILL to every
    /// process in it (runc: the container's init, whose death tears down its pid namespace;
    /// runsc: the Sentry, the gofer and the ptrace stubs) needs no CLI round trip (~25 ms for
    /// runsc) and works even if the runtime's state is damaged. `<runtime> kill` remains the
    /// fallback for a sandbox with state but no processes in its cgroup. Then the killed
    /// processes are reaped (trap 3) and `delete --force` finds nothing left to wait for.
    pub(super) async fn destroy_inner(&self, id: &SandboxId) -> Result<(), DriverError> {
        let started = Instant::now();
        let mut first_err: Option<DriverError> = None;
        let has_state = self.has_state(id);
        let killed = cgroup::kill_procs(&self.cgroup_dirs(id));
        if killed.is_empty() && has_state {
            match self.cli(id, "kill", &["kill", id.as_str(), "KILL"]).await {
                Ok(out) if !out.success() => {
                    tracing::debug!(sandbox = %id, "kill: {}", out.message())
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(sandbox = %id, error = %e, "kill"),
            }
        }
        wait_reaped(&killed, GONE_WAIT).await;
        if has_state {
            let deleted = self
                .cli(id, "delete", &["delete", "--force", id.as_str()])
                .await;
            let failure = match deleted {
                Ok(out) if !out.success() => Some(out.message()),
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(message) = failure.filter(|_| self.has_state(id)) {
                first_err.get_or_insert(DriverError::Command {
                    id: id.clone(),
                    command: self.step_name("delete"),
                    message,
                });
            }
        }
        // The network and the uid are found by the sandbox id alone: teardown is idempotent.
        crate::net::teardown(id).await;
        match cgroup::remove_dirs(&self.cgroup_dirs(id), GONE_WAIT).await {
            // Empty cgroups: no process runs as the uid any more, so it may go to another.
            Ok(()) => crate::claims::release(Path::new(UID_CLAIMS_DIR), id),
            Err((dir, e)) => {
                first_err.get_or_insert(DriverError::Command {
                    id: id.clone(),
                    command: format!("rmdir {}", dir.display()),
                    message: e.to_string(),
                });
            }
        }
        // Last: the bundle directory is the record of the id that the cleanup after a crash
        // finds; it goes only once everything else of the sandbox is gone.
        if first_err.is_none() {
            match std::fs::remove_dir_all(self.bundle_dir(id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    first_err.get_or_insert(DriverError::Bundle {
                        id: id.clone(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
        {
            let mut live = self.live();
            live.remove(id);
            if live.is_empty() {
                cgroup::remove_parent(&self.cgroup_roots, &self.cfg.cgroup_parent);
            }
        }
        tracing::debug!(sandbox = %id, elapsed = ?started.elapsed(), ok = first_err.is_none(), "destroyed");
        first_err.map_or(Ok(()), Err)
    }

    /// Ids the runtime lists in the state root (`list` output, plus a scan of the directory in
    /// case `list` fails on a damaged entry).
    pub(super) async fn listed_ids(&self) -> BTreeSet<SandboxId> {
        let mut ids = state_ids(&self.cfg.state_root);
        let format = match self.cfg.runtime {
            Runtime::Runsc { .. } => "-format=json",
            Runtime::Runc => "--format=json",
        };
        match self.run(&["list", format]).await {
            Ok(out) if out.success() => {
                let entries: Option<Vec<serde_json::Value>> =
                    serde_json::from_slice(&out.stdout).unwrap_or_default();
                ids.extend(
                    entries
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|e| e["id"].as_str().and_then(SandboxId::parse)),
                );
            }
            Ok(out) => tracing::warn!("listing leftovers: {}", out.message()),
            Err(e) => tracing::warn!("listing leftovers: {e}"),
        }
        ids
    }
}

/// Waits until every pid in `pids` is gone, reaping them (and any other orphan) as they exit.
/// Gives up on a pid that is a zombie of another parent (left by a previous control-plane
/// process: nobody here can reap it), and on all of them at the deadline.
async fn wait_reaped(pids: &BTreeSet<i32>, wait: Duration) {
    let deadline = Instant::now() + wait;
    let me = std::process::id();
    let mut left: Vec<i32> = pids.iter().copied().collect();
    loop {
        reap_orphans();
        left.retain(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // `pid (comm) S ppid ...`: comm may contain spaces, so parse after the last ')'.
            let mut rest = stat
                .rsplit_once(')')
                .map(|(_, r)| r)
                .unwrap_or("")
                .split_whitespace();
            let state = rest.next().unwrap_or("");
            let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            // A zombie whose parent is one of the killed processes comes to us when that
            // parent dies; any other parent's zombie is not ours to reap.
            if state == "Z" && ppid != me && !i32::try_from(ppid).is_ok_and(|p| pids.contains(&p)) {
                tracing::debug!(pid, ppid, "sandbox process is a zombie of another parent");
                return false;
            }
            true
        });
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(?left, "sandbox processes still present after {wait:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
