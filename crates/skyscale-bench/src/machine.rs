//! What machine the figures come from, and CPU placement of other processes (`taskset`).

use std::process::Command;

use anyhow::{bail, Context};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_total_mib: Option<u64>,
    pub runsc: String,
    pub runc: String,
    pub python: String,
    pub date: String,
    /// Load average when the benchmark started and when it ended.
    pub loadavg_start: String,
    pub loadavg_end: String,
}

fn first_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        Err(e) => format!("not available ({e})"),
    }
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl MachineInfo {
    pub fn collect() -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_total_mib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024);
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        MachineInfo {
            nproc: nproc(),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            memory_total_mib,
            runsc: first_line("runsc", &["--version"]),
            runc: first_line("runc", &["--version"]),
            python: first_line("/usr/bin/python3", &["--version"]),
            date,
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
        }
    }
}

/// Sets the CPU affinity of every thread of `pid` (`taskset -a -p -c CPUS PID`). Retried:
/// taskset fails when one of the threads exits while it walks them.
pub fn taskset_all(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..5 {
        let out = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid.to_string()])
            .output()
            .context("running taskset")?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    bail!("taskset -a -p -c {cpus} {pid}: {last}")
}

/// `/proc/loadavg`'s first three fields: other work on the machine skews every figure.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `0-(n-1)`: every CPU.
pub fn all_cpus() -> String {
    format!("0-{}", nproc().saturating_sub(1))
}
