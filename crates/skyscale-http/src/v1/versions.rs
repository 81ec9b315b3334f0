//! `/v1` versions: publish, list.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use skyscale_core::{Expect, Principal};
use skyscale_types::api::{PublishVersion, VersionList};

use super::functions::function_info;
use super::{read_optional_json, ApiResult, LIST_PAGE};
use crate::AppState;

pub(super) async fn publish_version(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let req: PublishVersion = read_optional_json(body).await?;
    // Publishing unchanged code returns the newest version, as in Lambda: 201 either way.
    let (v, _new) = cp
        .publish_version(&by, &name, req.description, Expect::default())
        .await?;
    Ok((StatusCode::CREATED, Json(function_info(&v))).into_response())
}

pub(super) async fn list_versions(
    State(cp): State<AppState>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut versions = Vec::new();
    let mut marker = None;
    loop {
        let (page, next) = cp
            .list_versions_page(&by, &name, marker.as_deref(), LIST_PAGE)
            .await?;
        versions.extend(page.iter().map(function_info));
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    Ok(Json(VersionList { versions }).into_response())
}
