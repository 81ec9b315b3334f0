//! Aliases: Create/Get/List/Update/DeleteAlias.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skyscale_core::CoreError;

use super::error::LambdaError;
use super::extract::{Caller, LambdaJson, Unqualified};
use super::model::{self};
use super::{max_items, page_response, parse_json, LambdaResult, Params, MAX_PAGE};
use crate::AppState;

pub(super) async fn create_alias(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    LambdaJson(req): LambdaJson<model::CreateAliasIn>,
) -> LambdaResult<Response> {
    let weights = req.routing_config.map(|r| r.weights()).unwrap_or_default();
    let a = cp
        .create_alias(
            &by,
            &t.name,
            &req.name,
            &req.function_version,
            req.description,
            &weights,
        )
        .await
        .map_err(|e| LambdaError::about(e, &format!("{}:{}", t.arn, req.name)))?;
    Ok((
        StatusCode::CREATED,
        Json(model::alias_configuration(cp.settings(), &a)),
    )
        .into_response())
}

pub(super) async fn get_alias(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    Path((_, alias)): Path<(String, String)>,
) -> LambdaResult<Response> {
    let a = cp
        .get_alias(&by, &t.name, &alias)
        .await
        .map_err(|e| LambdaError::about(e, &format!("{}:{alias}", t.arn)))?;
    Ok(Json(model::alias_configuration(cp.settings(), &a)).into_response())
}

pub(super) async fn list_aliases(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    params: Params,
) -> LambdaResult<Response> {
    let max = max_items(&params, MAX_PAGE)?;
    let marker = params.get("Marker").filter(|m| !m.is_empty());
    let version = params.get("FunctionVersion").filter(|v| !v.is_empty());
    let (page, next) = cp
        .list_aliases_page(
            &by,
            &t.name,
            version.map(String::as_str),
            marker.map(String::as_str),
            max,
        )
        .await
        .map_err(|e| LambdaError::about(e, &t.arn))?;
    let items = page
        .iter()
        .map(|a| model::alias_configuration(cp.settings(), a));
    Ok(page_response("Aliases", items, next))
}

pub(super) async fn update_alias(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    Path((_, alias)): Path<(String, String)>,
    body: Bytes,
) -> LambdaResult<Response> {
    let arn = format!("{}:{alias}", t.arn);
    let about = |e| LambdaError::about(e, &arn);
    let req: model::UpdateAliasIn = if body.iter().all(u8::is_ascii_whitespace) {
        model::UpdateAliasIn::default()
    } else {
        parse_json(&body)?
    };
    if let Some(rev) = &req.revision_id {
        let current = cp.get_alias(&by, &t.name, &alias).await.map_err(about)?;
        if *rev != model::alias_revision_id(&current) {
            return Err(CoreError::PreconditionFailed(
                "the RevisionId provided does not match the latest RevisionId for the alias; \
                 call GetAlias to get the latest RevisionId"
                    .into(),
            )
            .into());
        }
    }
    let weights = req.routing_config.map(|r| r.weights());
    let a = cp
        .update_alias(
            &by,
            &t.name,
            &alias,
            req.function_version.as_deref(),
            req.description,
            weights.as_deref(),
        )
        .await
        .map_err(about)?;
    Ok(Json(model::alias_configuration(cp.settings(), &a)).into_response())
}

pub(super) async fn delete_alias(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Unqualified(t): Unqualified,
    Path((_, alias)): Path<(String, String)>,
) -> LambdaResult<Response> {
    cp.delete_alias(&by, &t.name, &alias)
        .await
        .map_err(|e| LambdaError::about(e, &format!("{}:{alias}", t.arn)))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
