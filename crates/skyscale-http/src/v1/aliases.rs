//! `/v1` aliases: create, list, get, update, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skyscale_types::api::{AliasInfo, AliasList, AliasRouting, CreateAlias, UpdateAlias};

use skyscale_core::AliasRecord;
use skyscale_types::version_label;

use super::extract::{Caller, JsonBody};
use super::{ApiResult, LIST_PAGE};
use crate::AppState;

/// The core's alias as the wire shows it.
fn alias_info(a: &AliasRecord) -> AliasInfo {
    AliasInfo {
        function: a.function.to_string(),
        name: a.name.clone(),
        version: version_label(a.version),
        description: a.description.clone(),
        routing: a.routing.map(|(version, weight)| AliasRouting {
            version: version.to_string(),
            weight,
        }),
        revision: a.revision,
        created_at: a.created_at.clone(),
    }
}

/// The core's routing weights: none, or the one additional version.
fn weights(routing: Option<AliasRouting>) -> Vec<(String, f64)> {
    routing.map(|r| (r.version, r.weight)).into_iter().collect()
}

pub(super) async fn create_alias(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(function): Path<String>,
    JsonBody(req): JsonBody<CreateAlias>,
) -> ApiResult<Response> {
    let a = cp
        .create_alias(
            &by,
            &function,
            &req.name,
            &req.version,
            req.description,
            &weights(req.routing),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(alias_info(&a))).into_response())
}

pub(super) async fn list_aliases(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(function): Path<String>,
) -> ApiResult<Response> {
    let mut aliases = Vec::new();
    let mut marker = None;
    loop {
        let (page, next) = cp
            .list_aliases_page(&by, &function, None, marker.as_deref(), LIST_PAGE)
            .await?;
        aliases.extend(page.iter().map(alias_info));
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    Ok(Json(AliasList { aliases }).into_response())
}

pub(super) async fn get_alias(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult<Response> {
    let a = cp.get_alias(&by, &function, &alias).await?;
    Ok(Json(alias_info(&a)).into_response())
}

pub(super) async fn update_alias(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((function, alias)): Path<(String, String)>,
    JsonBody(req): JsonBody<UpdateAlias>,
) -> ApiResult<Response> {
    let weights = req.routing.map(weights);
    let a = cp
        .update_alias(
            &by,
            &function,
            &alias,
            req.version.as_deref(),
            req.description,
            weights.as_deref(),
        )
        .await?;
    Ok(Json(alias_info(&a)).into_response())
}

pub(super) async fn delete_alias(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult<Response> {
    cp.delete_alias(&by, &function, &alias).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
