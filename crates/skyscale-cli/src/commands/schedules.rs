//! `skyscale schedule create|list|get|update|pause|resume|delete`.

use anyhow::Context;
use skyscale_types::schedules::{CreateSchedule, ScheduleInfo, UpdateSchedule};

use super::connect;
use crate::cli::{Global, OutputFormat, ScheduleCommand};
use crate::output;

fn json_payload(p: Option<&str>) -> anyhow::Result<Option<serde_json::Value>> {
    p.map(|p| serde_json::from_str(p).context("--payload is not valid JSON"))
        .transpose()
}

fn show(global: &Global, s: &ScheduleInfo) -> anyhow::Result<()> {
    match global.output {
        OutputFormat::Json => output::json(s),
        OutputFormat::Text => Ok(output::stdout(output::schedule_detail(s).as_bytes())?),
    }
}

pub(super) fn run(global: &Global, command: &ScheduleCommand) -> anyhow::Result<()> {
    let client = connect(global, true)?;
    match command {
        ScheduleCommand::Create(a) => {
            let s = client.create_schedule(&CreateSchedule {
                name: a.name.clone(),
                function: a.function.clone(),
                qualifier: a.qualifier.clone(),
                expression: a.expression.clone(),
                timezone: a.timezone.clone(),
                payload: json_payload(a.payload.as_deref())?,
                missed: a.missed.map(|m| m.as_str().to_owned()),
            })?;
            show(global, &s)
        }
        ScheduleCommand::List => {
            let list = client.list_schedules()?;
            match global.output {
                OutputFormat::Json => output::json(&list),
                OutputFormat::Text => Ok(output::stdout(
                    output::schedules_table(&list.schedules).as_bytes(),
                )?),
            }
        }
        ScheduleCommand::Get(a) => show(global, &client.get_schedule(&a.name)?),
        ScheduleCommand::Update(a) => {
            let payload = if a.default_payload {
                Some(None)
            } else {
                json_payload(a.payload.as_deref())?.map(Some)
            };
            let s = client.update_schedule(
                &a.name,
                &UpdateSchedule {
                    function: a.function.clone(),
                    qualifier: a.qualifier.clone(),
                    expression: a.expression.clone(),
                    timezone: a.timezone.clone(),
                    payload,
                    missed: a.missed.map(|m| m.as_str().to_owned()),
                },
            )?;
            show(global, &s)
        }
        ScheduleCommand::Pause(a) => show(global, &client.set_schedule_enabled(&a.name, false)?),
        ScheduleCommand::Resume(a) => show(global, &client.set_schedule_enabled(&a.name, true)?),
        ScheduleCommand::Delete(a) => {
            client.delete_schedule(&a.name)?;
            match global.output {
                OutputFormat::Json => output::json(&serde_json::json!({"deleted": a.name})),
                OutputFormat::Text => Ok(output::stdout(
                    format!("deleted schedule {}\n", a.name).as_bytes(),
                )?),
            }
        }
    }
}
