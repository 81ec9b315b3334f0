//! The human-readable report: one table per section, budgets from design.md beside the
//! figures, ratios to the references.

use std::fmt::Write;

use crate::results::{Cold, DriverResults, Results, WarmPoint, PHASES};
use crate::scenario::SCHEDULER;
use crate::stats::{check_ge, check_le, fmt_mib, fmt_opt_us, ratio};

const MIB: f64 = 1024.0 * 1024.0;

pub(crate) struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self, out: &mut String) {
        let width = |s: &str| s.chars().count();
        let mut w: Vec<usize> = self.head.iter().map(|h| width(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i < w.len() {
                    w[i] = w[i].max(width(c));
                }
            }
        }
        for r in std::iter::once(&self.head).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                let pad = w.get(i).copied().unwrap_or(0).saturating_sub(width(c));
                line.push_str(c);
                line.push_str(&" ".repeat(pad + 2));
            }
            let _ = writeln!(out, "  {}", line.trim_end());
        }
    }
}

fn warm_budget(driver: &str, p: &WarmPoint) -> String {
    if p.placement != SCHEDULER {
        return String::new();
    }
    let lat = p.latency_us;
    match (driver, p.concurrency) {
        ("runc", 1) => format!(
            "p50≤250µs {}  p99≤1ms {}",
            check_le(lat.map(|s| s.p50), 250.0),
            check_le(lat.map(|s| s.p99), 1000.0)
        ),
        ("gvisor", 1) => format!("p50≤1ms {}", check_le(lat.map(|s| s.p50), 1000.0)),
        ("runc", _) => format!(
            "≥3000/s/core {}",
            check_ge(Some(p.throughput_per_core_per_s), 3000.0)
        ),
        _ => String::new(),
    }
}

fn warm_row(t: &mut Table, who: &str, p: &WarmPoint, floor: Option<&WarmPoint>, budget: String) {
    let l = p.latency_us;
    t.row(vec![
        who.to_owned(),
        p.concurrency.to_string(),
        p.placement.clone(),
        p.requests.to_string(),
        p.errors.to_string(),
        fmt_opt_us(l.map(|s| s.p50)),
        fmt_opt_us(l.map(|s| s.p90)),
        fmt_opt_us(l.map(|s| s.p99)),
        format!("{:.0}", p.throughput_per_s),
        format!("{:.0}", p.throughput_per_core_per_s),
        ratio(p.p50(), floor.and_then(WarmPoint::p50)),
        ratio(Some(p.throughput_per_s), floor.map(|f| f.throughput_per_s)),
        budget,
    ]);
}

fn floor_for<'a>(r: &'a Results, p: &WarmPoint) -> Option<&'a WarmPoint> {
    let f = &r.references.floor;
    f.iter()
        .find(|x| x.concurrency == p.concurrency && x.placement == p.placement)
        .or_else(|| {
            f.iter()
                .find(|x| x.concurrency == p.concurrency && x.placement == SCHEDULER)
        })
}

fn cold_row(t: &mut Table, d: &DriverResults, c: &Cold, naive_p50: Option<f64>) {
    let l = c.latency_ms;
    let budget = if c.warm_pool_size > 0 {
        let b = if d.driver == "runc" { 50.0 } else { 150.0 };
        format!("p50≤{b:.0}ms {}", check_le(l.map(|s| s.p50), b))
    } else {
        String::new()
    };
    let ms = |v: Option<f64>| fmt_opt_us(v.map(|x| x * 1e3));
    t.row(vec![
        d.driver.clone(),
        c.warm_pool_size.to_string(),
        c.samples.to_string(),
        c.confirmed_cold.to_string(),
        c.errors.to_string(),
        ms(l.map(|s| s.p50)),
        ms(l.map(|s| s.p99)),
        ms(c.init_ms_p50),
        ratio(l.map(|s| s.p50), naive_p50),
        budget,
    ]);
}

fn breakdown_row(t: &mut Table, who: &str, what: String, b: Option<&crate::results::Breakdown>) {
    let mut row = vec![who.to_owned(), what];
    match b {
        Some(b) => {
            row.push(fmt_opt_us(b.client_p50_us));
            for p in PHASES {
                row.push(fmt_opt_us(b.phases_us.get(p).copied()));
            }
            row.push(fmt_opt_us(b.unaccounted_us));
            row.push(fmt_opt_us(b.http_us));
        }
        None => row.extend(std::iter::repeat_n("n/a".to_owned(), PHASES.len() + 3)),
    }
    t.row(row);
}

pub fn render(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "Skyscale benchmark — {} × {}, kernel {}, {} MiB RAM, load average {} → {}\n  {} | {} | {} | {}{}",
        m.nproc,
        m.cpu_model,
        m.kernel,
        m.memory_total_mib.unwrap_or(0),
        m.loadavg_start,
        m.loadavg_end,
        m.runsc,
        m.runc,
        m.python,
        m.date,
        if r.settings.quick { " | --quick" } else { "" }
    );

    let _ = writeln!(
        out,
        "\nWARM invoke — hello world, {} B JSON, HTTP/1.1 keep-alive, {:.1} s per point",
        r.settings.payload_bytes, r.settings.point_duration_s
    );
    let mut t = Table::new(&[
        "driver",
        "conc",
        "placement",
        "requests",
        "err",
        "p50",
        "p90",
        "p99",
        "inv/s",
        "inv/s/core",
        "p50 vs floor",
        "inv/s vs floor",
        "budget (design.md)",
    ]);
    for d in &r.drivers {
        for p in &d.warm {
            warm_row(
                &mut t,
                &d.driver,
                p,
                floor_for(r, p),
                warm_budget(&d.driver, p),
            );
        }
    }
    for p in &r.references.floor {
        warm_row(&mut t, "floor", p, None, String::new());
    }
    t.render(&mut out);

    let naive_p50 = r
        .references
        .naive_runsc
        .as_ref()
        .and_then(|n| n.latency_ms)
        .map(|s| s.p50);
    let _ = writeln!(
        out,
        "\nCOLD start — PATCH retires the warm sandboxes, next invoke is cold (header checked)"
    );
    let mut t = Table::new(&[
        "driver",
        "pool",
        "samples",
        "cold✓",
        "err",
        "p50",
        "p99",
        "init p50",
        "p50 vs naive runsc",
        "budget",
    ]);
    for d in &r.drivers {
        for c in [&d.cold_with_pool, &d.cold_without_pool]
            .into_iter()
            .flatten()
        {
            cold_row(&mut t, d, c, naive_p50);
        }
    }
    t.render(&mut out);

    let _ = writeln!(out, "\nMEMORY — per idle sandbox (memory cgroup usage, PSS; RSS sum overstates) and control plane RSS");
    let mut t = Table::new(&[
        "driver",
        "sandboxes",
        "kind",
        "memcg/sandbox",
        "PSS/sandbox",
        "RSS-sum/sandbox",
        "budget",
    ]);
    let mut cp = Table::new(&[
        "driver",
        "CP RSS idle",
        "CP RSS max @c=8",
        "CP RSS after load",
        "budget",
    ]);
    for d in &r.drivers {
        let b = if d.driver == "runc" { 8.0 } else { 25.0 };
        for (kind, mem) in [
            ("warm (function)", &d.memory.warm_idle),
            ("generic (pool)", &d.memory.generic_idle),
        ] {
            if let Some(mem) = mem {
                let figure = mem.pss_per_sandbox_bytes.or(mem.memcg_per_sandbox_bytes);
                let budget = if kind.starts_with("warm") {
                    format!("≤{b:.0}MiB {}", check_le(figure.map(|x| x / MIB), b))
                } else {
                    String::new()
                };
                t.row(vec![
                    d.driver.clone(),
                    mem.sandboxes.to_string(),
                    kind.to_owned(),
                    fmt_mib(mem.memcg_per_sandbox_bytes),
                    fmt_mib(mem.pss_per_sandbox_bytes),
                    fmt_mib(mem.rss_per_sandbox_bytes),
                    budget,
                ]);
            }
        }
        let idle = d.memory.control_plane_rss_idle_bytes.map(|b| b as f64);
        cp.row(vec![
            d.driver.clone(),
            fmt_mib(idle),
            fmt_mib(d.memory.control_plane_rss_load_max_bytes.map(|b| b as f64)),
            fmt_mib(
                d.memory
                    .control_plane_rss_after_load_bytes
                    .map(|b| b as f64),
            ),
            format!("idle ≤30MiB {}", check_le(idle.map(|x| x / MIB), 30.0)),
        ]);
    }
    t.render(&mut out);
    cp.render(&mut out);

    let _ = writeln!(
        out,
        "\nREFERENCES — same handler, same client, same payload"
    );
    let mut t = Table::new(&["reference", "samples", "err", "p50", "p90", "p99", "inv/s"]);
    for p in &r.references.floor {
        let l = p.latency_us;
        t.row(vec![
            format!("python http.server c={} {}", p.concurrency, p.placement),
            p.requests.to_string(),
            p.errors.to_string(),
            fmt_opt_us(l.map(|s| s.p50)),
            fmt_opt_us(l.map(|s| s.p90)),
            fmt_opt_us(l.map(|s| s.p99)),
            format!("{:.0}", p.throughput_per_s),
        ]);
    }
    if let Some(n) = &r.references.naive_runsc {
        let l = n.latency_ms;
        let ms = |v: Option<f64>| fmt_opt_us(v.map(|x| x * 1e3));
        t.row(vec![
            "runsc run per invocation".to_owned(),
            n.samples.to_string(),
            n.errors.to_string(),
            ms(l.map(|s| s.p50)),
            ms(l.map(|s| s.p90)),
            ms(l.map(|s| s.p99)),
            String::new(),
        ]);
    }
    t.render(&mut out);

    let _ = writeln!(
        out,
        "\nBREAKDOWN — medians of the server-timing phases; unaccounted = total − other phases; http = client latency − server total"
    );
    let mut head = vec!["driver", "point", "client p50"];
    head.extend(PHASES);
    head.extend(["unaccounted", "http"]);
    let mut t = Table::new(&head);
    for d in &r.drivers {
        for p in &d.warm {
            let what = format!("warm c={} {}", p.concurrency, p.placement);
            breakdown_row(&mut t, &d.driver, what, p.breakdown.as_ref());
        }
        for c in [&d.cold_with_pool, &d.cold_without_pool]
            .into_iter()
            .flatten()
        {
            let what = format!("cold pool={}", c.warm_pool_size);
            breakdown_row(&mut t, &d.driver, what, c.breakdown.as_ref());
        }
    }
    t.render(&mut out);

    let _ = writeln!(
        out,
        "\nNEIGHBOUR — function B's warm latency (c=1) alone and while A (128 MB) spins the CPU \
         in 4 parallel invocations, with the CPU quota (Lambda's ratio, the default) and \
         without it"
    );
    let mut t = Table::new(&[
        "driver",
        "CPU quota",
        "B memory",
        "B alone p50",
        "p99",
        "B beside A p50",
        "p99",
        "p99 ratio",
        "A ok",
    ]);
    for d in &r.drivers {
        for n in &d.neighbour {
            let (a50, a99) = crate::neighbour::p50_p99(&n.alone);
            let (b50, b99) = crate::neighbour::p50_p99(&n.beside_a);
            t.row(vec![
                d.driver.clone(),
                if n.quota == "off" {
                    "off".to_owned()
                } else {
                    format!("{} MB/vCPU", n.quota)
                },
                format!("{} MB", n.b_memory_mb),
                fmt_opt_us(a50),
                fmt_opt_us(a99),
                fmt_opt_us(b50),
                fmt_opt_us(b99),
                ratio(b99, a99),
                n.a_completed.to_string(),
            ]);
        }
    }
    t.render(&mut out);

    if !r.notes.is_empty() {
        let _ = writeln!(out, "\nNOTES");
        for n in &r.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}
