use skyscale_sandbox::DriverError;
use skyscale_store::{CodeError, StoreError};
use skyscale_types::{KeyParseError, ValidationError};

/// Which limit throttled an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The function's own reserved concurrency (0 = disabled).
    ReservedConcurrency,
    /// The host's sandbox cap or memory budget.
    Host,
    /// Too many failed authentications from the caller's address.
    AuthFailures,
    /// The server's bound on bytes buffered for requests not yet authenticated is spent.
    ServerBusy,
}

impl Throttle {
    /// A short name for records and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Throttle::ReservedConcurrency => "reserved_concurrency",
            Throttle::Host => "host_capacity",
            Throttle::AuthFailures => "auth_failures",
            Throttle::ServerBusy => "server_busy",
        }
    }
}

/// Every failure the control plane reports to a caller. The HTTP layer maps each variant to
/// a status code in one place; messages are lowercase, name what was wrong, and never
/// contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A request value broke a rule (400).
    #[error("{0}")]
    InvalidParameter(String),
    /// The request body is not what the route expects, e.g. malformed JSON (400).
    #[error("{0}")]
    InvalidRequest(String),
    /// No or bad credentials (401). The message never says whether a key id exists.
    #[error("{0}")]
    Unauthorized(String),
    /// The key may not do this (403). Decided before any lookup: the message never says
    /// whether the function exists.
    #[error("{0}")]
    Forbidden(String),
    /// The named function (or other resource) does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state, e.g. the name is taken (409).
    #[error("{0}")]
    Conflict(String),
    /// A precondition of the request (a RevisionId or CodeSha256) does not hold (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// The operation exists in the API Skyscale speaks (e.g. the Lambda API) but Skyscale
    /// does not implement it (400): refused by name, never answered as if done.
    #[error("{0}")]
    Unsupported(String),
    /// The request is larger than allowed (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request did not arrive in time, e.g. a body sent too slowly (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// Storing the code package would take the account's code storage past its limit
    /// (400, Lambda's `CodeStorageExceededException`).
    #[error("{0}")]
    CodeStorageExceeded(String),
    /// A concurrency limit was reached (429).
    #[error("{message}")]
    TooManyRequests { limit: Throttle, message: String },
    /// The control plane is shutting down or otherwise cannot serve now (503).
    #[error("{0}")]
    Unavailable(String),
    /// Something on our side failed (500). Details are logged, not returned.
    #[error("internal error: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// The sandbox could not be started (502).
    #[error("sandbox failure: {message}")]
    Sandbox {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// An AWS SigV4 signature was missing or refused (403 on the Lambda API); the variant
    /// says which AWS error code applies.
    #[error(transparent)]
    Signature(#[from] skyscale_sigv4::SigV4Error),
}

/// What an internal or sandbox failure came from, kept whole for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

impl CoreError {
    /// Something on our side failed, with no further cause.
    pub fn internal(message: impl Into<String>) -> Self {
        CoreError::Internal {
            message: message.into(),
            source: None,
        }
    }

    /// Something on our side failed while doing `message`, because of `source`.
    pub fn internal_from(message: impl Into<String>, source: impl Into<Cause>) -> Self {
        CoreError::Internal {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A sandbox could not be started or initialised while doing `message`.
    pub fn sandbox_from(message: impl Into<String>, source: impl Into<Cause>) -> Self {
        CoreError::Sandbox {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The error and every cause under it, `: `-joined: what logs (and, for a sandbox
    /// failure, its caller) are told.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            next = cause.source();
        }
        out
    }

    /// A short, stable name of the kind of failure: the `/v1` error code and the outcome the
    /// audit log records.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidParameter(_) => "invalid_parameter",
            CoreError::InvalidRequest(_) => "invalid_request",
            CoreError::Unauthorized(_) | CoreError::Signature(_) => "unauthorized",
            CoreError::Forbidden(_) => "forbidden",
            CoreError::NotFound(_) => "not_found",
            CoreError::Conflict(_) => "conflict",
            CoreError::PreconditionFailed(_) => "precondition_failed",
            CoreError::Unsupported(_) => "unsupported",
            CoreError::PayloadTooLarge(_) => "payload_too_large",
            CoreError::RequestTimeout(_) => "request_timeout",
            CoreError::CodeStorageExceeded(_) => "code_storage_exceeded",
            CoreError::TooManyRequests { .. } => "too_many_requests",
            CoreError::Unavailable(_) => "unavailable",
            CoreError::Internal { .. } => "internal",
            CoreError::Sandbox { .. } => "sandbox_error",
        }
    }
}

impl From<ValidationError> for CoreError {
    fn from(e: ValidationError) -> Self {
        CoreError::InvalidParameter(e.to_string())
    }
}

impl From<KeyParseError> for CoreError {
    fn from(_: KeyParseError) -> Self {
        crate::auth::invalid_key()
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::FunctionExists(name) => {
                CoreError::Conflict(format!("function {name} already exists"))
            }
            StoreError::FunctionNotFound(name) => {
                CoreError::NotFound(format!("function {name} not found"))
            }
            StoreError::Limit(m) => CoreError::InvalidParameter(m),
            StoreError::RevisionMismatch { name, .. } => CoreError::PreconditionFailed(format!(
                "function {name} changed since the revision given: read it again (its \
                 RevisionId) and retry"
            )),
            StoreError::AliasExists(name) => {
                CoreError::Conflict(format!("alias {name} already exists"))
            }
            StoreError::InUse(m) => CoreError::Conflict(m),
            StoreError::Exists(m) => CoreError::Conflict(m),
            StoreError::NotFound(m) => CoreError::NotFound(m),
            other => CoreError::internal_from("the database failed", other),
        }
    }
}

impl From<CodeError> for CoreError {
    fn from(e: CodeError) -> Self {
        match e {
            CodeError::TooLarge { .. } => CoreError::PayloadTooLarge(e.to_string()),
            CodeError::StorageFull { .. } => CoreError::CodeStorageExceeded(e.to_string()),
            CodeError::Io(_) => CoreError::internal_from("storing code packages failed", e),
            _ => CoreError::InvalidParameter(e.to_string()),
        }
    }
}

impl From<DriverError> for CoreError {
    fn from(e: DriverError) -> Self {
        CoreError::sandbox_from("the sandbox driver failed", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cause stays an error value under the message, not text folded into it.
    #[test]
    fn internal_errors_keep_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no access");
        let e = CoreError::internal_from("writing /x", io);
        assert_eq!(e.to_string(), "internal error: writing /x");
        let cause = std::error::Error::source(&e).expect("a source");
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(e.report(), "internal error: writing /x: no access");
        assert_eq!(
            CoreError::internal("plain").report(),
            "internal error: plain"
        );
    }
}
