//! `skyscale layer publish|list|versions|get|delete`.

use base64::Engine as _;
use skyscale_client::package;
use skyscale_types::api::{LayerVersionInfo, PublishLayer};

use super::connect;
use crate::cli::{Global, LayerCommand, OutputFormat};
use crate::output;

fn show(global: &Global, headline: Option<&str>, v: &LayerVersionInfo) -> anyhow::Result<()> {
    match global.output {
        OutputFormat::Json => output::json(v),
        OutputFormat::Text => {
            let mut text = headline.map(|h| format!("{h}\n")).unwrap_or_default();
            text.push_str(&output::layer_details(v));
            Ok(output::stdout(text.as_bytes())?)
        }
    }
}

pub(super) fn run(global: &Global, command: &LayerCommand) -> anyhow::Result<()> {
    let client = connect(global, true)?;
    match command {
        LayerCommand::Publish(a) => {
            let zip = package::zip_path(&a.path)?;
            let v = client.publish_layer(
                &a.name,
                &PublishLayer {
                    zip_base64: base64::engine::general_purpose::STANDARD.encode(zip),
                    description: a.description.clone(),
                    license: a.license.clone(),
                    compatible_runtimes: a.compatible_runtimes.clone(),
                },
            )?;
            let headline = format!("published version {} of layer {}", v.version, v.layer);
            show(global, Some(&headline), &v)
        }
        LayerCommand::List => {
            let list = client.list_layers()?;
            match global.output {
                OutputFormat::Json => output::json(&list),
                OutputFormat::Text => Ok(output::stdout(
                    output::layer_table(&list.layers).as_bytes(),
                )?),
            }
        }
        LayerCommand::Versions(a) => {
            let list = client.list_layer_versions(&a.name)?;
            match global.output {
                OutputFormat::Json => output::json(&list),
                OutputFormat::Text => Ok(output::stdout(
                    output::layer_table(&list.layers).as_bytes(),
                )?),
            }
        }
        LayerCommand::Get(a) => {
            let v = client.get_layer_version(&a.name, a.version)?;
            show(global, None, &v)
        }
        LayerCommand::Delete(a) => {
            client.delete_layer_version(&a.name, a.version)?;
            match global.output {
                OutputFormat::Json => Ok(()),
                OutputFormat::Text => Ok(output::line(&format!(
                    "deleted version {} of layer {} (functions that use it keep it)",
                    a.version, a.name
                ))?),
            }
        }
    }
}
