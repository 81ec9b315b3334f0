//! `skyscale function metrics`.

use super::connect;
use crate::cli::{Global, MetricsArgs, OutputFormat};
use crate::output;

pub(super) fn function_metrics(global: &Global, args: &MetricsArgs) -> anyhow::Result<()> {
    let m = connect(global, true)?.function_metrics(&args.name, args.since.as_deref())?;
    match global.output {
        OutputFormat::Json => output::json(&m),
        OutputFormat::Text => Ok(output::stdout(output::metrics_summary(&m).as_bytes())?),
    }
}
