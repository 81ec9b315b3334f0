//! The Lambda API's JSON shapes (lambda-compatibility.md §3, §4) and the conversions from the core's
//! `FunctionInfo`. A function setting Skyscale does not implement is refused by name
//! (`unhonoured.rs`) unless it asks for nothing.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use skyscale_core::{
    AccountSettings, AliasRecord, ControlPlane, FunctionRecord, Settings, UrlConfig,
};
use skyscale_types::version_label;

pub(crate) use super::unhonoured::Unhonoured;

/// A function, named as the Lambda API allows: `name`, `name:qualifier`,
/// `<account>:function:name[:qualifier]` or the full ARN.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub name: String,
    /// The unqualified ARN (for messages and responses).
    pub arn: String,
    /// A version or alias; `None` for `$LATEST`.
    pub qualifier: Option<String>,
}

impl Target {
    /// The ARN as addressed: qualified when a qualifier was given.
    pub fn qualified_arn(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{}:{q}", self.arn),
            None => self.arn.clone(),
        }
    }
}

/// Splits a FunctionName into the name and its qualifier (from the name or `Qualifier`);
/// `$LATEST` is no qualifier. A malformed name or two different qualifiers is `None`.
pub(crate) fn parse_target(
    settings: &Settings,
    raw: &str,
    qualifier: Option<&str>,
) -> Option<Target> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (name, from_name) = match parts.as_slice() {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        [_, "function", name] => (*name, None),
        [_, "function", name, q] => (*name, Some(*q)),
        ["arn", _, "lambda", _, _, "function", name] => (*name, None),
        ["arn", _, "lambda", _, _, "function", name, q] => (*name, Some(*q)),
        _ => return None,
    };
    let arn = settings.function_arn(name);
    let qualifier = match (from_name, qualifier) {
        (Some(a), Some(b)) if a != b => return None,
        (a, b) => a.or(b),
    };
    Some(Target {
        name: name.to_owned(),
        arn,
        qualifier: qualifier.filter(|q| *q != "$LATEST").map(str::to_owned),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EnvironmentIn {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CodeIn {
    /// The zip, base64.
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    pub image_uri: Option<String>,
}

/// CreateFunction's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateFunctionIn {
    pub function_name: String,
    /// Required by botocore; Skyscale has no IAM and ignores it.
    #[serde(default)]
    pub role: Option<String>,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub code: CodeIn,
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub memory_size: Option<i64>,
    pub ephemeral_storage: Option<EphemeralStorageIn>,
    pub environment: Option<EnvironmentIn>,
    pub package_type: Option<String>,
    pub architectures: Option<Vec<String>>,
    pub tags: Option<BTreeMap<String, String>>,
    /// Layer version ARNs, in order.
    pub layers: Option<Vec<String>>,
    /// Publish a version of the new function.
    #[serde(default)]
    pub publish: bool,
    pub snap_start: Option<SnapStartIn>,
    #[serde(flatten)]
    pub unhonoured: Unhonoured,
}

/// TagResource's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TagsIn {
    pub tags: BTreeMap<String, String>,
}

/// `RoutingConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RoutingConfigIn {
    #[serde(default)]
    pub additional_version_weights: BTreeMap<String, f64>,
}

impl RoutingConfigIn {
    pub fn weights(&self) -> Vec<(String, f64)> {
        self.additional_version_weights
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// CreateAlias's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateAliasIn {
    pub name: String,
    pub function_version: String,
    pub description: Option<String>,
    pub routing_config: Option<RoutingConfigIn>,
}

/// UpdateAlias's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateAliasIn {
    pub function_version: Option<String>,
    pub description: Option<String>,
    pub routing_config: Option<RoutingConfigIn>,
    pub revision_id: Option<String>,
}

/// A UUID-shaped id for one revision of an alias.
pub(crate) fn alias_revision_id(a: &AliasRecord) -> String {
    uuid_shaped(&format!(
        "alias\n{}\n{}\n{}\n{}",
        a.function, a.name, a.created_at, a.revision
    ))
}

/// AliasConfiguration.
pub(crate) fn alias_configuration(settings: &Settings, a: &AliasRecord) -> serde_json::Value {
    let mut out = serde_json::json!({
        "AliasArn": format!("{}:{}", settings.function_arn(a.function.as_str()), a.name),
        "Name": a.name,
        "FunctionVersion": version_label(a.version),
        "Description": a.description,
        "RevisionId": alias_revision_id(a),
    });
    if let Some((v, w)) = a.routing {
        out["RoutingConfig"] =
            serde_json::json!({ "AdditionalVersionWeights": { v.to_string(): w } });
    }
    out
}

/// PublishVersion's body (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PublishVersionIn {
    pub code_sha256: Option<String>,
    pub description: Option<String>,
    pub revision_id: Option<String>,
    pub publish_to: Option<serde_json::Value>,
}

/// UpdateFunctionCode's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateCodeIn {
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    pub image_uri: Option<String>,
    #[serde(rename = "S3Key")]
    pub s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    pub s3_object_version: Option<String>,
    pub architectures: Option<Vec<String>>,
    /// Publish a version of the new code.
    #[serde(default)]
    pub publish: bool,
    #[serde(default)]
    pub dry_run: bool,
    pub revision_id: Option<String>,
    #[serde(rename = "SourceKMSKeyArn")]
    pub source_kms_key_arn: Option<String>,
    pub publish_to: Option<serde_json::Value>,
    pub s3_object_storage_mode: Option<serde_json::Value>,
}

impl UpdateCodeIn {
    /// UpdateFunctionCode's members that Skyscale does not implement, refused by name unless
    /// they ask for nothing.
    pub fn refuse_unhonoured(&self) -> Result<(), super::error::LambdaError> {
        let refused = |name: &str, why: &str| {
            Err(super::error::LambdaError::invalid(format!(
                "{name} is not supported by Skyscale: {why}"
            )))
        };
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        if set(&self.s3_key) || set(&self.s3_object_version) {
            return refused("S3Key", "send the zip in ZipFile");
        }
        if self.dry_run {
            return refused("DryRun", "the code is validated when it is deployed");
        }
        if set(&self.source_kms_key_arn) {
            return refused(
                "SourceKMSKeyArn",
                "code is not encrypted with a customer key",
            );
        }
        if self.publish_to.as_ref().is_some_and(|v| !v.is_null()) {
            return refused("PublishTo", "there are no capacity providers");
        }
        if self
            .s3_object_storage_mode
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return refused("S3ObjectStorageMode", "send the zip in ZipFile");
        }
        Ok(())
    }
}

/// UpdateFunctionConfiguration's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateConfigurationIn {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub memory_size: Option<i64>,
    pub environment: Option<EnvironmentIn>,
    pub ephemeral_storage: Option<EphemeralStorageIn>,
    /// Required by some tools; Skyscale has no IAM and ignores it, as on create.
    pub role: Option<String>,
    pub revision_id: Option<String>,
    /// Replaces the function's layers (version ARNs, in order; `[]` removes them all).
    pub layers: Option<Vec<String>>,
    pub snap_start: Option<SnapStartIn>,
    #[serde(flatten)]
    pub unhonoured: Unhonoured,
}

/// `SnapStart`: `ApplyOn` (`PublishedVersions` or `None`; absent means `None`), checked by
/// the core.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct SnapStartIn {
    pub apply_on: Option<String>,
}

impl SnapStartIn {
    pub fn apply_on(self) -> String {
        self.apply_on.unwrap_or_else(|| "None".to_owned())
    }
}

/// `EphemeralStorage`: the size of `/tmp`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EphemeralStorageIn {
    pub size: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConcurrencyIn {
    pub reserved_concurrent_executions: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Concurrency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_concurrent_executions: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EnvironmentOut {
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: String,
    pub runtime: String,
    pub role: String,
    pub handler: String,
    pub code_size: u64,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub last_modified: String,
    pub code_sha256: String,
    pub version: String,
    pub environment: EnvironmentOut,
    pub tracing_config: serde_json::Value,
    pub revision_id: String,
    pub state: &'static str,
    pub last_update_status: &'static str,
    pub package_type: &'static str,
    pub architectures: [&'static str; 1],
    pub ephemeral_storage: serde_json::Value,
    pub logging_config: serde_json::Value,
    pub snap_start: serde_json::Value,
    /// Omitted when the function has none, as Lambda does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerOut>,
}

/// A function's layer (`Layer`): its version ARN and its zip's size.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LayerOut {
    pub arn: String,
    pub code_size: u64,
}

/// `2024-01-01T12:34:56.789Z` (the store's format) → `2024-01-01T12:34:56.789+0000`.
pub(crate) fn lambda_time(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z') {
        Some(t) => format!("{t}+0000"),
        None => rfc3339.to_owned(),
    }
}

/// A UUID-shaped id that is stable for one revision of one function (and differs when
/// a function of the same name is created again).
pub(crate) fn revision_id(f: &FunctionRecord) -> String {
    uuid_shaped(&format!(
        "{}\n{}\n{}\n{:?}",
        f.name, f.created_at, f.revision, f.version
    ))
}

pub(crate) fn uuid_shaped(seed: &str) -> String {
    let d = Sha256::digest(seed);
    let h = hex::encode(&d[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The base64 of the zip's SHA-256, as Lambda reports it (the store keeps hex).
pub(crate) fn code_sha256_b64(hex_digest: Option<&str>) -> String {
    hex_digest
        .and_then(|h| hex::decode(h).ok())
        .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
        .unwrap_or_default()
}

/// `cp` says whether SnapStart is in use (`OptimizationStatus`).
pub(crate) fn configuration(cp: &ControlPlane, f: &FunctionRecord) -> FunctionConfiguration {
    let settings = cp.settings();
    let snap = cp.snap_start_status(f);
    FunctionConfiguration {
        function_name: f.name.to_string(),
        function_arn: match f.version {
            Some(n) => format!("{}:{n}", settings.function_arn(f.name.as_str())),
            None => settings.function_arn(f.name.as_str()),
        },
        runtime: f.runtime.to_string(),
        role: format!("arn:aws:iam::{}:role/skyscale", settings.account_id),
        handler: f.handler.as_str().to_owned(),
        code_size: f.code.as_ref().map_or(0, |c| c.size),
        description: f.description.clone(),
        timeout: f.timeout.get(),
        memory_size: f.memory.get(),
        last_modified: lambda_time(&f.updated_at),
        code_sha256: code_sha256_b64(f.code.as_ref().map(|c| c.sha256.as_str())),
        version: version_label(f.version),
        environment: EnvironmentOut {
            variables: f.environment.clone(),
        },
        tracing_config: serde_json::json!({ "Mode": "PassThrough" }),
        revision_id: revision_id(f),
        state: "Active",
        last_update_status: "Successful",
        package_type: "Zip",
        architectures: ["x86_64"],
        ephemeral_storage: serde_json::json!({ "Size": f.ephemeral_mb }),
        logging_config: serde_json::json!({
            "LogFormat": "Text",
            "LogGroup": format!("/aws/lambda/{}", f.name),
        }),
        snap_start: serde_json::json!({
            "ApplyOn": snap.apply_on.as_str(),
            "OptimizationStatus": snap.optimization.as_str(),
        }),
        layers: f
            .layers
            .iter()
            .map(|l| LayerOut {
                arn: settings.layer_version_arn(l.layer.as_str(), l.version),
                code_size: l.code.size,
            })
            .collect(),
    }
}

pub(crate) fn account_settings(a: &AccountSettings) -> serde_json::Value {
    serde_json::json!({
        "AccountLimit": {
            "TotalCodeSize": a.total_code_size_limit,
            "CodeSizeUnzipped": a.code_size_unzipped_limit,
            "CodeSizeZipped": a.code_size_zipped_limit,
            "ConcurrentExecutions": a.concurrent_executions,
            "UnreservedConcurrentExecutions": a.unreserved_concurrent_executions,
        },
        "AccountUsage": {
            "TotalCodeSize": a.total_code_size,
            "FunctionCount": a.function_count,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_in_every_form() {
        let s = Settings::default();
        let arn = s.function_arn("f");
        for raw in [
            "f",
            "f:$LATEST",
            "000000000000:function:f",
            "arn:aws:lambda:us-east-1:000000000000:function:f",
            "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
        ] {
            let t = parse_target(&s, raw, None).unwrap();
            assert_eq!((t.name.as_str(), t.arn.as_str()), ("f", arn.as_str()));
            assert_eq!(t.qualifier, None);
        }
        let t = parse_target(&s, "f", Some("1")).unwrap();
        assert_eq!(t.qualifier.as_deref(), Some("1"));
        assert_eq!(t.qualified_arn(), format!("{arn}:1"));
        assert_eq!(
            parse_target(&s, &format!("{arn}:7"), None)
                .unwrap()
                .qualifier
                .as_deref(),
            Some("7")
        );
        assert!(parse_target(&s, "f:1", Some("2")).is_none());
        assert!(parse_target(&s, "a:b:c:d:e", None).is_none());
    }

    #[test]
    fn formats() {
        assert_eq!(
            lambda_time("2024-01-01T12:34:56.789Z"),
            "2024-01-01T12:34:56.789+0000"
        );
        assert_eq!(
            code_sha256_b64(Some(&"00".repeat(32))),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
    }
}

/// A function URL's `Cors` as sent; members left out are empty.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CorsIn {
    pub allow_credentials: Option<bool>,
    pub allow_headers: Option<Vec<String>>,
    pub allow_methods: Option<Vec<String>>,
    pub allow_origins: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub max_age: Option<u32>,
}

impl CorsIn {
    /// The settings; `None` when every member is empty (no CORS).
    pub fn into_cors(self) -> Option<skyscale_types::Cors> {
        let cors = skyscale_types::Cors {
            allow_credentials: self.allow_credentials.unwrap_or(false),
            allow_headers: self.allow_headers.unwrap_or_default(),
            allow_methods: self.allow_methods.unwrap_or_default(),
            allow_origins: self.allow_origins.unwrap_or_default(),
            expose_headers: self.expose_headers.unwrap_or_default(),
            max_age: self.max_age,
        };
        (cors != skyscale_types::Cors::default()).then_some(cors)
    }
}

/// CreateFunctionUrlConfig's and UpdateFunctionUrlConfig's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UrlConfigIn {
    pub auth_type: Option<String>,
    pub cors: Option<CorsIn>,
    pub invoke_mode: Option<String>,
}

/// FunctionUrlConfig; `url` is the full URL as the caller reaches this server.
pub(crate) fn url_configuration(c: &UrlConfig, url: String) -> serde_json::Value {
    let mut out = serde_json::json!({
        "FunctionUrl": url,
        "FunctionArn": c.function_arn,
        "AuthType": c.auth_type.as_str(),
        "CreationTime": c.created_at,
        "LastModifiedTime": c.updated_at,
        "InvokeMode": c.invoke_mode,
    });
    if let Some(cors) = &c.cors {
        let mut v = serde_json::json!({
            "AllowCredentials": cors.allow_credentials,
            "AllowHeaders": cors.allow_headers,
            "AllowMethods": cors.allow_methods,
            "AllowOrigins": cors.allow_origins,
            "ExposeHeaders": cors.expose_headers,
        });
        if let Some(age) = cors.max_age {
            v["MaxAge"] = age.into();
        }
        out["Cors"] = v;
    }
    out
}
