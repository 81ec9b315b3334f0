//! What `/v1` handlers take from a request, with `/v1`'s errors: the authenticated caller and
//! JSON bodies (already read by `require_key` within the route's limit).

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use skyscale_core::{CoreError, Principal};

use super::ApiError;
use crate::auth;

/// The key `require_key` authenticated.
pub(crate) struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self(auth::caller(parts)?))
    }
}

/// A JSON body of the operation's shape; anything else is a 400 saying what did not parse.
pub(crate) struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body is the type's default.
pub(crate) struct OptionalJsonBody<T>(pub T);

async fn bytes<S: Send + Sync>(req: Request, state: &S) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| ApiError(CoreError::InvalidRequest(format!("reading the body: {e}"))))
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(CoreError::InvalidRequest(format!(
            "request body is not valid JSON for this operation: {e}"
        )))
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(parse(&bytes(req, state).await?)?))
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        Ok(Self(parse(&bytes)?))
    }
}

/// A query that does not parse is a 400 naming the parameters accepted.
pub(crate) fn query<T>(
    q: Result<Query<T>, QueryRejection>,
    what: &str,
    accepted: &str,
) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError(CoreError::InvalidRequest(format!(
            "invalid {what} query (accepted: {accepted}): {}",
            e.body_text()
        )))
    })
}
