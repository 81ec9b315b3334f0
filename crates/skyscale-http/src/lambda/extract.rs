//! What Lambda API handlers take from a request, with the Lambda API's errors: the caller
//! `require_sigv4` authenticated, the function a path names (with its `Qualifier`), and
//! JSON bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use skyscale_core::Principal;

use super::error::LambdaError;
use super::model::Target;
use super::{parse_json, target, unqualified, Params};
use crate::{auth, AppState};

/// The key `require_sigv4` authenticated.
pub(super) struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = LambdaError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, LambdaError> {
        Ok(Self(auth::caller(parts)?))
    }
}

/// The `{name}` of the path (a name, `name:qualifier` or an ARN) and the `Qualifier` query.
pub(super) struct Function(pub Target);

/// Like [`Function`], for operations on the function itself: a qualifier is refused.
pub(super) struct Unqualified(pub Target);

async fn raw_and_params(parts: &mut Parts, cp: &AppState) -> Result<(String, Params), LambdaError> {
    // By name: some routes have more segments after the function's (`/aliases/{alias}`).
    let segments = RawPathParams::from_request_parts(parts, cp)
        .await
        .map_err(|e| LambdaError::invalid(format!("invalid path: {e}")))?;
    let raw = segments
        .iter()
        .find_map(|(k, v)| (k == "name").then(|| v.to_owned()))
        .ok_or_else(|| LambdaError::invalid("the path names no function"))?;
    let params = Params::from_request_parts(parts, cp)
        .await
        .map_err(|e| LambdaError::invalid(format!("invalid query string: {e}")))?;
    Ok((raw, params))
}

impl FromRequestParts<AppState> for Function {
    type Rejection = LambdaError;

    async fn from_request_parts(parts: &mut Parts, cp: &AppState) -> Result<Self, LambdaError> {
        let (raw, params) = raw_and_params(parts, cp).await?;
        Ok(Self(target(cp, &raw, &params)?))
    }
}

impl FromRequestParts<AppState> for Unqualified {
    type Rejection = LambdaError;

    async fn from_request_parts(parts: &mut Parts, cp: &AppState) -> Result<Self, LambdaError> {
        let (raw, params) = raw_and_params(parts, cp).await?;
        Ok(Self(unqualified(cp, &raw, &params)?))
    }
}

/// A JSON body of the operation's shape: malformed JSON is `InvalidRequestContent`, a body
/// of the wrong shape `InvalidParameterValue`.
pub(super) struct LambdaJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for LambdaJson<T> {
    type Rejection = LambdaError;

    async fn from_request(req: Request, state: &S) -> Result<Self, LambdaError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| LambdaError::invalid(format!("reading the body: {e}")))?;
        Ok(Self(parse_json(&bytes)?))
    }
}
