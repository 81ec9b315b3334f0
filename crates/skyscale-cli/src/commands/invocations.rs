//! `skyscale function invocations`, `function invocation` and `function logs`.

use skyscale_client::{InvocationsQuery, LogEvent, LogsQuery};

use super::connect;
use crate::cli::{Global, InvocationArgs, InvocationsArgs, LogsArgs, OutputFormat};
use crate::output;

pub(super) fn invocations(global: &Global, args: &InvocationsArgs) -> anyhow::Result<()> {
    let q = InvocationsQuery {
        status: args.status.map(|s| s.as_str()),
        since: args.since.as_deref(),
        limit: args.limit,
    };
    let list = connect(global, true)?.invocations(&args.name, &q)?;
    match global.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Text => Ok(output::stdout(
            output::invocation_table(&list.invocations).as_bytes(),
        )?),
    }
}

pub(super) fn invocation(global: &Global, args: &InvocationArgs) -> anyhow::Result<()> {
    let record = connect(global, true)?.invocation(&args.id)?;
    match global.output {
        OutputFormat::Json => output::json(&record),
        OutputFormat::Text => Ok(output::stdout(
            output::invocation_details(&record).as_bytes(),
        )?),
    }
}

pub(super) fn logs(global: &Global, args: &LogsArgs) -> anyhow::Result<()> {
    let client = connect(global, true)?;
    let q = LogsQuery {
        since: args.since.as_deref(),
        request_id: args.request_id.as_deref(),
        limit: args.limit,
    };
    if !args.follow {
        let list = client.logs(&args.name, &q)?;
        return match global.output {
            OutputFormat::Json => output::json(&list),
            OutputFormat::Text => {
                let text: String = list.entries.iter().map(|e| e.text.as_str()).collect();
                Ok(output::stdout(text.as_bytes())?)
            }
        };
    }
    // Each entry is printed (and flushed) as it arrives; a write that fails (the reader
    // went away) ends the stream and is reported like any other.
    let mut failed = None;
    let mut ended = None;
    client.follow_logs(&args.name, &q, |event| {
        let written = match (event, global.output) {
            (LogEvent::Entry(e), OutputFormat::Text) => output::stdout(e.text.as_bytes()),
            (LogEvent::Entry(e), OutputFormat::Json) => serde_json::to_string(&e)
                .map_err(std::io::Error::other)
                .and_then(|line| output::line(&line)),
            (LogEvent::Skipped(n), _) => {
                output::warning(&format!(
                    "{n} log entries were skipped: this client fell behind the stream"
                ));
                Ok(())
            }
            (LogEvent::Ended(why), _) => {
                ended = Some(why.message);
                Ok(())
            }
        };
        match written {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => {
            match ended {
                Some(why) => {
                    output::warning(&format!("the control plane ended the log stream: {why}"))
                }
                None if args.request_id.is_none() => {
                    output::warning("the control plane ended the log stream (it is stopping)")
                }
                None => {}
            }
            Ok(())
        }
    }
}
