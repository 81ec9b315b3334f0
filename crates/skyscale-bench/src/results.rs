//! The figures, as written to JSON, and how raw runs become them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::{LoadRun, Sample};
use crate::machine::MachineInfo;
use crate::memory::SandboxMemory;
use crate::stats::{median, parse_server_timing, Summary};

/// The phases of the `server-timing` header, in the order they happen.
pub const PHASES: [&str; 6] = ["auth", "lookup", "acquire", "channel", "runtime", "total"];
/// The parts of `acquire` a cold start adds: counted in `acquire` already.
pub const ACQUIRE_PARTS: [&str; 3] = ["sandbox", "place", "init"];

/// Medians of the server-timing phases, and of the client-observed time outside the server.
#[derive(Debug, Clone, Serialize)]
pub struct Breakdown {
    pub samples_with_header: usize,
    /// Phase → median in µs.
    pub phases_us: BTreeMap<String, f64>,
    /// Median of (client-observed latency − server `total`): HTTP on both sides, loopback
    /// TCP, and the client.
    pub http_us: Option<f64>,
    /// Median of (server `total` − the sum of the other phases): server time no phase
    /// accounts for (routing, response building, waiting for a runtime thread).
    pub unaccounted_us: Option<f64>,
    pub client_p50_us: Option<f64>,
}

impl Breakdown {
    /// `None` when no sample carried a `server-timing` header.
    pub fn from_samples(samples: &[Sample]) -> Option<Breakdown> {
        let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut http = Vec::new();
        let mut unaccounted = Vec::new();
        let mut with_header = 0;
        for s in samples {
            let Some(parsed) = s
                .timing
                .as_deref()
                .and_then(|h| parse_server_timing(h).ok())
            else {
                continue;
            };
            with_header += 1;
            let parts: f64 = parsed
                .iter()
                .filter(|(n, _)| n != "total" && !ACQUIRE_PARTS.contains(&n.as_str()))
                .map(|(_, ms)| ms * 1e3)
                .sum();
            for (name, ms) in parsed {
                if name == "total" {
                    http.push(s.latency_us - ms * 1e3);
                    unaccounted.push(ms * 1e3 - parts);
                }
                phases.entry(name).or_default().push(ms * 1e3);
            }
        }
        if with_header == 0 {
            return None;
        }
        let latencies: Vec<f64> = samples.iter().map(|s| s.latency_us).collect();
        Some(Breakdown {
            samples_with_header: with_header,
            phases_us: phases
                .into_iter()
                .filter_map(|(k, v)| median(&v).map(|m| (k, m)))
                .collect(),
            http_us: median(&http),
            unaccounted_us: median(&unaccounted),
            client_p50_us: median(&latencies),
        })
    }
}

/// One warm load point.
#[derive(Debug, Clone, Serialize)]
pub struct WarmPoint {
    pub concurrency: usize,
    /// Where the client and the server ran: `scheduler` or the pinning used.
    pub placement: String,
    pub requests: usize,
    pub errors: u64,
    pub error_examples: Vec<String>,
    pub cold_during_measure: u64,
    pub warmup_requests: u64,
    pub warmup_errors: u64,
    pub warmup_complete: bool,
    pub duration_s: f64,
    pub latency_us: Option<Summary>,
    pub throughput_per_s: f64,
    pub throughput_per_core_per_s: f64,
    pub breakdown: Option<Breakdown>,
    pub control_plane_rss_max_bytes: Option<u64>,
}

impl WarmPoint {
    pub fn from_run(concurrency: usize, placement: &str, run: &LoadRun, nproc: usize) -> Self {
        let lat: Vec<f64> = run.samples.iter().map(|s| s.latency_us).collect();
        let secs = run.elapsed.as_secs_f64();
        let tput = if secs > 0.0 {
            run.samples.len() as f64 / secs
        } else {
            0.0
        };
        WarmPoint {
            concurrency,
            placement: placement.to_owned(),
            requests: run.samples.len(),
            errors: run.errors,
            error_examples: run.error_examples.clone(),
            cold_during_measure: run.cold,
            warmup_requests: run.warmup_requests,
            warmup_errors: run.warmup_errors,
            warmup_complete: run.warmup_complete,
            duration_s: secs,
            latency_us: Summary::of(&lat),
            throughput_per_s: tput,
            throughput_per_core_per_s: tput / nproc.max(1) as f64,
            breakdown: Breakdown::from_samples(&run.samples),
            control_plane_rss_max_bytes: None,
        }
    }

    pub fn p50(&self) -> Option<f64> {
        self.latency_us.map(|s| s.p50)
    }
}

/// Cold-start samples with one pool setting.
#[derive(Debug, Clone, Serialize)]
pub struct Cold {
    pub warm_pool_size: u32,
    pub samples: usize,
    pub confirmed_cold: usize,
    pub errors: usize,
    pub error_examples: Vec<String>,
    pub latency_ms: Option<Summary>,
    /// Median of `x-skyscale-init-duration-ms`.
    pub init_ms_p50: Option<f64>,
    pub breakdown: Option<Breakdown>,
    /// How the benchmark waited between samples.
    pub wait: String,
    /// Samples taken before the pool (or the retired sandboxes' teardown) had settled.
    pub unsettled: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    /// Idle, initialized sandboxes of the function (after the concurrency-8 point).
    pub warm_idle: Option<SandboxMemory>,
    /// Idle generic (pre-booted, not yet specialized) sandboxes of the pool.
    pub generic_idle: Option<SandboxMemory>,
    pub control_plane_rss_idle_bytes: Option<u64>,
    pub control_plane_rss_load_max_bytes: Option<u64>,
    pub control_plane_rss_after_load_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriverResults {
    pub driver: String,
    pub warm: Vec<WarmPoint>,
    pub cold_with_pool: Option<Cold>,
    pub cold_without_pool: Option<Cold>,
    pub memory: Memory,
    /// B's warm latency beside a CPU-bound A, with and without the CPU quota.
    pub neighbour: Vec<crate::neighbour::Neighbour>,
    pub errors: Vec<String>,
}

impl DriverResults {
    pub fn new(driver: &str) -> Self {
        DriverResults {
            driver: driver.to_owned(),
            warm: Vec::new(),
            cold_with_pool: None,
            cold_without_pool: None,
            memory: Memory::default(),
            neighbour: Vec::new(),
            errors: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NaiveRunsc {
    pub samples: usize,
    pub errors: usize,
    pub error_examples: Vec<String>,
    pub latency_ms: Option<Summary>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct References {
    pub floor: Vec<WarmPoint>,
    pub naive_runsc: Option<NaiveRunsc>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub quick: bool,
    pub drivers: Vec<String>,
    pub point_duration_s: f64,
    pub cold_samples: usize,
    pub naive_samples: usize,
    pub payload_bytes: usize,
    pub log_level: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub machine: MachineInfo,
    pub settings: Settings,
    pub references: References,
    pub drivers: Vec<DriverResults>,
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdown_takes_medians_and_the_http_remainder() {
        let s = |lat: f64, h: Option<&str>| Sample {
            latency_us: lat,
            timing: h.map(str::to_owned),
        };
        let samples = [
            s(
                400.0,
                Some("auth;dur=0.010, channel;dur=0.100, total;dur=0.300"),
            ),
            s(
                500.0,
                Some("auth;dur=0.020, channel;dur=0.200, total;dur=0.350"),
            ),
            s(
                600.0,
                Some("auth;dur=0.030, sandbox;dur=0.005, channel;dur=0.300, total;dur=0.400"),
            ),
            s(700.0, None),
        ];
        let b = Breakdown::from_samples(&samples).expect("has headers");
        assert_eq!(b.samples_with_header, 3);
        assert!((b.phases_us["auth"] - 20.0).abs() < 1e-9);
        assert!((b.phases_us["channel"] - 200.0).abs() < 1e-9);
        assert!((b.http_us.expect("http") - 150.0).abs() < 1e-9);
        // total − (auth + channel): 190, 130, 70 µs.
        assert!((b.unaccounted_us.expect("unaccounted") - 130.0).abs() < 1e-9);
        assert_eq!(b.client_p50_us, Some(500.0));
        assert!(Breakdown::from_samples(&[s(1.0, None)]).is_none());
    }
}
