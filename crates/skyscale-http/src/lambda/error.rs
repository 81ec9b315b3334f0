//! The one place that turns a `CoreError` into a Lambda error response (lambda-compatibility.md §2):
//! status, `x-amzn-ErrorType` header, and a JSON body with `Type` and the message under
//! the casing each error shape uses. A deterministic failure is never a 5xx: boto3
//! retries those.
//!
//! Deliberately unlike AWS, an unknown (or revoked) access key id and a signature that does
//! not match get the same answer, `UnrecognizedClientException` with one message, so a
//! caller cannot find out which key ids exist.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use skyscale_core::{CoreError, Throttle};
use skyscale_sigv4::SigV4Error;

/// The message of `UnrecognizedClientException`: the same for an unknown or revoked key id
/// and for a signature that does not match.
pub(crate) const INVALID_CREDENTIALS: &str = "The security token included in the request is \
     invalid: the access key id is unknown or revoked, or the signature does not match \
     (check the secret access key and the signing method).";

/// A failed Lambda API call. `arn` names the function the call was about, for the
/// "Function not found: <arn>" message.
#[derive(Debug)]
pub(crate) struct LambdaError {
    pub error: CoreError,
    pub arn: Option<String>,
    /// A more specific exception than the error's own (its shape's message member is
    /// `message`), e.g. `ProvisionedConcurrencyConfigNotFoundException` for a 404.
    pub code: Option<&'static str>,
}

impl From<CoreError> for LambdaError {
    fn from(error: CoreError) -> Self {
        Self {
            error,
            arn: None,
            code: None,
        }
    }
}

impl LambdaError {
    pub fn about(error: CoreError, arn: &str) -> Self {
        Self {
            error,
            arn: Some(arn.to_owned()),
            code: None,
        }
    }

    /// `ProvisionedConcurrencyConfigNotFoundException` (404): the version or alias exists
    /// and has no provisioned concurrency configuration.
    pub fn provisioned_not_found() -> Self {
        Self {
            error: CoreError::NotFound(
                "No Provisioned Concurrency Config found for this function".into(),
            ),
            arn: None,
            code: Some("ProvisionedConcurrencyConfigNotFoundException"),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        CoreError::InvalidParameter(message.into()).into()
    }
}

/// What goes on the wire for one error.
struct Wire {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The shape's message member is `message` (else `Message`).
    lowercase: bool,
    reason: Option<&'static str>,
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn wire(e: &LambdaError) -> Wire {
    let w = |status, code, message: String, lowercase| Wire {
        status,
        code,
        message,
        lowercase,
        reason: None,
    };
    match &e.error {
        CoreError::InvalidParameter(m) => w(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            m.clone(),
            true,
        ),
        // Not a Lambda error: Lambda implements every operation of its API. A code of its
        // own lets tools tell "not supported here" from "no such function".
        CoreError::Unsupported(m) => w(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperationException",
            m.clone(),
            false,
        ),
        CoreError::InvalidRequest(m) => w(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            m.clone(),
            true,
        ),
        CoreError::Unauthorized(m) => w(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            m.clone(),
            false,
        ),
        CoreError::Signature(s) => {
            let (code, message) = match s {
                SigV4Error::Missing => (
                    "MissingAuthenticationTokenException",
                    "Missing Authentication Token".to_owned(),
                ),
                SigV4Error::UnknownKey | SigV4Error::Mismatch => (
                    "UnrecognizedClientException",
                    INVALID_CREDENTIALS.to_owned(),
                ),
                SigV4Error::Malformed(_) => {
                    ("IncompleteSignatureException", capitalise(&s.to_string()))
                }
                _ => ("InvalidSignatureException", capitalise(&s.to_string())),
            };
            w(StatusCode::FORBIDDEN, code, message, false)
        }
        CoreError::Forbidden(m) => w(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            m.clone(),
            false,
        ),
        CoreError::NotFound(m) => w(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            match &e.arn {
                Some(arn) => format!("Function not found: {arn}"),
                None => m.clone(),
            },
            false,
        ),
        CoreError::Conflict(m) => w(
            StatusCode::CONFLICT,
            "ResourceConflictException",
            m.clone(),
            true,
        ),
        CoreError::PreconditionFailed(m) => w(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailedException",
            m.clone(),
            true,
        ),
        CoreError::PayloadTooLarge(m) => w(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            m.clone(),
            true,
        ),
        // Not a Lambda error (its front door answers slow senders itself); botocore
        // retries a 408.
        CoreError::RequestTimeout(m) => w(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeoutException",
            m.clone(),
            true,
        ),
        // botocore's shape: `Type` and `message`, status 400.
        CoreError::CodeStorageExceeded(m) => w(
            StatusCode::BAD_REQUEST,
            "CodeStorageExceededException",
            m.clone(),
            true,
        ),
        CoreError::TooManyRequests { limit, message: m } => Wire {
            // The host's limits play the part of Lambda's account-wide limit.
            reason: Some(match limit {
                Throttle::ReservedConcurrency => {
                    "ReservedFunctionConcurrentInvocationLimitExceeded"
                }
                Throttle::Host => "ConcurrentInvocationLimitExceeded",
                Throttle::AuthFailures | Throttle::ServerBusy => "CallerRateLimitExceeded",
            }),
            ..w(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                m.clone(),
                true,
            )
        },
        // Shutting down: worth a retry elsewhere or later.
        CoreError::Unavailable(m) => w(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceException",
            m.clone(),
            false,
        ),
        CoreError::Internal { .. } => {
            tracing::error!(error = %e.error.report(), "internal error");
            w(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "internal error; see the control plane's log".to_owned(),
                false,
            )
        }
        // A sandbox that failed to start is not deterministic: a retry may well succeed.
        CoreError::Sandbox { .. } => w(
            StatusCode::BAD_GATEWAY,
            "ResourceNotReadyException",
            e.error.report(),
            true,
        ),
    }
}

impl IntoResponse for LambdaError {
    fn into_response(self) -> Response {
        let mut w = wire(&self);
        if let Some(code) = self.code {
            w.code = code;
            w.lowercase = true;
        }
        if w.status.is_server_error() && !matches!(self.error, CoreError::Internal { .. }) {
            tracing::warn!(code = w.code, message = %w.message, "lambda api request failed");
        }
        let mut body = serde_json::Map::new();
        let kind = if w.status.is_server_error() {
            "Service"
        } else {
            "User"
        };
        body.insert("Type".into(), kind.into());
        let key = if w.lowercase { "message" } else { "Message" };
        body.insert(key.into(), w.message.into());
        if let Some(reason) = w.reason {
            body.insert("Reason".into(), reason.into());
        }
        let mut resp = (w.status, Json(serde_json::Value::Object(body))).into_response();
        resp.headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(w.code));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: CoreError) -> (u16, &'static str) {
        let w = wire(&e.into());
        (w.status.as_u16(), w.code)
    }

    #[test]
    fn deterministic_failures_are_never_5xx() {
        for e in [
            CoreError::InvalidParameter("x".into()),
            CoreError::InvalidRequest("x".into()),
            CoreError::Unauthorized("x".into()),
            CoreError::Signature(SigV4Error::Mismatch),
            CoreError::NotFound("x".into()),
            CoreError::Conflict("x".into()),
            CoreError::PreconditionFailed("x".into()),
            CoreError::PayloadTooLarge("x".into()),
            CoreError::TooManyRequests {
                limit: Throttle::Host,
                message: "x".into(),
            },
        ] {
            assert!(code_of(e).0 < 500);
        }
        // An unknown key and a wrong signature cannot be told apart.
        for e in [SigV4Error::UnknownKey, SigV4Error::Mismatch] {
            let w = wire(&CoreError::Signature(e).into());
            assert_eq!(
                (w.status.as_u16(), w.code, w.message.as_str()),
                (403, "UnrecognizedClientException", INVALID_CREDENTIALS)
            );
        }
        assert_eq!(
            code_of(CoreError::Forbidden("x".into())),
            (403, "AccessDeniedException")
        );
        assert_eq!(
            code_of(CoreError::TooManyRequests {
                limit: Throttle::AuthFailures,
                message: "x".into()
            }),
            (429, "TooManyRequestsException")
        );
        assert_eq!(
            code_of(CoreError::Signature(SigV4Error::Expired("t".into()))),
            (403, "InvalidSignatureException")
        );
        assert_eq!(
            code_of(CoreError::Signature(SigV4Error::Missing)),
            (403, "MissingAuthenticationTokenException")
        );
        assert_eq!(
            code_of(CoreError::CodeStorageExceeded("x".into())),
            (400, "CodeStorageExceededException")
        );
    }
}
