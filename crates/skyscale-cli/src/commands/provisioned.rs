//! `skyscale function provisioned …`: provisioned concurrency of a version or alias.

use skyscale_types::api::ProvisionedInfo;

use crate::cli::{Global, OutputFormat, ProvisionedCommand};
use crate::output;

use super::connect;

pub fn run(global: &Global, cmd: &ProvisionedCommand) -> anyhow::Result<()> {
    let client = connect(global, true)?;
    match cmd {
        ProvisionedCommand::Put(a) => {
            let c = client.put_provisioned(&a.target.name, &a.target.qualifier, a.count)?;
            print(global, &c)
        }
        ProvisionedCommand::Get(a) => {
            let c = client.get_provisioned(&a.name, &a.qualifier)?;
            print(global, &c)
        }
        ProvisionedCommand::List(a) => {
            let list = client.list_provisioned(&a.name)?;
            match global.output {
                OutputFormat::Json => output::json(&list),
                OutputFormat::Text => {
                    let mut out = format!(
                        "{:<16} {:>9} {:>9} {:<11} {:>7}  {}\n",
                        "QUALIFIER", "REQUESTED", "READY", "STATUS", "VERSION", "REASON"
                    );
                    for c in &list.configs {
                        out.push_str(&format!(
                            "{:<16} {:>9} {:>9} {:<11} {:>7}  {}\n",
                            c.qualifier,
                            c.requested,
                            c.available,
                            c.status.as_str(),
                            c.version.map_or("-".to_owned(), |v| v.to_string()),
                            c.status_reason.as_deref().unwrap_or("")
                        ));
                    }
                    Ok(output::stdout(out.as_bytes())?)
                }
            }
        }
        ProvisionedCommand::Delete(a) => {
            client.delete_provisioned(&a.name, &a.qualifier)?;
            match global.output {
                // The API answers 204 with no body; JSON mode prints nothing.
                OutputFormat::Json => Ok(()),
                OutputFormat::Text => Ok(output::line(&format!(
                    "deleted the provisioned concurrency of {}:{}",
                    a.name, a.qualifier
                ))?),
            }
        }
    }
}

fn print(global: &Global, c: &ProvisionedInfo) -> anyhow::Result<()> {
    match global.output {
        OutputFormat::Json => output::json(c),
        OutputFormat::Text => {
            let mut out = format!(
                "{}:{}  {} ({} of {} ready)\n",
                c.function,
                c.qualifier,
                c.status.as_str(),
                c.available,
                c.requested
            );
            if let Some(v) = c.version {
                out.push_str(&format!("version:       {v}\n"));
            }
            if let Some(r) = &c.status_reason {
                out.push_str(&format!("reason:        {r}\n"));
            }
            out.push_str(&format!("last modified: {}\n", c.last_modified));
            Ok(output::stdout(out.as_bytes())?)
        }
    }
}
