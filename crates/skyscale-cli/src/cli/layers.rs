//! The arguments of `skyscale layer …`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum LayerCommand {
    /// Publish a new version of a layer (created with its first) from a directory or zip;
    /// functions add it with `--layer <ARN>`, merged at /opt in their sandboxes.
    Publish(LayerPublishArgs),
    /// List the layers, with the newest version of each.
    List,
    /// List a layer's versions, newest first.
    Versions(LayerNameArg),
    /// Show one version of a layer.
    Get(LayerVersionArg),
    /// Delete one version of a layer (functions that use it keep working).
    Delete(LayerVersionArg),
}

#[derive(Debug, Args)]
pub struct LayerPublishArgs {
    /// Layer name: 1-140 letters, digits, '-' and '_'.
    #[arg(long)]
    pub name: String,
    /// Contents: a directory (zipped) or a .zip file; Python packages go in `python/`.
    #[arg(long, value_name = "DIR|ZIP")]
    pub path: PathBuf,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// License (e.g. an SPDX identifier or a URL).
    #[arg(long)]
    pub license: Option<String>,
    /// A runtime the layer is for (repeat for several); without any, it suits every runtime.
    #[arg(long = "compatible-runtime", value_name = "RUNTIME")]
    pub compatible_runtimes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LayerNameArg {
    /// Layer name.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LayerVersionArg {
    /// Layer name.
    #[arg(long)]
    pub name: String,
    /// Version number.
    #[arg(long)]
    pub version: u64,
}
