//! Layers (`/v1/layers`): publish a version, list, get, delete.

use std::io::BufReader;

use reqwest::header::ACCEPT;
use reqwest::Method;
use skyscale_types::api::{
    BuildFailed, BuildOutput, BuildRequirements, LayerVersionInfo, LayerVersionList, PublishLayer,
    RequirementsLayer, BUILD_ERROR_EVENT, BUILD_OUTPUT_EVENT, BUILD_RESULT_EVENT,
};

use super::sse::SseReader;
use super::{Client, UPLOAD_TIMEOUT};
use crate::ClientError;

impl Client {
    /// `POST /v1/requirements`: the layer of a `requirements.txt` for `runtime`, built on
    /// the server (pip in a sandbox of that runtime) or reused from an earlier build.
    /// pip's output is handed to `on_line` line by line while it runs (a server-sent
    /// event stream); a failed build is the error the server reported.
    pub fn requirements_layer(
        &self,
        runtime: &str,
        requirements: &str,
        mut on_line: impl FnMut(&str),
    ) -> Result<RequirementsLayer, ClientError> {
        const REQUEST: &str = "POST /v1/requirements";
        let req = self
            .request(Method::POST, &["v1", "requirements"], true)?
            .timeout(UPLOAD_TIMEOUT)
            .header(ACCEPT, "text/event-stream")
            .json(&BuildRequirements {
                runtime: runtime.to_owned(),
                requirements: requirements.to_owned(),
            });
        let resp = self.send(req)?;
        let decode = |reason: String| ClientError::Decode {
            endpoint: self.endpoint.clone(),
            request: REQUEST.to_owned(),
            reason,
        };
        let mut events = SseReader::new(BufReader::new(resp));
        loop {
            let (event, data) = match events.next() {
                Ok(Some(e)) => e,
                Ok(None) => {
                    return Err(decode(
                        "the build's stream ended without its result".to_owned(),
                    ))
                }
                Err(e) => {
                    return Err(ClientError::Transport {
                        endpoint: self.endpoint.clone(),
                        message: format!(
                            "the build's output from Skyscale at {} broke off: {e}",
                            self.endpoint
                        ),
                    })
                }
            };
            match event.as_str() {
                BUILD_OUTPUT_EVENT => {
                    let out: BuildOutput =
                        serde_json::from_str(&data).map_err(|e| decode(e.to_string()))?;
                    on_line(&out.line);
                }
                BUILD_RESULT_EVENT => {
                    return serde_json::from_str(&data).map_err(|e| decode(e.to_string()))
                }
                BUILD_ERROR_EVENT => {
                    let failed: BuildFailed =
                        serde_json::from_str(&data).map_err(|e| decode(e.to_string()))?;
                    return Err(ClientError::Api {
                        status: failed.status,
                        code: failed.error.code,
                        message: failed.error.message,
                    });
                }
                // Events of a newer server that this client does not know.
                _ => {}
            }
        }
    }

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
