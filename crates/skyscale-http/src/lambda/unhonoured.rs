//! Function settings of the Lambda API that Skyscale does not implement. Each is accepted
//! only at the value that means "off" (an empty list, `PassThrough` tracing, an empty VPC),
//! which is what Skyscale does anyway; any other value is refused by name with
//! `InvalidParameterValueException`, never accepted and dropped. A member this build does not
//! know at all (a newer API) is refused the same way.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::error::LambdaError;

/// The members of CreateFunction and UpdateFunctionConfiguration that Skyscale does not
/// implement (botocore's model), kept as JSON to tell "off" from "on".
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Unhonoured {
    vpc_config: Option<Value>,
    dead_letter_config: Option<Value>,
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<Value>,
    tracing_config: Option<Value>,
    file_system_configs: Option<Value>,
    code_signing_config_arn: Option<Value>,
    image_config: Option<Value>,
    logging_config: Option<Value>,
    tenancy_config: Option<Value>,
    capacity_provider_config: Option<Value>,
    durable_config: Option<Value>,
    runtime_config: Option<Value>,
    accelerator_config: Option<Value>,
    publish_to: Option<Value>,
    /// Members not in this build's model at all.
    #[serde(flatten)]
    unknown: BTreeMap<String, Value>,
}

/// Empty: absent, null, "", [], {} or an object whose members are all empty.
fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(empty),
        Value::Bool(b) => !b,
        Value::Number(_) => false,
    }
}

/// `v` is empty except that `member` may be one of `off` (its "off" spelling).
fn off_or_empty(v: &Value, member: &str, off: &[&str]) -> bool {
    match v {
        Value::Object(o) => o.iter().all(|(k, x)| {
            if k == member {
                x.as_str().is_some_and(|s| off.contains(&s)) || empty(x)
            } else {
                empty(x)
            }
        }),
        other => empty(other),
    }
}

impl Unhonoured {
    /// The first setting that asks for something Skyscale does not do, as the error to give.
    pub fn check(&self) -> Result<(), LambdaError> {
        let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !empty(v));
        let refusals: [(&str, bool, &str); 14] = [
            ("VpcConfig", set(&self.vpc_config), "functions run without a VPC; give one outbound network through /v1 or the CLI (`network`)"),
            ("DeadLetterConfig", set(&self.dead_letter_config), "there are no dead-letter queues"),
            ("KMSKeyArn", set(&self.kms_key_arn), "environment variables are not encrypted with a customer key"),
            (
                "TracingConfig",
                self.tracing_config
                    .as_ref()
                    .is_some_and(|v| !off_or_empty(v, "Mode", &["PassThrough"])),
                "there is no X-Ray tracing (Mode PassThrough is accepted)",
            ),
            ("FileSystemConfigs", set(&self.file_system_configs), "there are no file systems to mount"),
            ("CodeSigningConfigArn", set(&self.code_signing_config_arn), "there is no code signing"),
            ("ImageConfig", set(&self.image_config), "container images are not supported"),
            (
                "LoggingConfig",
                self.logging_config
                    .as_ref()
                    .is_some_and(|v| !off_or_empty(v, "LogFormat", &["Text"])),
                "logs are stored by Skyscale in text (LogFormat Text is accepted)",
            ),
            ("TenancyConfig", set(&self.tenancy_config), "there is no tenant isolation mode"),
            ("CapacityProviderConfig", set(&self.capacity_provider_config), "there are no capacity providers"),
            ("DurableConfig", set(&self.durable_config), "there are no durable functions"),
            ("RuntimeConfig", set(&self.runtime_config), "runtimes are not configurable"),
            ("AcceleratorConfig", set(&self.accelerator_config), "there are no accelerators"),
            ("PublishTo", set(&self.publish_to), "there are no capacity providers"),
        ];
        if let Some((name, _, why)) = refusals.iter().find(|(_, refused, _)| *refused) {
            return Err(LambdaError::invalid(format!(
                "{name} is not supported by Skyscale: {why}"
            )));
        }
        if let Some(name) = self.unknown.keys().next() {
            return Err(LambdaError::invalid(format!(
                "{name} is not a setting Skyscale knows: it is refused rather than ignored"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Result<(), String> {
        let u: Unhonoured = serde_json::from_value(v).expect("parses");
        u.check().map_err(|e| e.error.to_string())
    }

    #[test]
    fn off_values_pass_and_others_are_refused_by_name() {
        assert!(check(serde_json::json!({})).is_ok());
        assert!(check(serde_json::json!({
            "TracingConfig": {"Mode": "PassThrough"},
            "VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []},
            "DeadLetterConfig": {}, "KMSKeyArn": "",
            "LoggingConfig": {"LogFormat": "Text"}
        }))
        .is_ok());
        for (member, value) in [
            ("TracingConfig", serde_json::json!({"Mode": "Active"})),
            (
                "DeadLetterConfig",
                serde_json::json!({"TargetArn": "arn:aws:sqs:x"}),
            ),
            ("VpcConfig", serde_json::json!({"SubnetIds": ["subnet-1"]})),
            ("LoggingConfig", serde_json::json!({"LogFormat": "JSON"})),
            ("SomethingNew", serde_json::json!(1)),
        ] {
            let err = check(serde_json::json!({ member: value })).expect_err(member);
            assert!(err.starts_with(member), "{member}: {err}");
        }
    }
}
