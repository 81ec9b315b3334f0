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
        match &self.0 {
            CoreError::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            CoreError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            CoreError::Unauthorized(_) | CoreError::Signature(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            CoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            CoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            CoreError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            CoreError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            CoreError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            CoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            CoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            CoreError::Sandbox(_) => (StatusCode::BAD_GATEWAY, "sandbox_error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self.0 {
            // Details of internal failures go to the log, not to the caller.
            CoreError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error; see the control plane's log".to_owned()
            }
            other => other.to_string(),
        };
        if status.is_server_error() && !matches!(self.0, CoreError::Internal(_)) {
            tracing::warn!(%message, "request failed");
        }
        let body = ErrorResponse {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        (status, Json(body)).into_response()
    }
}
