use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skyscale_core::CoreError;
use skyscale_types::api::{ErrorDetail, ErrorResponse};

/// A `CoreError` on its way out as `{"error": {"code", "message"}}`. The only place that
/// decides status codes.
#[derive(Debug)]
pub struct ApiError(pub CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        Self(e)
    }
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        (status(&self.0), self.0.code())
    }
}

/// The HTTP status of each failure on Skyscale's own surfaces (`/v1`; function URLs take
/// it for everything they do not answer in Lambda's own way).
pub(crate) fn status(e: &CoreError) -> StatusCode {
    match e {
        CoreError::InvalidParameter(_)
        | CoreError::InvalidRequest(_)
        | CoreError::Unsupported(_)
        | CoreError::CodeStorageExceeded(_) => StatusCode::BAD_REQUEST,
        CoreError::Unauthorized(_) | CoreError::Signature(_) => StatusCode::UNAUTHORIZED,
        CoreError::Forbidden(_) => StatusCode::FORBIDDEN,
        CoreError::NotFound(_) => StatusCode::NOT_FOUND,
        CoreError::Conflict(_) => StatusCode::CONFLICT,
        CoreError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
        CoreError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        CoreError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        CoreError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        CoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        CoreError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        CoreError::Sandbox { .. } => StatusCode::BAD_GATEWAY,
    }
}

impl ApiError {
    /// The message the caller sees (logged here when the failure is the server's).
    pub fn message(&self) -> String {
        let message = match &self.0 {
            // Details of internal failures go to the log, not to the caller.
            CoreError::Internal { .. } => {
                tracing::error!(error = %self.0.report(), "internal error");
                "internal error; see the control plane's log".to_owned()
            }
            other => other.report(),
        };
        if status(&self.0).is_server_error() && !matches!(self.0, CoreError::Internal { .. }) {
            tracing::warn!(%message, "request failed");
        }
        message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.message();
        let body = ErrorResponse {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        (status, Json(body)).into_response()
    }
}
