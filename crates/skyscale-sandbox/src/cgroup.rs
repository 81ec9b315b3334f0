//! The cgroup directories of a sandbox: `/<cgroup_parent>/<id>` in every mounted hierarchy
//! (each cgroup v1 controller, the named `systemd` one, and the unified one of a hybrid host;
//! the single root on a cgroup v2 host). The runtimes create them from the spec's absolute
//! `cgroupsPath`; after a sandbox is gone they are empty and only need `rmdir`.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::reaper::reap_orphans;
use crate::SandboxId;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The roots of the mounted cgroup hierarchies.
pub(crate) fn hierarchy_roots() -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.procs").exists() {
        return vec![root.to_path_buf()];
    }
    let mut seen = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // `cpu` and `cpuacct` are often symlinks to `cpu,cpuacct`: visit each hierarchy once.
        if path.join("cgroup.procs").exists() {
            seen.insert(std::fs::canonicalize(&path).unwrap_or(path));
        }
    }
    seen.into_iter().collect()
}

/// The OOM killer's count in a memory cgroup: `oom_kill` in `memory.oom_control` (v1, Linux
/// 4.13 and later) or in `memory.events` (v2). `None` when `dir` has neither.
pub(crate) fn oom_kills(dir: &Path) -> Option<u64> {
    ["memory.oom_control", "memory.events"]
        .into_iter()
        .find_map(|file| parse_oom_kill(&std::fs::read_to_string(dir.join(file)).ok()?))
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Sets a v1 memory cgroup's limit, memory+swap equal to it (no swap). The kernel requires
/// `limit <= memsw.limit` at every step, so the order depends on the direction.
pub(crate) fn set_memory_limit(dir: &Path, bytes: i64) -> io::Result<()> {
    let limit = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let current: i64 = std::fs::read_to_string(&limit)?
        .trim()
        .parse()
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", limit.display()),
            )
        })?;
    let value = bytes.to_string();
    let has_memsw = memsw.exists();
    if bytes >= current {
        if has_memsw {
            std::fs::write(&memsw, &value)?;
        }
        std::fs::write(&limit, &value)
    } else {
        std::fs::write(&limit, &value)?;
        if has_memsw {
            std::fs::write(&memsw, &value)?;
        }
        Ok(())
    }
}

/// Caps the CPU time of the cgroup at `dir` to `quota_us` per `period_us` (cgroup v1
/// `cpu.cfs_*`, or v2 `cpu.max`).
pub(crate) fn set_cpu_quota(dir: &Path, quota_us: u64, period_us: u64) -> io::Result<()> {
    let max = dir.join("cpu.max");
    if max.exists() {
        return std::fs::write(max, format!("{quota_us} {period_us}"));
    }
    std::fs::write(dir.join("cpu.cfs_period_us"), period_us.to_string())?;
    std::fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string())
}

/// `<root>/<parent>/<id>` for every hierarchy root (whether it exists or not).
pub(crate) fn sandbox_dirs(roots: &[PathBuf], parent: &str, id: &SandboxId) -> Vec<PathBuf> {
    roots
        .iter()
        .map(|r| r.join(parent).join(id.as_str()))
        .collect()
}

/// Ids of the sandbox cgroups under `<root>/<parent>` in any hierarchy.
pub(crate) fn leftover_ids(roots: &[PathBuf], parent: &str) -> BTreeSet<SandboxId> {
    let mut ids = BTreeSet::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root.join(parent)) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(id) = entry.file_name().to_str().and_then(SandboxId::parse) {
                ids.insert(id);
            }
        }
    }
    ids
}

/// Removes the given cgroup directories (and any child cgroups in them). A directory that is
/// busy because its last processes are still exiting is retried (reaping orphans in between)
/// until `wait`; after that its remaining processes are killed and it is tried once more.
pub(crate) async fn remove_dirs(
    dirs: &[PathBuf],
    wait: Duration,
) -> Result<(), (PathBuf, io::Error)> {
    let deadline = Instant::now() + wait;
    let mut killed = false;
    loop {
        let mut busy = None;
        for dir in dirs {
            if let Err(e) = remove_tree(dir) {
                busy = Some((dir.clone(), e));
            }
        }
        let Some((dir, err)) = busy else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            if killed {
                return Err((dir, err));
            }
            kill_procs(dirs);
            killed = true;
        }
        reap_orphans();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Depth-first `rmdir`: a cgroup directory only holds control files and child cgroups.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// SIGKILLs every process in the given cgroup directories (and their child cgroups); returns
/// the pids signalled.
///
/// A pid read from `cgroup.procs` cannot be recycled before it is signalled: the sandbox's
/// top processes are our children (or orphans re-parented to us, the subreaper), so they
/// are not reaped before we reap them; their own children (ptrace stubs) die with them.
pub(crate) fn kill_procs(dirs: &[PathBuf]) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for dir in dirs {
        collect_procs(dir, &mut pids);
    }
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    pids
}

fn collect_procs(dir: &Path, pids: &mut BTreeSet<i32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(
            procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_procs(&entry.path(), pids);
            }
        }
    }
}

/// Removes `<root>/<parent>` in every hierarchy if it is empty (best effort: a busy or
/// missing directory is left alone). Only the last component is removed, never its
/// ancestors, which other control-plane instances may be creating children in.
pub(crate) fn remove_parent(roots: &[PathBuf], parent: &str) {
    for root in roots {
        let _ = std::fs::remove_dir(root.join(parent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_oom_kill(v1), Some(2));
        let v2 = "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(oom_kills(dir.path()), None);
        std::fs::write(dir.path().join("memory.oom_control"), v1).unwrap();
        assert_eq!(oom_kills(dir.path()), Some(2));
    }
}
