//! A function's metrics (`/v1/functions/{name}/metrics`).

use reqwest::Method;
use skyscale_types::metrics::FunctionMetrics;

use super::{function_name, Client};
use crate::ClientError;

impl Client {
    /// `GET /v1/functions/{name}/metrics`: the function's invocations since `since` (`10m`,
    /// `2h`, `1d` or RFC 3339; the server's default, the last hour, when `None`) and its live
    /// state.
    pub fn function_metrics(
        &self,
        name: &str,
        since: Option<&str>,
    ) -> Result<FunctionMetrics, ClientError> {
        let name = function_name(name)?;
        let path = ["v1", "functions", name.as_str(), "metrics"];
        let mut req = self.request(Method::GET, &path, true)?;
        if let Some(s) = since {
            req = req.query(&[("since", s)]);
        }
        self.json(self.send(req)?, "GET /v1/functions/{name}/metrics")
    }
}
