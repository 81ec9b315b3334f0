//! The cluster's membership (`/v1/cluster`): admin keys only.

use reqwest::Method;
use skyscale_types::cluster::ClusterStatus;

use super::Client;
use crate::ClientError;

impl Client {
    /// `GET /v1/cluster`: the workers (generation, lease, sandboxes, load) and API nodes.
    pub fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        let req = self.request(Method::GET, &["v1", "cluster"], true)?;
        self.json(self.send(req)?, "GET /v1/cluster")
    }
}
