//! Notes that go with the figures: errors, incomplete warm-ups, missing headers, how the
//! cold-start samples waited.

use crate::results::{Results, WarmPoint};

/// Notes derived from the results: errors, incomplete warm-ups, missing headers.
pub fn notes(r: &Results) -> Vec<String> {
    let mut notes = Vec::new();
    for p in &r.references.floor {
        point_notes(&mut notes, "floor", p);
    }
    for e in &r.references.errors {
        notes.push(format!("reference error: {e}"));
    }
    for d in &r.drivers {
        for e in &d.errors {
            let first = e.lines().next().unwrap_or("");
            notes.push(format!("{}: error: {first}", d.driver));
        }
        for p in &d.warm {
            point_notes(&mut notes, &d.driver, p);
        }
        if d.warm.iter().any(|p| p.breakdown.is_none()) {
            notes.push(format!(
                "{}: no server-timing header on warm invokes: breakdown n/a",
                d.driver
            ));
        }
        for c in [&d.cold_with_pool, &d.cold_without_pool]
            .into_iter()
            .flatten()
        {
            notes.push(format!(
                "{} cold pool={}: waited {}",
                d.driver, c.warm_pool_size, c.wait
            ));
            if c.errors > 0 || c.unsettled > 0 {
                notes.push(format!(
                    "{} cold pool={}: {} errors, {} samples before the host settled {:?}",
                    d.driver, c.warm_pool_size, c.errors, c.unsettled, c.error_examples
                ));
            }
        }
    }
    if let Some(n) = &r.references.naive_runsc {
        if n.errors > 0 {
            notes.push(format!(
                "naive runsc: {} errors {:?}",
                n.errors, n.error_examples
            ));
        }
    }
    notes
}

fn point_notes(notes: &mut Vec<String>, who: &str, p: &WarmPoint) {
    if p.errors > 0 || !p.warmup_complete || p.cold_during_measure > 0 {
        notes.push(format!(
            "{who} c={} {}: {} errors, {} cold during measurement, warm-up {} ({} requests, {} errors) {:?}",
            p.concurrency,
            p.placement,
            p.errors,
            p.cold_during_measure,
            if p.warmup_complete { "complete" } else { "INCOMPLETE" },
            p.warmup_requests,
            p.warmup_errors,
            p.error_examples
        ));
    }
}
