//! `/v1` versions: publish, list.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skyscale_core::Expect;
use skyscale_types::api::{PublishVersion, VersionList};

use super::extract::{Caller, OptionalJsonBody};
use super::functions::function_info;
use super::{ApiResult, LIST_PAGE};
use crate::AppState;

pub(super) async fn publish_version(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    OptionalJsonBody(req): OptionalJsonBody<PublishVersion>,
) -> ApiResult<Response> {
    // Publishing unchanged code returns the newest version, as in Lambda: 201 either way.
    let (v, _new) = cp
        .publish_version(&by, &name, req.description, Expect::default())
        .await?;
    Ok((StatusCode::CREATED, Json(function_info(&cp, &v))).into_response())
}

pub(super) async fn list_versions(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut versions = Vec::new();
    let mut marker = None;
    loop {
        let (page, next) = cp
            .list_versions_page(&by, &name, marker.as_deref(), LIST_PAGE)
            .await?;
        versions.extend(page.iter().map(|f| function_info(&cp, f)));
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    Ok(Json(VersionList { versions }).into_response())
}
