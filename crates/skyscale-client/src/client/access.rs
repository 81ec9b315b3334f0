//! Key management (`/v1/keys`) and the audit log (`/v1/audit`): admin keys only.

use reqwest::Method;
use skyscale_types::access::{AuditLog, CreateKey, CreatedKey, KeyList};

use super::Client;
use crate::ClientError;

impl Client {
    /// `POST /v1/keys`: the answer holds the new key's secret, shown this once.
    pub fn create_key(&self, create: &CreateKey) -> Result<CreatedKey, ClientError> {
        let req = self
            .request(Method::POST, &["v1", "keys"], true)?
            .json(create);
        self.json(self.send(req)?, "POST /v1/keys")
    }

    /// `GET /v1/keys`: every key, revoked ones included, never a secret.
    pub fn list_keys(&self) -> Result<KeyList, ClientError> {
        let req = self.request(Method::GET, &["v1", "keys"], true)?;
        self.json(self.send(req)?, "GET /v1/keys")
    }

    /// `DELETE /v1/keys/{id}`: the key is refused from the next request on.
    pub fn revoke_key(&self, id: &str) -> Result<(), ClientError> {
        let req = self.request(Method::DELETE, &["v1", "keys", id], true)?;
        self.send(req)?;
        Ok(())
    }

    /// `GET /v1/audit`: the newest entries first, at most `limit` (the server's default when
    /// `None`), only those at or after `since` (RFC 3339) when given.
    pub fn audit(
        &self,
        limit: Option<usize>,
        since: Option<&str>,
    ) -> Result<AuditLog, ClientError> {
        let mut req = self.request(Method::GET, &["v1", "audit"], true)?;
        if let Some(n) = limit {
            req = req.query(&[("limit", n.to_string())]);
        }
        if let Some(s) = since {
            req = req.query(&[("since", s)]);
        }
        self.json(self.send(req)?, "GET /v1/audit")
    }
}
