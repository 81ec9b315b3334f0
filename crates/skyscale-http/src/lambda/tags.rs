//! Tags: TagResource, UntagResource, ListTags.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::LambdaError;
use super::extract::{Caller, LambdaJson};
use super::model::{self, Target};
use super::LambdaResult;
use crate::AppState;

/// The function a tagging call names: an unqualified function ARN.
fn tag_target(cp: &AppState, resource: &str) -> LambdaResult<Target> {
    match model::parse_target(cp.settings(), resource, None) {
        Some(t) if t.qualifier.is_none() && resource.starts_with("arn:") => Ok(t),
        _ => Err(LambdaError::invalid(format!(
            "invalid resource {resource:?}: expected an unqualified function ARN"
        ))),
    }
}

pub(super) async fn list_tags(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(resource): Path<String>,
) -> LambdaResult<Response> {
    let t = tag_target(&cp, &resource)?;
    let tags = cp
        .list_tags(&by, &t.name)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(Json(serde_json::json!({ "Tags": tags })).into_response())
}

pub(super) async fn tag_resource(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(resource): Path<String>,
    LambdaJson(req): LambdaJson<model::TagsIn>,
) -> LambdaResult<Response> {
    let t = tag_target(&cp, &resource)?;
    cp.tag_function(&by, &t.name, req.tags)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn untag_resource(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(resource): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> LambdaResult<Response> {
    let t = tag_target(&cp, &resource)?;
    // `tagKeys` repeats, which a map extractor would collapse.
    let keys: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v)
        .collect();
    cp.untag_function(&by, &t.name, keys)
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
