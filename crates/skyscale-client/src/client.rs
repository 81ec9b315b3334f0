use std::fmt;
use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use skyscale_types::api::{
    AliasInfo, AliasList, CreateAlias, CreateFunction, CreateFunctionUrl, ErrorResponse,
    FunctionError, FunctionInfo, FunctionList, FunctionUrlInfo, FunctionUrlList, Health,
    ProvisionedInfo, ProvisionedList, PublishVersion, PutConcurrency, PutProvisioned, RuntimeList,
    UpdateAlias, UpdateFunction, UpdateFunctionUrl, VersionList, COLD_START_HEADER,
    EXECUTED_VERSION_HEADER, FUNCTION_ERROR_HEADER, REQUEST_ID_HEADER,
};
use skyscale_types::{ApiKey, FunctionName};

use crate::ClientError;

mod access;
mod cluster;
mod events;
mod invocations;
mod layers;
mod metrics;
mod schedules;
mod sse;

pub use invocations::{InvocationsQuery, LogEvent, LogsQuery};

/// How long to wait for a TCP connection before saying the server cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Ordinary API calls answer from the database; a minute means something is wrong.
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// Calls that carry a code package (create with code, deploy) may upload tens of MB.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest function timeout (900 s) plus room for a cold start. The server enforces
/// each function's own deadline; this only stops the client from hanging forever.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(960);
/// How much of a non-JSON error body an error message quotes.
const ERROR_BODY_QUOTE: usize = 200;

/// A connection to one Skyscale control plane. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    /// The endpoint with its path normalised; `/v1/...` is appended to its path.
    base: Url,
    /// The endpoint as messages show it (no trailing `/`).
    endpoint: String,
    /// The bearer token `<id>.<secret>`, when a key was given.
    token: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("key", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The answer to an invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeOutcome {
    /// Exactly the handler's result JSON, or a [`FunctionError`] JSON when
    /// `function_error` is set.
    pub body: Vec<u8>,
    /// The value of the function-error header: present when the handler (or its sandbox)
    /// failed.
    pub function_error: Option<String>,
    pub request_id: Option<String>,
    pub cold_start: Option<bool>,
    /// The version that ran: `$LATEST` or a published version's number.
    pub executed_version: Option<String>,
}

impl InvokeOutcome {
    /// The body decoded as a [`FunctionError`], when the invocation failed and the body has
    /// that shape.
    pub fn error_body(&self) -> Option<FunctionError> {
        self.function_error.as_ref()?;
        serde_json::from_slice(&self.body).ok()
    }
}

impl Client {
    /// A client for the control plane at `endpoint` (`http://host:port`, optionally with a
    /// path prefix). `key` is the bearer token `<id>.<secret>`; calls other than
    /// [`Client::health`] fail with [`ClientError::MissingKey`] without one.
    pub fn new(endpoint: &str, key: Option<String>) -> Result<Client, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: reason.to_owned(),
        };
        let mut base = Url::parse(endpoint.trim()).map_err(|e| invalid(&e.to_string()))?;
        match base.scheme() {
            "http" => {}
            "https" => {
                return Err(invalid(
                    "this build of the client has no TLS support; use an http:// endpoint",
                ))
            }
            _ => {
                return Err(invalid(
                    "expected an http:// URL such as http://127.0.0.1:8080",
                ))
            }
        }
        if base.cannot_be_a_base() || base.host_str().is_none_or(str::is_empty) {
            return Err(invalid(
                "expected an http:// URL with a host, such as http://127.0.0.1:8080",
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid(
                "credentials in the URL are not used; pass the API key instead",
            ));
        }
        base.set_query(None);
        base.set_fragment(None);
        let endpoint = base.as_str().trim_end_matches('/').to_owned();

        let token = match key {
            Some(key) => Some(
                ApiKey::parse(key.trim())
                    .map_err(ClientError::InvalidKey)?
                    .token(),
            ),
            None => None,
        };

        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(API_TIMEOUT)
            .user_agent(concat!("skyscale-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::transport(&endpoint, &e))?;
        Ok(Client {
            http,
            base,
            endpoint,
            token,
        })
    }

    /// The endpoint this client talks to, as error messages show it.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether the client has an API key.
    pub fn has_key(&self) -> bool {
        self.token.is_some()
    }

    /// `GET /v1/health`. Needs no key; with one, the answer has the host's details.
    pub fn health(&self) -> Result<Health, ClientError> {
        let req = self.request(Method::GET, &["v1", "health"], self.has_key())?;
        self.json(self.send(req)?, "GET /v1/health")
    }

    /// `GET /v1/runtimes`.
    pub fn runtimes(&self) -> Result<RuntimeList, ClientError> {
        let req = self.request(Method::GET, &["v1", "runtimes"], true)?;
        self.json(self.send(req)?, "GET /v1/runtimes")
    }

    /// `POST /v1/functions`. With `code_zip_base64` set, the function and its code are
    /// created together, or not at all.
    pub fn create_function(&self, create: &CreateFunction) -> Result<FunctionInfo, ClientError> {
        let req = self
            .request(Method::POST, &["v1", "functions"], true)?
            .timeout(UPLOAD_TIMEOUT)
            .json(create);
        self.json(self.send(req)?, "POST /v1/functions")
    }

    /// `GET /v1/functions`.
    pub fn list_functions(&self) -> Result<FunctionList, ClientError> {
        let req = self.request(Method::GET, &["v1", "functions"], true)?;
        self.json(self.send(req)?, "GET /v1/functions")
    }

    /// `GET /v1/functions/{name}`.
    pub fn get_function(&self, name: &str) -> Result<FunctionInfo, ClientError> {
        let name = function_name(name)?;
        let req = self.request(Method::GET, &["v1", "functions", name.as_str()], true)?;
        self.json(self.send(req)?, "GET /v1/functions/{name}")
    }

    /// `PATCH /v1/functions/{name}`: only the fields set in `update` change.
    pub fn update_function(
        &self,
        name: &str,
        update: &UpdateFunction,
    ) -> Result<FunctionInfo, ClientError> {
        let name = function_name(name)?;
        let req = self
            .request(Method::PATCH, &["v1", "functions", name.as_str()], true)?
            .json(update);
        self.json(self.send(req)?, "PATCH /v1/functions/{name}")
    }

    /// `DELETE /v1/functions/{name}`.
    pub fn delete_function(&self, name: &str) -> Result<(), ClientError> {
        let name = function_name(name)?;
        let req = self.request(Method::DELETE, &["v1", "functions", name.as_str()], true)?;
        self.send(req)?;
        Ok(())
    }

    /// `PUT /v1/functions/{name}/concurrency` (`Some`) or `DELETE` it (`None`).
    pub fn set_reserved_concurrency(
        &self,
        name: &str,
        reserved: Option<i64>,
    ) -> Result<FunctionInfo, ClientError> {
        let name = function_name(name)?;
        let path = ["v1", "functions", name.as_str(), "concurrency"];
        let req = match reserved {
            Some(n) => self
                .request(Method::PUT, &path, true)?
                .json(&PutConcurrency {
                    reserved_concurrency: n,
                }),
            None => self.request(Method::DELETE, &path, true)?,
        };
        self.json(self.send(req)?, "PUT /v1/functions/{name}/concurrency")
    }

    /// `PUT /v1/functions/{name}/provisioned/{qualifier}`: keep `requested` initialised
    /// sandboxes ready for a published version or an alias.
    pub fn put_provisioned(
        &self,
        name: &str,
        qualifier: &str,
        requested: i64,
    ) -> Result<ProvisionedInfo, ClientError> {
        let name = function_name(name)?;
        let path = ["v1", "functions", name.as_str(), "provisioned", qualifier];
        let req = self
            .request(Method::PUT, &path, true)?
            .json(&PutProvisioned { requested });
        self.json(
            self.send(req)?,
            "PUT /v1/functions/{name}/provisioned/{qualifier}",
        )
    }

    /// `GET /v1/functions/{name}/provisioned/{qualifier}`.
    pub fn get_provisioned(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<ProvisionedInfo, ClientError> {
        let name = function_name(name)?;
        let path = ["v1", "functions", name.as_str(), "provisioned", qualifier];
        let req = self.request(Method::GET, &path, true)?;
        self.json(
            self.send(req)?,
            "GET /v1/functions/{name}/provisioned/{qualifier}",
        )
    }

    /// `GET /v1/functions/{name}/provisioned`.
    pub fn list_provisioned(&self, name: &str) -> Result<ProvisionedList, ClientError> {
        let name = function_name(name)?;
        let path = ["v1", "functions", name.as_str(), "provisioned"];
        let req = self.request(Method::GET, &path, true)?;
        self.json(self.send(req)?, "GET /v1/functions/{name}/provisioned")
    }

    /// `DELETE /v1/functions/{name}/provisioned/{qualifier}`.
    pub fn delete_provisioned(&self, name: &str, qualifier: &str) -> Result<(), ClientError> {
        let name = function_name(name)?;
        let path = ["v1", "functions", name.as_str(), "provisioned", qualifier];
        let req = self.request(Method::DELETE, &path, true)?;
        self.send(req)?;
        Ok(())
    }

    /// `PUT /v1/functions/{name}/code` with the zip archive as the body.
    pub fn deploy_code(&self, name: &str, zip: Vec<u8>) -> Result<FunctionInfo, ClientError> {
        self.put_code(name, zip, None)
    }

    /// `PUT /v1/functions/{name}/code?layers=…`: new code and, in the same update, the whole
    /// list of the function's layers (version ARNs, in order).
    pub fn deploy_code_with_layers(
        &self,
        name: &str,
        zip: Vec<u8>,
        layers: &[String],
    ) -> Result<FunctionInfo, ClientError> {
        self.put_code(name, zip, Some(layers))
    }

    fn put_code(
        &self,
        name: &str,
        zip: Vec<u8>,
        layers: Option<&[String]>,
    ) -> Result<FunctionInfo, ClientError> {
        let name = function_name(name)?;
        let mut req = self.request(
            Method::PUT,
            &["v1", "functions", name.as_str(), "code"],
            true,
        )?;
        if let Some(layers) = layers {
            req = req.query(&[("layers", layers.join(","))]);
        }
        let req = req
            .timeout(UPLOAD_TIMEOUT)
            .header(CONTENT_TYPE, "application/zip")
            .body(zip);
        self.json(self.send(req)?, "PUT /v1/functions/{name}/code")
    }

    /// `POST /v1/functions/{name}/versions`: publishes the function's current code and
    /// configuration as an immutable version (or returns the newest version when nothing
    /// changed since it was published).
    pub fn publish_version(
        &self,
        name: &str,
        description: Option<String>,
    ) -> Result<FunctionInfo, ClientError> {
        let name = function_name(name)?;
        let req = self
            .request(
                Method::POST,
                &["v1", "functions", name.as_str(), "versions"],
                true,
            )?
            .json(&PublishVersion { description });
        self.json(self.send(req)?, "POST /v1/functions/{name}/versions")
    }

    /// `GET /v1/functions/{name}/versions`: `$LATEST`, then the published versions.
    pub fn list_versions(&self, name: &str) -> Result<VersionList, ClientError> {
        let name = function_name(name)?;
        let path = ["v1", "functions", name.as_str(), "versions"];
        let req = self.request(Method::GET, &path, true)?;
        self.json(self.send(req)?, "GET /v1/functions/{name}/versions")
    }

    /// `POST /v1/functions/{function}/aliases`.
    pub fn create_alias(
        &self,
        function: &str,
        create: &CreateAlias,
    ) -> Result<AliasInfo, ClientError> {
        let function = function_name(function)?;
        let path = ["v1", "functions", function.as_str(), "aliases"];
        let req = self.request(Method::POST, &path, true)?.json(create);
        self.json(self.send(req)?, "POST /v1/functions/{name}/aliases")
    }

    /// `GET /v1/functions/{function}/aliases`.
    pub fn list_aliases(&self, function: &str) -> Result<AliasList, ClientError> {
        let function = function_name(function)?;
        let path = ["v1", "functions", function.as_str(), "aliases"];
        let req = self.request(Method::GET, &path, true)?;
        self.json(self.send(req)?, "GET /v1/functions/{name}/aliases")
    }

    /// `GET /v1/functions/{function}/aliases/{alias}`.
    pub fn get_alias(&self, function: &str, alias: &str) -> Result<AliasInfo, ClientError> {
        let function = function_name(function)?;
        let path = ["v1", "functions", function.as_str(), "aliases", alias];
        let req = self.request(Method::GET, &path, true)?;
        self.json(self.send(req)?, "GET /v1/functions/{name}/aliases/{alias}")
    }

    /// `PATCH /v1/functions/{function}/aliases/{alias}`: only the fields set in `update`
    /// change.
    pub fn update_alias(
        &self,
        function: &str,
        alias: &str,
        update: &UpdateAlias,
    ) -> Result<AliasInfo, ClientError> {
        let function = function_name(function)?;
        let path = ["v1", "functions", function.as_str(), "aliases", alias];
        let req = self.request(Method::PATCH, &path, true)?.json(update);
        self.json(
            self.send(req)?,
            "PATCH /v1/functions/{name}/aliases/{alias}",
        )
    }

    /// `DELETE /v1/functions/{function}/aliases/{alias}`.
    pub fn delete_alias(&self, function: &str, alias: &str) -> Result<(), ClientError> {
        let function = function_name(function)?;
        let path = ["v1", "functions", function.as_str(), "aliases", alias];
        let req = self.request(Method::DELETE, &path, true)?;
        self.send(req)?;
        Ok(())
    }

    /// `.../url` of `function`, with `?qualifier=` when `qualifier` is given.
    fn url_request(
        &self,
        method: Method,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<RequestBuilder, ClientError> {
        let function = function_name(function)?;
        let req = self.request(method, &["v1", "functions", function.as_str(), "url"], true)?;
        Ok(match qualifier {
            Some(q) => req.query(&[("qualifier", q)]),
            None => req,
        })
    }

    /// `POST /v1/functions/{function}/url`: a function URL for `$LATEST` (`qualifier`
    /// `None`) or an alias.
    pub fn create_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
        create: &CreateFunctionUrl,
    ) -> Result<FunctionUrlInfo, ClientError> {
        let req = self
            .url_request(Method::POST, function, qualifier)?
            .json(create);
        self.json(self.send(req)?, "POST /v1/functions/{name}/url")
    }

    /// `GET /v1/functions/{function}/url`.
    pub fn get_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<FunctionUrlInfo, ClientError> {
        let req = self.url_request(Method::GET, function, qualifier)?;
        self.json(self.send(req)?, "GET /v1/functions/{name}/url")
    }

    /// `PATCH /v1/functions/{function}/url`: only the fields set in `update` change.
    pub fn update_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
        update: &UpdateFunctionUrl,
    ) -> Result<FunctionUrlInfo, ClientError> {
        let req = self
            .url_request(Method::PATCH, function, qualifier)?
            .json(update);
        self.json(self.send(req)?, "PATCH /v1/functions/{name}/url")
    }

    /// `DELETE /v1/functions/{function}/url`.
    pub fn delete_url(&self, function: &str, qualifier: Option<&str>) -> Result<(), ClientError> {
        let req = self.url_request(Method::DELETE, function, qualifier)?;
        self.send(req)?;
        Ok(())
    }

    /// `GET /v1/functions/{function}/urls`: `$LATEST`'s URL and every alias's.
    pub fn list_urls(&self, function: &str) -> Result<FunctionUrlList, ClientError> {
        let function = function_name(function)?;
        let path = ["v1", "functions", function.as_str(), "urls"];
        let req = self.request(Method::GET, &path, true)?;
        self.json(self.send(req)?, "GET /v1/functions/{name}/urls")
    }

    /// `POST /v1/functions/{name}/invoke` with `payload` (event JSON) as the body: runs
    /// `$LATEST`. A handler that fails is not an `Err`: it is an [`InvokeOutcome`] with
    /// `function_error` set.
    pub fn invoke(&self, name: &str, payload: Vec<u8>) -> Result<InvokeOutcome, ClientError> {
        self.invoke_qualified(name, None, payload)
    }

    /// Like [`Client::invoke`], running the version `qualifier` names: `$LATEST`, a
    /// published version's number or an alias (`None`: `$LATEST`).
    pub fn invoke_qualified(
        &self,
        name: &str,
        qualifier: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<InvokeOutcome, ClientError> {
        let name = function_name(name)?;
        let mut req = self.request(
            Method::POST,
            &["v1", "functions", name.as_str(), "invoke"],
            true,
        )?;
        if let Some(q) = qualifier {
            req = req.query(&[("qualifier", q)]);
        }
        let req = req
            .timeout(INVOKE_TIMEOUT)
            .header(CONTENT_TYPE, "application/json")
            .body(payload);
        let resp = self.send(req)?;
        let headers = resp.headers().clone();
        let body = self.bytes(resp)?;
        Ok(InvokeOutcome {
            body,
            function_error: header(&headers, FUNCTION_ERROR_HEADER),
            request_id: header(&headers, REQUEST_ID_HEADER),
            cold_start: header(&headers, COLD_START_HEADER).and_then(|v| match v.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }),
            executed_version: header(&headers, EXECUTED_VERSION_HEADER),
        })
    }

    fn request(
        &self,
        method: Method,
        segments: &[&str],
        auth: bool,
    ) -> Result<RequestBuilder, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidEndpoint {
                endpoint: self.endpoint.clone(),
                reason: "cannot append a path to this URL".to_owned(),
            })?
            .pop_if_empty()
            .extend(segments);
        let req = self.http.request(method, url);
        if !auth {
            return Ok(req);
        }
        let token = self.token.as_ref().ok_or(ClientError::MissingKey)?;
        Ok(req.bearer_auth(token))
    }

    /// Sends the request; a non-2xx answer becomes an error.
    fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let resp = req
            .send()
            .map_err(|e| ClientError::transport(&self.endpoint, &e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.error_from(resp))
        }
    }

    fn bytes(&self, resp: Response) -> Result<Vec<u8>, ClientError> {
        resp.bytes()
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::transport(&self.endpoint, &e))
    }

    fn json<T: DeserializeOwned>(&self, resp: Response, request: &str) -> Result<T, ClientError> {
        let body = self.bytes(resp)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            endpoint: self.endpoint.clone(),
            request: request.to_owned(),
            reason: e.to_string(),
        })
    }

    fn error_from(&self, resp: Response) -> ClientError {
        let status = resp.status();
        // A body that cannot be read still leaves the status to report.
        let body = resp.bytes().map(|b| b.to_vec()).unwrap_or_default();
        if let Ok(ErrorResponse { error }) = serde_json::from_slice::<ErrorResponse>(&body) {
            return ClientError::Api {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
            };
        }
        let text = String::from_utf8_lossy(&body);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let body = if text.is_empty() {
            status.canonical_reason().unwrap_or("empty body").to_owned()
        } else if text.chars().count() > ERROR_BODY_QUOTE {
            let quoted: String = text.chars().take(ERROR_BODY_QUOTE).collect();
            format!("{quoted}…")
        } else {
            text
        };
        ClientError::UnexpectedStatus {
            endpoint: self.endpoint.clone(),
            status: status.as_u16(),
            body,
        }
    }
}

fn function_name(name: &str) -> Result<FunctionName, ClientError> {
    FunctionName::parse(name).map_err(ClientError::InvalidName)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        ApiKey::generate().token()
    }

    #[test]
    fn endpoint_is_normalised() {
        let c = Client::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(c.endpoint(), "http://127.0.0.1:8080");
        let url = c.request(Method::GET, &["v1", "health"], false).unwrap();
        let url = url.build().unwrap().url().clone();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/v1/health");
    }

    #[test]
    fn endpoint_path_prefix_is_kept() {
        let c = Client::new("http://example.test/skyscale/", Some(key())).unwrap();
        let req = c
            .request(Method::GET, &["v1", "functions", "f"], true)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://example.test/skyscale/v1/functions/f"
        );
        assert!(req.headers()["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer SKY"));
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for bad in [
            "localhost:8080",
            "127.0.0.1:8080",
            "ftp://x",
            "https://x",
            "http://",
        ] {
            let err = Client::new(bad, None).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidEndpoint { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn bad_key_is_refused_without_echoing_it() {
        let err = Client::new("http://127.0.0.1:1", Some("not-a-key".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid API key: api key must have the form <id>.<secret>"
        );
    }

    #[test]
    fn calls_without_key_fail_before_sending() {
        let c = Client::new("http://127.0.0.1:1", None).unwrap();
        assert!(matches!(c.list_functions(), Err(ClientError::MissingKey)));
        assert!(!format!("{c:?}").contains("SKY"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = key();
        let c = Client::new("http://127.0.0.1:1", Some(k.clone())).unwrap();
        let (_, secret) = k.split_once('.').unwrap();
        assert!(!format!("{c:?}").contains(secret));
    }

    #[test]
    fn alias_names_and_qualifiers_are_encoded() {
        let c = Client::new("http://h", Some(key())).unwrap();
        let path = ["v1", "functions", "f", "aliases", "a/b c"];
        let req = c.request(Method::GET, &path, true).unwrap();
        assert_eq!(
            req.build().unwrap().url().as_str(),
            "http://h/v1/functions/f/aliases/a%2Fb%20c"
        );
        let req = c
            .request(Method::POST, &["v1", "functions", "f", "invoke"], true)
            .unwrap()
            .query(&[("qualifier", "$LATEST")]);
        assert_eq!(
            req.build().unwrap().url().as_str(),
            "http://h/v1/functions/f/invoke?qualifier=%24LATEST"
        );
        let url = |q| {
            let req = c.url_request(Method::GET, "f", q).unwrap();
            req.build().unwrap().url().as_str().to_owned()
        };
        assert_eq!(url(None), "http://h/v1/functions/f/url");
        assert_eq!(
            url(Some("a&b")),
            "http://h/v1/functions/f/url?qualifier=a%26b"
        );
    }

    #[test]
    fn names_that_cannot_be_paths_are_refused() {
        let c = Client::new("http://127.0.0.1:1", Some(key())).unwrap();
        for bad in ["", "a/b", "../x", "a b"] {
            assert!(
                matches!(c.get_function(bad), Err(ClientError::InvalidName(_))),
                "{bad}"
            );
        }
    }
}
