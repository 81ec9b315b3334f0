//! `cluster status`.

use skyscale_types::cluster::ClusterStatus;

use super::table;

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// The workers, then the API nodes; a single node says so.
pub fn cluster_status(s: &ClusterStatus) -> String {
    if s.role == "all" {
        return "single node (SKYSCALE_ROLE=all): no workers or API nodes to show\n".to_owned();
    }
    let workers: Vec<[String; 10]> = s
        .workers
        .iter()
        .map(|w| {
            [
                w.name.clone(),
                w.address.clone(),
                w.generation.to_string(),
                if w.live { "yes" } else { "no" }.to_owned(),
                seconds(w.lease_age_ms),
                seconds(w.lease_remaining_ms),
                w.sandboxes.to_string(),
                w.busy.to_string(),
                w.capacity.to_string(),
                format!("{:.2}", w.load),
            ]
        })
        .collect();
    let apis: Vec<[String; 3]> = s
        .api_nodes
        .iter()
        .map(|n| {
            [
                format!("{}{}", n.name, if n.this_node { " (this)" } else { "" }),
                n.address.clone(),
                seconds(n.last_seen_ms),
            ]
        })
        .collect();
    let mut out = format!(
        "Workers ({} live):\n",
        s.workers.iter().filter(|w| w.live).count()
    );
    out.push_str(&table(
        [
            "NAME",
            "ADDRESS",
            "GENERATION",
            "LIVE",
            "LEASE AGE",
            "LEASE LEFT",
            "SANDBOXES",
            "BUSY",
            "CAPACITY",
            "LOAD",
        ],
        &workers,
    ));
    out.push_str(&format!("\nAPI nodes ({}):\n", s.api_nodes.len()));
    out.push_str(&table(["NAME", "ADDRESS", "LAST SEEN"], &apis));
    out
}
