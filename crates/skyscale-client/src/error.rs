use skyscale_types::{KeyParseError, ValidationError};

/// Why a call to the API did not give a result. Each variant's message is written for the
/// user: it says what failed and, where the client knows it, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not an `http://` URL the client can use.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    /// The API key does not have the shape `<id>.<secret>`. Never shows the key.
    #[error("invalid API key: {0}")]
    InvalidKey(KeyParseError),

    /// A call that needs an API key was made on a client built without one.
    #[error("no API key configured")]
    MissingKey,

    /// A function name that cannot be part of a `/v1` path.
    #[error("{0}")]
    InvalidName(ValidationError),

    /// The server answered with a `/v1` error (`{"error": {"code", "message"}}`).
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },

    /// The server answered with an error status but not with a `/v1` error body (e.g. a
    /// proxy's 502 page).
    #[error("Skyscale at {endpoint} answered HTTP {status}: {body}")]
    UnexpectedStatus {
        endpoint: String,
        status: u16,
        /// The start of the body as text, or a note that it was empty.
        body: String,
    },

    /// The request did not get an answer: connection refused, DNS failure, timeout, reset.
    /// The message names the endpoint.
    #[error("{message}")]
    Transport { endpoint: String, message: String },

    /// A 2xx answer whose body is not what the API promises.
    #[error("cannot decode the answer of Skyscale at {endpoint} to {request}: {reason}")]
    Decode {
        endpoint: String,
        request: String,
        reason: String,
    },
}

impl ClientError {
    /// The `/v1` error code (`not_found`, `conflict`, …) when the server gave one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status when the server answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Builds a [`ClientError::Transport`] from a failed request, naming the endpoint and the
    /// deepest cause (`connection refused`, not a chain of wrappers).
    pub(crate) fn transport(endpoint: &str, err: &reqwest::Error) -> Self {
        let cause = root_cause(err);
        let message = if err.is_timeout() {
            format!("request to Skyscale at {endpoint} timed out: {cause}")
        } else if err.is_connect() {
            format!(
                "cannot reach Skyscale at {endpoint}: {cause} — is skyscale-control-plane running?"
            )
        } else {
            format!("request to Skyscale at {endpoint} failed: {cause}")
        };
        Self::Transport {
            endpoint: endpoint.to_owned(),
            message,
        }
    }
}

/// The innermost error's message, with I/O errors given by their kind ("connection refused")
/// rather than their OS wording ("Connection refused (os error 111)").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = err;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    if let Some(io) = deepest.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        if let kind @ (K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::AddrNotAvailable
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::TimedOut
        | K::BrokenPipe
        | K::UnexpectedEof) = io.kind()
        {
            return kind.to_string();
        }
    }
    let text = deepest.to_string();
    // "Connection refused (os error 111)" -> "Connection refused"
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    };
    if text.is_empty() {
        err.to_string()
    } else {
        text
    }
}
