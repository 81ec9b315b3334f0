//! `skyscale function invoke --async`, `function events`, `function event`, `function
//! redrive`, `function event-config`.

use anyhow::{bail, Context};
use skyscale_types::events::EventConfigRequest;

use super::connect;
use crate::cli::{
    EventArgs, EventConfigCommand, EventConfigPutArgs, EventConfigTarget, EventsArgs, Global,
    OutputFormat, RedriveArgs,
};
use crate::output;

/// The asynchronous invoke: prints the event id once the event is committed.
pub(super) fn invoke_async(
    global: &Global,
    name: &str,
    qualifier: Option<&str>,
    idempotency_key: Option<&str>,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    let accepted =
        connect(global, true)?.invoke_async(name, qualifier, idempotency_key, payload)?;
    match global.output {
        OutputFormat::Json => output::json(&accepted),
        OutputFormat::Text => {
            let note = if accepted.duplicate {
                " (idempotency key seen before: nothing new queued)"
            } else {
                ""
            };
            Ok(output::stdout(
                format!("queued event {}{note}\n", accepted.event_id).as_bytes(),
            )?)
        }
    }
}

pub(super) fn events(global: &Global, args: &EventsArgs) -> anyhow::Result<()> {
    let list = connect(global, true)?.list_events(
        &args.name,
        args.status.map(|s| s.as_str()),
        args.limit,
    )?;
    match global.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Text => Ok(output::stdout(
            output::events_table(&list.events).as_bytes(),
        )?),
    }
}

pub(super) fn event(global: &Global, args: &EventArgs) -> anyhow::Result<()> {
    let e = connect(global, true)?.get_event(&args.id)?;
    match global.output {
        OutputFormat::Json => output::json(&e),
        OutputFormat::Text => Ok(output::stdout(output::event_detail(&e).as_bytes())?),
    }
}

pub(super) fn redrive(global: &Global, args: &RedriveArgs) -> anyhow::Result<()> {
    let r = connect(global, true)?.redrive(&args.name, args.id.as_deref())?;
    match global.output {
        OutputFormat::Json => output::json(&r),
        OutputFormat::Text => {
            let mut text = format!("redrove {} event(s)\n", r.redriven.len());
            for id in &r.redriven {
                text.push_str(id);
                text.push('\n');
            }
            Ok(output::stdout(text.as_bytes())?)
        }
    }
}

fn in_range(v: Option<i64>, flag: &str) -> anyhow::Result<Option<u32>> {
    v.map(|n| {
        u32::try_from(n)
            .with_context(|| format!("{flag} {n} is out of range: it cannot be negative"))
    })
    .transpose()
}

pub(super) fn event_config(global: &Global, cmd: &EventConfigCommand) -> anyhow::Result<()> {
    let client = connect(global, true)?;
    let shown = match cmd {
        EventConfigCommand::Get(EventConfigTarget { name, qualifier }) => {
            client.get_event_config(name, qualifier.as_deref())?
        }
        EventConfigCommand::Put(EventConfigPutArgs {
            target,
            max_retries,
            max_age,
            on_success,
            on_failure,
        }) => {
            let req = EventConfigRequest {
                maximum_retry_attempts: in_range(*max_retries, "--max-retries")?,
                maximum_event_age_seconds: in_range(*max_age, "--max-age")?,
                on_success: on_success.clone(),
                on_failure: on_failure.clone(),
            };
            client.put_event_config(&target.name, target.qualifier.as_deref(), &req)?
        }
        EventConfigCommand::Delete(EventConfigTarget { name, qualifier }) => {
            client.delete_event_config(name, qualifier.as_deref())?;
            if global.output == OutputFormat::Text {
                output::stdout(b"event config deleted\n")?;
            }
            return Ok(());
        }
    };
    match global.output {
        OutputFormat::Json => output::json(&shown),
        OutputFormat::Text => Ok(output::stdout(output::event_config(&shown).as_bytes())?),
    }
}

/// `--idempotency-key` only goes with `--async`.
pub(super) fn check_async_flags(is_async: bool, key: Option<&str>) -> anyhow::Result<()> {
    if key.is_some() && !is_async {
        bail!("--idempotency-key needs --async: only asynchronous invokes are deduplicated");
    }
    Ok(())
}
