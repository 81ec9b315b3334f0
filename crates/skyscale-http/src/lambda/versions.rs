//! Versions: PublishVersion, ListVersionsByFunction.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::LambdaError;
use super::extract::{Caller, Unqualified};
use super::model::{self};
use super::{
    config_json, expect, max_items, page_response, parse_json, LambdaResult, Params, MAX_PAGE,
};
use crate::AppState;

pub(super) async fn publish_version(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    body: Bytes,
) -> LambdaResult<Response> {
    let about = |e| LambdaError::about(e, &t.arn);
    let req: model::PublishVersionIn = if body.iter().all(u8::is_ascii_whitespace) {
        model::PublishVersionIn::default()
    } else {
        parse_json(&body)?
    };
    if req.publish_to.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(LambdaError::invalid(
            "PublishTo is not supported by Skyscale: there are no capacity providers",
        ));
    }
    let expect = expect(
        &cp,
        &by,
        &t,
        req.revision_id.as_deref(),
        req.code_sha256.as_deref(),
    )
    .await?;
    let (v, _) = cp
        .publish_version(&by, &t.name, req.description, expect)
        .await
        .map_err(about)?;
    Ok((StatusCode::CREATED, config_json(&cp, &v)).into_response())
}

pub(super) async fn list_versions(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    params: Params,
) -> LambdaResult<Response> {
    let max = max_items(&params, MAX_PAGE)?;
    let marker = params.get("Marker").filter(|m| !m.is_empty());
    let (page, next) = cp
        .list_versions_page(&by, &t.name, marker.map(String::as_str), max)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    let items = page.iter().map(|f| model::configuration(&cp, f));
    Ok(page_response("Versions", items, next))
}
