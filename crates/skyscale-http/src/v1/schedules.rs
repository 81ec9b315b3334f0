//! `/v1/schedules`: create, list, get, update, pause, resume and delete schedules (a
//! function invoked asynchronously at the slots of an EventBridge expression).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use skyscale_core::{CoreError, Schedule, ScheduleChanges, ScheduleSpec};
use skyscale_types::schedules::{
    CreateSchedule, MissedFires, ScheduleInfo, ScheduleList, UpdateSchedule,
};
use skyscale_types::time::rfc3339;

use super::extract::{Caller, JsonBody};
use super::ApiResult;
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/schedules", post(create).get(list))
        .route(
            "/v1/schedules/{name}",
            get(get_one).patch(update).delete(delete),
        )
        .route("/v1/schedules/{name}/pause", post(pause))
        .route("/v1/schedules/{name}/resume", post(resume))
}

fn info(s: Schedule) -> ScheduleInfo {
    ScheduleInfo {
        payload: s.payload.map(|p| {
            serde_json::from_slice(&p).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&p).into_owned())
            })
        }),
        name: s.name,
        arn: s.arn,
        function: s.function,
        qualifier: s.qualifier,
        expression: s.expression,
        timezone: s.timezone,
        state: s.state,
        missed: s.missed,
        last_fired_at: s.last_fired_at.map(rfc3339),
        next_fire_at: s.next_fire_at.map(rfc3339),
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
    }
}

fn missed(s: Option<String>) -> Result<Option<MissedFires>, CoreError> {
    s.as_deref()
        .map(MissedFires::parse)
        .transpose()
        .map_err(CoreError::InvalidParameter)
}

fn payload(v: serde_json::Value) -> Vec<u8> {
    // A `Value` always serialises.
    serde_json::to_vec(&v).unwrap_or_default()
}

async fn create(
    State(cp): State<AppState>,
    Caller(by): Caller,
    JsonBody(req): JsonBody<CreateSchedule>,
) -> ApiResult<(StatusCode, Json<ScheduleInfo>)> {
    let spec = ScheduleSpec {
        name: req.name,
        function: req.function,
        qualifier: req.qualifier,
        expression: req.expression,
        timezone: req.timezone,
        payload: req.payload.map(payload),
        missed: missed(req.missed)?,
    };
    let s = cp.create_schedule(&by, spec).await?;
    Ok((StatusCode::CREATED, Json(info(s))))
}

async fn list(State(cp): State<AppState>, Caller(by): Caller) -> ApiResult<Json<ScheduleList>> {
    let all = cp.list_schedules(&by).await?;
    Ok(Json(ScheduleList {
        schedules: all.into_iter().map(info).collect(),
    }))
}

async fn get_one(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleInfo>> {
    Ok(Json(info(cp.get_schedule(&by, &name).await?)))
}

async fn update(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<UpdateSchedule>,
) -> ApiResult<Json<ScheduleInfo>> {
    let changes = ScheduleChanges {
        function: req.function,
        qualifier: req.qualifier.map(|q| Some(q).filter(|q| !q.is_empty())),
        expression: req.expression,
        timezone: req.timezone,
        payload: req.payload.map(|p| p.map(payload)),
        missed: missed(req.missed)?,
    };
    Ok(Json(info(cp.update_schedule(&by, &name, changes).await?)))
}

async fn pause(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleInfo>> {
    Ok(Json(info(
        cp.set_schedule_enabled(&by, &name, false).await?,
    )))
}

async fn resume(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleInfo>> {
    Ok(Json(info(cp.set_schedule_enabled(&by, &name, true).await?)))
}

async fn delete(
    State(cp): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    cp.delete_schedule(&by, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
