//! `skyscale key create|list|revoke` and `skyscale audit`.

use skyscale_types::access::CreateKey;

use super::connect;
use crate::cli::{AuditArgs, Global, KeyCreateArgs, KeyIdArg, OutputFormat};
use crate::output;

pub(super) fn key_create(global: &Global, args: &KeyCreateArgs) -> anyhow::Result<()> {
    let created = connect(global, true)?.create_key(&CreateKey {
        role: args.role.as_str().to_owned(),
        functions: args.functions.clone(),
        description: args.description.clone(),
    })?;
    match global.output {
        OutputFormat::Json => output::json(&created)?,
        OutputFormat::Text => output::stdout(output::created_key(&created).as_bytes())?,
    }
    output::warning(output::KEY_SHOWN_ONCE);
    Ok(())
}

pub(super) fn key_list(global: &Global) -> anyhow::Result<()> {
    let list = connect(global, true)?.list_keys()?;
    match global.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Text => Ok(output::stdout(output::key_table(&list.keys).as_bytes())?),
    }
}

pub(super) fn key_revoke(global: &Global, args: &KeyIdArg) -> anyhow::Result<()> {
    connect(global, true)?.revoke_key(&args.id)?;
    match global.output {
        OutputFormat::Json => output::json(&serde_json::json!({ "revoked": args.id })),
        OutputFormat::Text => Ok(output::line(&format!("revoked key {}", args.id))?),
    }
}

pub(super) fn audit(global: &Global, args: &AuditArgs) -> anyhow::Result<()> {
    let log = connect(global, true)?.audit(args.limit, args.since.as_deref())?;
    match global.output {
        OutputFormat::Json => output::json(&log),
        OutputFormat::Text => Ok(output::stdout(
            output::audit_table(&log.entries).as_bytes(),
        )?),
    }
}
