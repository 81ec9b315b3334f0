//! The one place that turns a `CoreError` into a function URL's answer: a status and a
//! `{"Message": …}` body, as Lambda's function URLs answer. A function's own failure is not
//! a `CoreError` (it is a 502 decided by the handler from the invocation's outcome).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use skyscale_core::CoreError;

/// A failed function URL request.
pub(super) struct UrlError(pub CoreError);

impl From<CoreError> for UrlError {
    fn from(e: CoreError) -> Self {
        Self(e)
    }
}

/// An answer with Lambda's function URL error body.
pub(super) fn answer(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "Message": message }).to_string(),
    )
        .into_response()
}

impl IntoResponse for UrlError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = match &e {
            CoreError::Unauthorized(_) | CoreError::Signature(_) | CoreError::Forbidden(_) => {
                return answer(StatusCode::FORBIDDEN, &format!("Forbidden: {e}"));
            }
            CoreError::Internal { .. } => {
                tracing::error!(error = %e.report(), "function URL: internal error");
                return answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
            other => crate::v1::status(other),
        };
        answer(status, &e.report())
    }
}
