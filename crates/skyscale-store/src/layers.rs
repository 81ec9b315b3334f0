//! Layers: named, numbered, immutable code packages that functions add to their sandboxes
//! (`/opt`). A layer version's package is a code package like a function's (content
//! addressed, in the `CodeStore`; on a shared store also in `code_packages`).
//!
//! A layer's version numbers come from its `layers.last_version` counter, never reused (the
//! row stays when every version is deleted). A function (and each published version) keeps
//! its layers in order as a JSON array in its own row, each with the package's hash and
//! sizes: deleting a layer version does not change what a function that uses it runs, and
//! the package stays referenced ([`Store::referenced_code`]) while a layer version or a
//! function or version using it exists.

use serde::{Deserialize, Serialize};
use skyscale_types::{LayerName, Runtime};

use crate::code::CodeRef;
use crate::db::{Store, StoreError};
use crate::now_rfc3339;
use crate::sql::{args, Db, Row};

/// Most layers one function uses (Lambda's).
pub const MAX_FUNCTION_LAYERS: usize = 5;

/// One published version of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerVersionRecord {
    pub layer: LayerName,
    pub version: u64,
    pub description: String,
    pub license: Option<String>,
    /// Empty: any runtime.
    pub compatible_runtimes: Vec<Runtime>,
    pub code: CodeRef,
    /// The package's unpacked size, bytes.
    pub unzipped_size: u64,
    pub created_at: String,
}

/// Everything needed to publish a layer version (its number is the store's).
#[derive(Debug, Clone)]
pub struct NewLayerVersion {
    pub layer: LayerName,
    pub description: String,
    pub license: Option<String>,
    pub compatible_runtimes: Vec<Runtime>,
    pub code: CodeRef,
    pub unzipped_size: u64,
}

/// One layer of a function, as the function keeps it: which version, and its package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionLayer {
    pub layer: LayerName,
    pub version: u64,
    pub code: CodeRef,
    pub unzipped_size: u64,
}

impl From<&LayerVersionRecord> for FunctionLayer {
    fn from(v: &LayerVersionRecord) -> Self {
        Self {
            layer: v.layer.clone(),
            version: v.version,
            code: v.code.clone(),
            unzipped_size: v.unzipped_size,
        }
    }
}

/// [`FunctionLayer`] in a function row's `layers` column.
#[derive(Serialize, Deserialize)]
struct StoredLayer {
    layer: LayerName,
    version: u64,
    sha256: String,
    size: u64,
    unzipped_size: u64,
}

pub(crate) fn layers_to_json(layers: &[FunctionLayer]) -> Result<String, StoreError> {
    let stored: Vec<StoredLayer> = layers
        .iter()
        .map(|l| StoredLayer {
            layer: l.layer.clone(),
            version: l.version,
            sha256: l.code.sha256.clone(),
            size: l.code.size,
            unzipped_size: l.unzipped_size,
        })
        .collect();
    serde_json::to_string(&stored).map_err(|e| corrupt("functions", e))
}

pub(crate) fn layers_from_json(json: &str) -> Result<Vec<FunctionLayer>, StoreError> {
    let stored: Vec<StoredLayer> =
        serde_json::from_str(json).map_err(|e| corrupt("functions", e))?;
    Ok(stored
        .into_iter()
        .map(|s| FunctionLayer {
            layer: s.layer,
            version: s.version,
            code: CodeRef {
                sha256: s.sha256,
                size: s.size,
            },
            unzipped_size: s.unzipped_size,
        })
        .collect())
}

/// Checks, inside the transaction that stores them, that a function's layers are at most
/// [`MAX_FUNCTION_LAYERS`], name no layer twice, and that each version still exists with the
/// package given (on PostgreSQL the version rows stay locked until the commit, so a delete
/// cannot slip in between).
pub(crate) fn check_function_layers(
    db: &mut Db<'_>,
    layers: &[FunctionLayer],
) -> Result<(), StoreError> {
    if layers.len() > MAX_FUNCTION_LAYERS {
        return Err(StoreError::Limit(format!(
            "{} layers given: a function may use at most {MAX_FUNCTION_LAYERS}",
            layers.len()
        )));
    }
    for (i, l) in layers.iter().enumerate() {
        if layers[..i].iter().any(|o| o.layer == l.layer) {
            return Err(StoreError::Limit(format!(
                "layer {} is given more than once: a function may use one version of a layer",
                l.layer
            )));
        }
        let lock = db.dialect().for_update();
        let found = db
            .query_opt(
                &format!(
                    "SELECT code_sha256 FROM layer_versions WHERE layer = ?1 AND version = ?2{lock}"
                ),
                args![l.layer.as_str(), l.version],
            )?
            .map(|r| r.get::<String>(0))
            .transpose()?;
        match found {
            Some(sha) if sha == l.code.sha256 => {}
            Some(_) => {
                return Err(StoreError::Corrupt {
                    table: "layer_versions",
                    message: format!(
                        "version {} of layer {} has another package than the one given",
                        l.version, l.layer
                    ),
                })
            }
            None => {
                return Err(StoreError::NotFound(format!(
                    "version {} of layer {} not found",
                    l.version, l.layer
                )))
            }
        }
    }
    Ok(())
}

const LAYER_COLUMNS: &str = "layer, version, description, license, runtimes, code_sha256, \
     code_size, unzipped_size, created_at";

impl Store {
    /// Publishes a new version of a layer (creating the layer on its first), numbered after
    /// the highest the layer ever had.
    pub fn publish_layer_version(
        &self,
        v: &NewLayerVersion,
    ) -> Result<LayerVersionRecord, StoreError> {
        let runtimes: Vec<&str> = v.compatible_runtimes.iter().map(|r| r.as_str()).collect();
        let runtimes = serde_json::to_string(&runtimes).map_err(|e| corrupt("layers", e))?;
        let mut db = self.db();
        let mut tx = db.transaction()?;
        // The counter's row is written first: on PostgreSQL it stays locked until the
        // commit, so two publishes of one layer never take the same number.
        tx.execute(
            "INSERT INTO layers (name, last_version) VALUES (?1, 1) \
             ON CONFLICT (name) DO UPDATE SET last_version = layers.last_version + 1",
            args![v.layer.as_str()],
        )?;
        let n: i64 = tx
            .query_one(
                "SELECT last_version FROM layers WHERE name = ?1",
                args![v.layer.as_str()],
            )?
            .get(0)?;
        tx.execute(
            &format!(
                "INSERT INTO layer_versions ({LAYER_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            args![
                v.layer.as_str(),
                n,
                &v.description,
                v.license.as_deref(),
                &runtimes,
                &v.code.sha256,
                v.code.size,
                v.unzipped_size,
                &now_rfc3339(),
            ],
        )?;
        let out =
            get_layer_version(&mut tx, &v.layer, n as u64)?.ok_or_else(|| StoreError::Corrupt {
                table: "layer_versions",
                message: format!("version {n} of layer {} vanished after insert", v.layer),
            })?;
        tx.commit()?;
        Ok(out)
    }

    /// One version of a layer.
    pub fn get_layer_version(
        &self,
        layer: &LayerName,
        version: u64,
    ) -> Result<Option<LayerVersionRecord>, StoreError> {
        get_layer_version(&mut self.db(), layer, version)
    }

    /// Every version of a layer, newest first (Lambda's order).
    pub fn list_layer_versions(
        &self,
        layer: &LayerName,
    ) -> Result<Vec<LayerVersionRecord>, StoreError> {
        self.db().query_map(
            &format!(
                "SELECT {LAYER_COLUMNS} FROM layer_versions WHERE layer = ?1 \
                 ORDER BY version DESC"
            ),
            args![layer.as_str()],
            layer_from_row,
        )
    }

    /// The newest version of every layer that has one, by layer name.
    pub fn list_layers(&self) -> Result<Vec<LayerVersionRecord>, StoreError> {
        self.db().query_map(
            &format!(
                "SELECT {LAYER_COLUMNS} FROM layer_versions v WHERE version = \
                 (SELECT MAX(version) FROM layer_versions w WHERE w.layer = v.layer) \
                 ORDER BY layer"
            ),
            args![],
            layer_from_row,
        )
    }

    /// Deletes one version of a layer; returns whether it existed. Functions and versions
    /// that use it keep it (their rows hold its package), and its number is never given
    /// again.
    pub fn delete_layer_version(
        &self,
        layer: &LayerName,
        version: u64,
    ) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "DELETE FROM layer_versions WHERE layer = ?1 AND version = ?2",
            args![layer.as_str(), version],
        )?;
        Ok(changed > 0)
    }
}

fn get_layer_version(
    db: &mut Db<'_>,
    layer: &LayerName,
    version: u64,
) -> Result<Option<LayerVersionRecord>, StoreError> {
    db.query_opt(
        &format!("SELECT {LAYER_COLUMNS} FROM layer_versions WHERE layer = ?1 AND version = ?2"),
        args![layer.as_str(), version],
    )?
    .map(|r| layer_from_row(&r))
    .transpose()
}

fn layer_from_row(row: &Row) -> Result<LayerVersionRecord, StoreError> {
    let c = |e: skyscale_types::ValidationError| corrupt("layer_versions", e);
    let runtimes: Vec<String> =
        serde_json::from_str(&row.get::<String>(4)?).map_err(|e| corrupt("layer_versions", e))?;
    let size = |n: i64| u64::try_from(n).map_err(|e| corrupt("layer_versions", e));
    Ok(LayerVersionRecord {
        layer: LayerName::parse(&row.get::<String>(0)?).map_err(c)?,
        version: size(row.get(1)?)?,
        description: row.get(2)?,
        license: row.get(3)?,
        compatible_runtimes: runtimes
            .iter()
            .map(|r| Runtime::parse(r).map_err(c))
            .collect::<Result<_, _>>()?,
        code: CodeRef {
            sha256: row.get(5)?,
            size: size(row.get(6)?)?,
        },
        unzipped_size: size(row.get(7)?)?,
        created_at: row.get(8)?,
    })
}

fn corrupt(table: &'static str, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table,
        message: message.to_string(),
    }
}
