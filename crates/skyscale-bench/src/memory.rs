//! Memory figures: per-sandbox memory cgroup usage and PSS (cgroups v1), and the control
//! plane's own RSS, idle and sampled under load.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Memory of the idle sandboxes under one instance's cgroup parent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SandboxMemory {
    pub sandboxes: usize,
    pub processes: usize,
    pub memcg_total_bytes: Option<u64>,
    pub memcg_per_sandbox_bytes: Option<f64>,
    pub pss_total_bytes: Option<u64>,
    pub pss_per_sandbox_bytes: Option<f64>,
    /// The plain RSS sum (overstates: shared binaries count once per process).
    pub rss_per_sandbox_bytes: Option<f64>,
}

/// The sandbox cgroup directories under an instance's memory cgroup parent.
pub fn sandbox_dirs(instance: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(instance) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// Processes in a cgroup and its descendants.
fn cgroup_procs(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for child in sandbox_dirs(dir) {
        pids.extend(cgroup_procs(&child));
    }
    pids
}

/// Every process of every sandbox of the instance.
pub fn sandbox_pids(instance: &Path) -> Vec<u32> {
    sandbox_dirs(instance)
        .iter()
        .flat_map(|d| cgroup_procs(d))
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `Key:   123 kB` line of a /proc status-like file, in bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

pub fn vm_rss(pid: u32) -> Option<u64> {
    kb_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmRSS:",
    )
}

fn pss(pid: u32) -> Option<u64> {
    kb_field(
        &std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?,
        "Pss:",
    )
}

/// Sums memcg usage and PSS over the instance's sandboxes.
pub fn measure(instance: &Path) -> SandboxMemory {
    let dirs = sandbox_dirs(instance);
    let n = dirs.len();
    let mut m = SandboxMemory {
        sandboxes: n,
        ..SandboxMemory::default()
    };
    if n == 0 {
        return m;
    }
    let usage: Vec<u64> = dirs
        .iter()
        .filter_map(|d| read_u64(&d.join("memory.usage_in_bytes")))
        .collect();
    if usage.len() == n {
        let total: u64 = usage.iter().sum();
        m.memcg_total_bytes = Some(total);
        m.memcg_per_sandbox_bytes = Some(total as f64 / n as f64);
    }
    let pids: Vec<u32> = dirs.iter().flat_map(|d| cgroup_procs(d)).collect();
    m.processes = pids.len();
    let pss: Vec<u64> = pids.iter().filter_map(|p| pss(*p)).collect();
    if !pids.is_empty() && pss.len() == pids.len() {
        let total: u64 = pss.iter().sum();
        m.pss_total_bytes = Some(total);
        m.pss_per_sandbox_bytes = Some(total as f64 / n as f64);
    }
    let rss: Vec<u64> = pids.iter().filter_map(|p| vm_rss(*p)).collect();
    if !pids.is_empty() && rss.len() == pids.len() {
        m.rss_per_sandbox_bytes = Some(rss.iter().sum::<u64>() as f64 / n as f64);
    }
    m
}

/// Samples a process's RSS every 50 ms on a thread until finished; yields the maximum.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Option<u64>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut max = vm_rss(pid);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                max = max.max(vm_rss(pid));
            }
            max
        });
        RssSampler { stop, handle }
    }

    pub fn finish(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kb_fields_become_bytes() {
        let status = "Name:\tx\nVmRSS:\t   1234 kB\nPss:   10 kB\n";
        assert_eq!(kb_field(status, "VmRSS:"), Some(1234 * 1024));
        assert_eq!(kb_field(status, "Pss:"), Some(10 * 1024));
        assert_eq!(kb_field(status, "VmSwap:"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(vm_rss(std::process::id()).is_some_and(|b| b > 0));
    }
}
