//! `GET /v1/cluster`: the workers and API nodes (admin keys).

use axum::extract::State;
use axum::Json;
use skyscale_core::ClusterView;
use skyscale_types::cluster::{ClusterApiNode, ClusterStatus, ClusterWorker};

use super::extract::Caller;
use crate::{ApiError, AppState};

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) async fn status(
    State(cp): State<AppState>,
    Caller(by): Caller,
) -> Result<Json<ClusterStatus>, ApiError> {
    let view: ClusterView = cp.cluster_status(&by).await?;
    Ok(Json(ClusterStatus {
        role: view.role.as_str().to_owned(),
        node: view.node_name,
        workers: view
            .workers
            .into_iter()
            .map(|w| ClusterWorker {
                name: w.name,
                address: w.address,
                generation: w.generation,
                live: w.live,
                lease_age_ms: ms(w.lease_age),
                lease_remaining_ms: ms(w.lease_remaining),
                sandboxes: w.sandboxes,
                busy: w.busy,
                capacity: w.capacity,
                load: w.load,
            })
            .collect(),
        api_nodes: view
            .api_nodes
            .into_iter()
            .map(|n| ClusterApiNode {
                name: n.name,
                address: n.address,
                last_seen_ms: ms(n.last_seen_age),
                this_node: n.this_node,
            })
            .collect(),
    }))
}
