//! Function URL configurations: Create/Get/Update/Delete/ListFunctionUrlConfigs. The URLs
//! themselves are served by `crate::url`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use skyscale_core::UrlConfig;
use skyscale_types::UrlAuthType;

use super::error::LambdaError;
use super::extract::{Caller, Function, LambdaJson};
use super::model::{self, Target};
use super::{max_items, page_response, Params, MAX_PAGE};
use super::{missing_resource, LambdaResult};
use crate::AppState;

fn auth_type(s: &str) -> LambdaResult<UrlAuthType> {
    UrlAuthType::parse(s).map_err(LambdaError::invalid)
}

fn config_json(headers: &HeaderMap, c: &UrlConfig) -> serde_json::Value {
    let url = crate::url::function_url(headers, &c.function, c.alias.as_deref());
    model::url_configuration(c, url)
}

fn about(t: &Target) -> impl Fn(skyscale_core::CoreError) -> LambdaError + '_ {
    move |e| LambdaError::about(e, &t.qualified_arn())
}

pub(super) async fn create(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    headers: HeaderMap,
    LambdaJson(req): LambdaJson<model::UrlConfigIn>,
) -> LambdaResult<Response> {
    let auth = auth_type(
        req.auth_type
            .as_deref()
            .ok_or_else(|| LambdaError::invalid("AuthType is required: NONE or AWS_IAM"))?,
    )?;
    let c = cp
        .create_url_config(
            &by,
            &t.name,
            t.qualifier.as_deref(),
            auth,
            req.cors.and_then(model::CorsIn::into_cors),
            req.invoke_mode.as_deref(),
        )
        .await
        .map_err(about(&t))?;
    let mut out = config_json(&headers, &c);
    // Create answers without LastModifiedTime.
    if let Some(o) = out.as_object_mut() {
        o.remove("LastModifiedTime");
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub(super) async fn get(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    headers: HeaderMap,
) -> LambdaResult<Response> {
    let c = match cp
        .get_url_config(&by, &t.name, t.qualifier.as_deref())
        .await
    {
        Ok(c) => c,
        Err(e) => return Err(missing_resource(&cp, &by, &t, e).await),
    };
    Ok(Json(config_json(&headers, &c)).into_response())
}

pub(super) async fn update(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    headers: HeaderMap,
    LambdaJson(req): LambdaJson<model::UrlConfigIn>,
) -> LambdaResult<Response> {
    let auth = req.auth_type.as_deref().map(auth_type).transpose()?;
    let updated = cp
        .update_url_config(
            &by,
            &t.name,
            t.qualifier.as_deref(),
            auth,
            // An empty `Cors` removes CORS.
            req.cors.map(model::CorsIn::into_cors),
            req.invoke_mode.as_deref(),
        )
        .await;
    let c = match updated {
        Ok(c) => c,
        Err(e) => return Err(missing_resource(&cp, &by, &t, e).await),
    };
    Ok(Json(config_json(&headers, &c)).into_response())
}

pub(super) async fn delete(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
) -> LambdaResult<Response> {
    if let Err(e) = cp
        .delete_url_config(&by, &t.name, t.qualifier.as_deref())
        .await
    {
        return Err(missing_resource(&cp, &by, &t, e).await);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Function(t): Function,
    params: Params,
    headers: HeaderMap,
) -> LambdaResult<Response> {
    let max = max_items(&params, MAX_PAGE)?;
    let marker = params.get("Marker").filter(|m| !m.is_empty());
    let (page, next) = cp
        .list_url_configs_page(&by, &t.name, marker.map(String::as_str), max)
        .await
        .map_err(about(&t))?;
    let items = page.iter().map(|c| config_json(&headers, c));
    Ok(page_response("FunctionUrlConfigs", items, next))
}
