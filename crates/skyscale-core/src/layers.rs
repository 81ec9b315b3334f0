//! Layers, as Lambda has them: publish (a zip, validated like a function's code), read,
//! list and delete immutable layer versions; resolve the layer version ARNs a function
//! names into the store's [`FunctionLayer`]s, checked (they exist, at most five, no layer
//! twice, a compatible runtime when the layer names runtimes, and function and layers
//! together unzip to at most Lambda's 250 MB).
//!
//! Who may: publishing and deleting take the roles that may create functions, reading the
//! roles that may list functions (not invokers). Layers are account-wide: a developer key
//! limited to some functions may still publish and use them.

use std::sync::Arc;

use skyscale_store::{
    CodeRef, CodeStore, FunctionLayer, LayerVersionRecord, NewLayerVersion, Store,
};
use skyscale_types::{LayerName, Runtime, ValidationError};

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::code::{fetch_code, put_code};
use crate::{blocking, ControlPlane, CoreError, Principal};

pub use skyscale_store::MAX_FUNCTION_LAYERS;

/// Lambda's limit on a function's code and all its layers, unzipped.
pub const MAX_UNZIPPED_WITH_LAYERS: u64 = 262_144_000;
/// Lambda's limits on a layer version's fields.
const MAX_LICENSE: usize = 512;
const MAX_RUNTIMES: usize = 15;
const MAX_DESCRIPTION: usize = 256;

/// A new layer version, in the core's terms (each surface maps its wire format onto it).
#[derive(Debug, Clone, Default)]
pub struct LayerSpec {
    /// The layer's name or its ARN (`arn:aws:lambda:<region>:<account>:layer:<name>`).
    pub name: String,
    pub description: Option<String>,
    pub license: Option<String>,
    /// Runtime names; empty: any runtime.
    pub compatible_runtimes: Vec<String>,
    /// The package (a zip).
    pub zip: Vec<u8>,
}

impl ControlPlane {
    /// `arn:aws:lambda:<region>:<account>:layer:<name>`.
    pub fn layer_arn(&self, layer: &LayerName) -> String {
        let s = self.settings();
        format!("arn:aws:lambda:{}:{}:layer:{layer}", s.region, s.account_id)
    }

    /// `arn:aws:lambda:<region>:<account>:layer:<name>:<version>`.
    pub fn layer_version_arn(&self, layer: &LayerName, version: u64) -> String {
        format!("{}:{version}", self.layer_arn(layer))
    }

    /// A layer's name given as a name or as its ARN (of this account and region).
    pub fn parse_layer_name(&self, text: &str) -> Result<LayerName, CoreError> {
        let prefix = format!("{}:", self.layer_arn_prefix());
        match text.strip_prefix(&prefix) {
            Some(name) => Ok(LayerName::parse(name)?),
            None if text.starts_with("arn:") => Err(CoreError::InvalidParameter(format!(
                "layer ARN {text:?} is not a layer of this account: expected \
                 {prefix}<name>"
            ))),
            None => Ok(LayerName::parse(text)?),
        }
    }

    /// A layer version ARN's layer and version.
    pub fn parse_layer_version_arn(&self, arn: &str) -> Result<(LayerName, u64), CoreError> {
        parse_version_arn(&self.layer_arn_prefix(), arn)
    }

    fn layer_arn_prefix(&self) -> String {
        let s = self.settings();
        format!("arn:aws:lambda:{}:{}:layer", s.region, s.account_id)
    }

    /// What resolves a function's layer ARNs (on a blocking thread).
    pub(crate) fn layer_check(&self) -> LayerCheck {
        LayerCheck {
            store: self.store.clone(),
            code: self.code.clone(),
            prefix: self.layer_arn_prefix(),
        }
    }

    /// Publishes a new version of a layer (creating the layer with its first).
    pub async fn publish_layer_version(
        &self,
        by: &Principal,
        spec: LayerSpec,
    ) -> Result<LayerVersionRecord, CoreError> {
        let target = spec.name.clone();
        self.audited_with(
            by,
            AuditAction::LayerPublish,
            &target,
            self.publish_layer_version_inner(by, spec),
            |v| (v.layer.to_string(), format!("version {}", v.version)),
        )
        .await
    }

    async fn publish_layer_version_inner(
        &self,
        by: &Principal,
        spec: LayerSpec,
    ) -> Result<LayerVersionRecord, CoreError> {
        by.authorize(Action::ManageLayers, None)?;
        let layer = self.parse_layer_name(&spec.name)?;
        let description = spec.description.unwrap_or_default();
        let n = description.chars().count();
        if n > MAX_DESCRIPTION {
            return Err(ValidationError::Description(n).into());
        }
        if let Some(l) = &spec.license {
            if l.chars().count() > MAX_LICENSE {
                return Err(CoreError::InvalidParameter(format!(
                    "license is {} characters long: at most {MAX_LICENSE} are allowed",
                    l.chars().count()
                )));
            }
        }
        if spec.compatible_runtimes.len() > MAX_RUNTIMES {
            return Err(CoreError::InvalidParameter(format!(
                "{} compatible runtimes given: at most {MAX_RUNTIMES} are allowed",
                spec.compatible_runtimes.len()
            )));
        }
        let mut runtimes: Vec<Runtime> = Vec::new();
        for r in &spec.compatible_runtimes {
            let r = Runtime::parse(r)?;
            if !runtimes.contains(&r) {
                runtimes.push(r);
            }
        }
        let (store, code) = (self.store.clone(), self.code.clone());
        let zip = spec.zip;
        let published = blocking(move || {
            // Stored (and pinned) before the row that references it, like a function's.
            let stored = put_code(&store, &code, &zip)?;
            let unzipped_size = code.unzipped_size(&stored.code.sha256)?;
            Ok(store.publish_layer_version(&NewLayerVersion {
                layer,
                description,
                license: spec.license,
                compatible_runtimes: runtimes,
                code: stored.code.clone(),
                unzipped_size,
            })?)
        })
        .await;
        if published.is_err() {
            self.request_code_collection();
        }
        let v = published?;
        tracing::info!(layer = %v.layer, version = v.version, "layer version published");
        Ok(v)
    }

    /// One version of a layer (`name`: its name or ARN).
    pub async fn get_layer_version(
        &self,
        by: &Principal,
        name: &str,
        version: u64,
    ) -> Result<LayerVersionRecord, CoreError> {
        by.authorize(Action::ReadLayers, None)?;
        let layer = self.parse_layer_name(name)?;
        let store = self.store.clone();
        blocking(move || {
            store.get_layer_version(&layer, version)?.ok_or_else(|| {
                CoreError::NotFound(format!("version {version} of layer {layer} not found"))
            })
        })
        .await
    }

    /// One layer version by its ARN.
    pub async fn get_layer_version_by_arn(
        &self,
        by: &Principal,
        arn: &str,
    ) -> Result<LayerVersionRecord, CoreError> {
        by.authorize(Action::ReadLayers, None)?;
        let (layer, version) = self.parse_layer_version_arn(arn)?;
        self.get_layer_version(by, layer.as_str(), version).await
    }

    /// The newest version of each layer, by name; with `runtime`, the newest version of
    /// each layer that is compatible with it (Lambda's `CompatibleRuntime` filter).
    pub async fn list_layers(
        &self,
        by: &Principal,
        runtime: Option<&str>,
    ) -> Result<Vec<LayerVersionRecord>, CoreError> {
        by.authorize(Action::ReadLayers, None)?;
        let runtime = runtime.map(Runtime::parse).transpose()?;
        let store = self.store.clone();
        blocking(move || match runtime {
            None => Ok(store.list_layers()?),
            Some(r) => {
                let mut out: Vec<LayerVersionRecord> = Vec::new();
                for latest in store.list_layers()? {
                    // Newest first: the first compatible one is the newest.
                    if let Some(v) = store
                        .list_layer_versions(&latest.layer)?
                        .into_iter()
                        .find(|v| v.compatible_runtimes.contains(&r))
                    {
                        out.push(v);
                    }
                }
                Ok(out)
            }
        })
        .await
    }

    /// A layer's versions, newest first (optionally only those compatible with `runtime`).
    /// A layer without versions lists none (Lambda does not say it does not exist).
    pub async fn list_layer_versions(
        &self,
        by: &Principal,
        name: &str,
        runtime: Option<&str>,
    ) -> Result<Vec<LayerVersionRecord>, CoreError> {
        by.authorize(Action::ReadLayers, None)?;
        let layer = self.parse_layer_name(name)?;
        let runtime = runtime.map(Runtime::parse).transpose()?;
        let store = self.store.clone();
        let all = blocking(move || Ok(store.list_layer_versions(&layer)?)).await?;
        Ok(all
            .into_iter()
            .filter(|v| {
                runtime
                    .as_ref()
                    .is_none_or(|r| v.compatible_runtimes.contains(r))
            })
            .collect())
    }

    /// Deletes a layer version (deleting one that does not exist succeeds, as Lambda).
    /// Functions and versions that use it keep it: they still run with its contents.
    pub async fn delete_layer_version(
        &self,
        by: &Principal,
        name: &str,
        version: u64,
    ) -> Result<(), CoreError> {
        let target = format!("{name}:{version}");
        self.audited(
            by,
            AuditAction::LayerDelete,
            &target,
            self.delete_layer_version_inner(by, name, version),
        )
        .await
    }

    async fn delete_layer_version_inner(
        &self,
        by: &Principal,
        name: &str,
        version: u64,
    ) -> Result<(), CoreError> {
        by.authorize(Action::ManageLayers, None)?;
        let layer = self.parse_layer_name(name)?;
        let store = self.store.clone();
        let l = layer.clone();
        let deleted = blocking(move || Ok(store.delete_layer_version(&l, version)?)).await?;
        if deleted {
            self.request_code_collection();
            tracing::info!(layer = %layer, version, "layer version deleted");
        }
        Ok(())
    }
}

/// A layer version ARN's layer and version (`prefix`: this account's
/// `arn:aws:lambda:<region>:<account>:layer`).
fn parse_version_arn(prefix: &str, arn: &str) -> Result<(LayerName, u64), CoreError> {
    let bad = || {
        CoreError::InvalidParameter(format!(
            "invalid layer version ARN {arn:?}: expected {prefix}:<name>:<version>"
        ))
    };
    let rest = arn
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(bad)?;
    let (name, version) = rest.rsplit_once(':').ok_or_else(bad)?;
    let version: u64 = version.parse().ok().filter(|v| *v > 0).ok_or_else(bad)?;
    let name = LayerName::parse(name).map_err(|_| bad())?;
    Ok((name, version))
}

/// Resolves and checks a function's layers (see the module's documentation).
pub(crate) struct LayerCheck {
    store: Arc<Store>,
    code: CodeStore,
    prefix: String,
}

impl LayerCheck {
    /// Resolves the layer version ARNs a function names, in order, and checks them against
    /// the function's runtime and code (blocking). Every error names the ARN it is about.
    pub(crate) fn resolve(
        &self,
        arns: &[String],
        runtime: &Runtime,
        code: Option<&CodeRef>,
    ) -> Result<Vec<FunctionLayer>, CoreError> {
        if arns.len() > MAX_FUNCTION_LAYERS {
            return Err(CoreError::InvalidParameter(format!(
                "{} layers given: a function may use at most {MAX_FUNCTION_LAYERS}",
                arns.len()
            )));
        }
        let mut layers: Vec<FunctionLayer> = Vec::with_capacity(arns.len());
        for arn in arns {
            let (layer, version) = parse_version_arn(&self.prefix, arn)?;
            if layers.iter().any(|l| l.layer == layer) {
                return Err(CoreError::InvalidParameter(format!(
                    "layer {arn} is given twice (or another version of the same layer): a \
                     function may use one version of each layer"
                )));
            }
            let v = self
                .store
                .get_layer_version(&layer, version)?
                .ok_or_else(|| {
                    CoreError::InvalidParameter(format!("layer version {arn} does not exist"))
                })?;
            if !v.compatible_runtimes.is_empty() && !v.compatible_runtimes.contains(runtime) {
                let names: Vec<&str> = v.compatible_runtimes.iter().map(|r| r.as_str()).collect();
                return Err(CoreError::InvalidParameter(format!(
                    "layer version {arn} is not compatible with runtime {runtime}: it is for {}",
                    names.join(", ")
                )));
            }
            layers.push(FunctionLayer::from(&v));
        }
        self.check_size(&layers, code)?;
        Ok(layers)
    }

    /// Refuses code and layers that unzip to more than [`MAX_UNZIPPED_WITH_LAYERS`]
    /// together (blocking).
    pub(crate) fn check_size(
        &self,
        layers: &[FunctionLayer],
        code: Option<&CodeRef>,
    ) -> Result<(), CoreError> {
        if layers.is_empty() {
            return Ok(());
        }
        let mut total: u64 = layers.iter().map(|l| l.unzipped_size).sum();
        let mut code_size = 0;
        if let Some(code) = code {
            let _pin = fetch_code(&self.store, &self.code, &code.sha256)?.ok_or_else(|| {
                CoreError::internal(format!("code package {} is not stored", code.sha256))
            })?;
            code_size = self.code.unzipped_size(&code.sha256)?;
            total = total.saturating_add(code_size);
        }
        if total > MAX_UNZIPPED_WITH_LAYERS {
            let sizes: Vec<String> = layers
                .iter()
                .map(|l| {
                    format!(
                        "{}:{}:{} {} bytes",
                        self.prefix, l.layer, l.version, l.unzipped_size
                    )
                })
                .collect();
            return Err(CoreError::InvalidParameter(format!(
                "function code and layers unzip to {total} bytes: the limit is \
                 {MAX_UNZIPPED_WITH_LAYERS} bytes (code {code_size} bytes, layers {})",
                sizes.join(", ")
            )));
        }
        Ok(())
    }
}
