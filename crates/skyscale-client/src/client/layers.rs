//! Layers (`/v1/layers`): publish a version, list, get, delete.

use reqwest::Method;
use skyscale_types::api::{LayerVersionInfo, LayerVersionList, PublishLayer};

use super::{Client, UPLOAD_TIMEOUT};
use crate::ClientError;

impl Client {
    /// `POST /v1/layers/{name}/versions`: a new version of the layer (created with its
    /// first).
    pub fn publish_layer(
        &self,
        name: &str,
        publish: &PublishLayer,
    ) -> Result<LayerVersionInfo, ClientError> {
        let req = self
            .request(Method::POST, &["v1", "layers", name, "versions"], true)?
            .timeout(UPLOAD_TIMEOUT)
            .json(publish);
        self.json(self.send(req)?, "POST /v1/layers/{name}/versions")
    }

    /// `GET /v1/layers`: the newest version of each layer.
    pub fn list_layers(&self) -> Result<LayerVersionList, ClientError> {
        let req = self.request(Method::GET, &["v1", "layers"], true)?;
        self.json(self.send(req)?, "GET /v1/layers")
    }

    /// `GET /v1/layers/{name}/versions`: newest first.
    pub fn list_layer_versions(&self, name: &str) -> Result<LayerVersionList, ClientError> {
        let req = self.request(Method::GET, &["v1", "layers", name, "versions"], true)?;
        self.json(self.send(req)?, "GET /v1/layers/{name}/versions")
    }

    /// `GET /v1/layers/{name}/versions/{version}`.
    pub fn get_layer_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<LayerVersionInfo, ClientError> {
        let v = version.to_string();
        let path = ["v1", "layers", name, "versions", v.as_str()];
        let req = self.request(Method::GET, &path, true)?;
        self.json(self.send(req)?, "GET /v1/layers/{name}/versions/{version}")
    }

    /// `DELETE /v1/layers/{name}/versions/{version}`.
    pub fn delete_layer_version(&self, name: &str, version: u64) -> Result<(), ClientError> {
        let v = version.to_string();
        let path = ["v1", "layers", name, "versions", v.as_str()];
        let req = self.request(Method::DELETE, &path, true)?;
        self.send(req)?;
        Ok(())
    }
}
