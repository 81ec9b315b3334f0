//! The `/v1/cluster` wire types (the HTTP layer and the client share them).

use serde::{Deserialize, Serialize};

/// `GET /v1/cluster`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node's role: `all`, `api` or `worker`.
    pub role: String,
    /// The answering node's name (empty on a single node).
    pub node: String,
    pub workers: Vec<ClusterWorker>,
    pub api_nodes: Vec<ClusterApiNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterWorker {
    pub name: String,
    pub address: String,
    pub generation: u64,
    /// Its lease has not run out.
    pub live: bool,
    /// Milliseconds since its last renewal (database clock).
    pub lease_age_ms: u64,
    /// Milliseconds until its lease ends (0 when it has).
    pub lease_remaining_ms: u64,
    pub sandboxes: u64,
    pub busy: u64,
    pub capacity: u64,
    /// The host's one-minute load average at its last renewal.
    pub load: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterApiNode {
    pub name: String,
    pub address: String,
    /// Milliseconds since it last refreshed its view of the workers.
    pub last_seen_ms: u64,
    /// The node that answered this request.
    pub this_node: bool,
}
