//! `GET /code/{sha256}?expires=&signature=`: downloading a function's package from the
//! signed location GetFunction hands out (`Code.Location`). No key: the signature is the
//! permission, as with an S3 presigned URL.

use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use skyscale_core::{CodeGrant, CoreError};
use tokio::io::AsyncReadExt;

use crate::{ApiError, AppState};

const PREFIX: &str = "/code/";
/// Bytes read from the file per chunk of the response.
const CHUNK: usize = 256 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/code/{sha256}", get(download))
}

/// The absolute URL of a grant, on the host the caller reached us by.
pub(crate) fn location(host: &str, grant: &CodeGrant) -> String {
    format!(
        "http://{host}{PREFIX}{}?expires={}&signature={}",
        grant.sha256, grant.expires, grant.signature
    )
}

#[derive(Debug, Deserialize)]
struct Signed {
    expires: u64,
    signature: String,
}

async fn download(
    State(cp): State<AppState>,
    Path(sha256): Path<String>,
    q: Result<Query<Signed>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|_| {
        ApiError(CoreError::Forbidden(
            "a code location needs its expires and signature parameters".into(),
        ))
    })?;
    let grant = cp
        .redeem_code_location(&sha256, q.expires, &q.signature, SystemTime::now())
        .await?;
    let file = tokio::fs::File::open(&grant.zip).await.map_err(|e| {
        ApiError(CoreError::internal_from(
            format!("opening {}", grant.zip.display()),
            e,
        ))
    })?;
    let len = file
        .metadata()
        .await
        .map_err(|e| {
            ApiError(CoreError::internal_from(
                format!("reading {}", grant.zip.display()),
                e,
            ))
        })?
        .len();
    // The grant (its pin on the package) lives as long as the stream.
    let chunks = futures_util::stream::unfold((file, grant), |(mut file, grant)| async move {
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (file, grant)))
            }
            Err(e) => Some((Err(e), (file, grant))),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}
