//! The rules a function's values must follow, checked before anything is written.

use std::collections::BTreeMap;

use skyscale_store::MAX_TAGS;
use skyscale_store::{CodeRef, CodeStore};
use skyscale_types::{validate_env_name, FunctionName, Runtime, ValidationError};

use crate::runtimes::PROVIDED_BOOTSTRAP;
use crate::CoreError;

/// Lambda's `EphemeralStorage` range for `/tmp`, MiB.
pub(crate) const EPHEMERAL_MB: std::ops::RangeInclusive<u32> = 512..=10_240;

/// Lambda's limit on the total size of a function's environment variables.
pub(super) const MAX_ENV_BYTES: usize = 4096;

pub(super) const MAX_DESCRIPTION: usize = 256;

/// Upper bound for a reserved concurrency (the host cap applies on top).
pub(super) const MAX_RESERVED_CONCURRENCY: u32 = 10_000;

pub(crate) fn parse_name(name: &str) -> Result<FunctionName, CoreError> {
    Ok(FunctionName::parse(name)?)
}

pub(super) fn validate_env(env: &BTreeMap<String, String>) -> Result<(), CoreError> {
    let mut total = 0;
    for (k, v) in env {
        validate_env_name(k)?;
        total += k.len() + v.len();
    }
    if total > MAX_ENV_BYTES {
        return Err(CoreError::InvalidParameter(format!(
            "environment variables take {total} bytes: the limit is {MAX_ENV_BYTES}"
        )));
    }
    Ok(())
}

/// A `provided` function's package must have an executable `bootstrap` at its root: it is
/// the runtime process. Checked in the unpacked package, which keeps the zip's unix modes.
pub(super) fn check_bootstrap(
    code_store: &CodeStore,
    runtime: &Runtime,
    code: Option<&CodeRef>,
) -> Result<(), CoreError> {
    use std::os::unix::fs::PermissionsExt;
    let Some(code) = code.filter(|_| runtime.is_provided()) else {
        return Ok(());
    };
    let path = code_store.dir(&code.sha256).join(PROVIDED_BOOTSTRAP);
    let problem = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(()),
        Ok(m) if m.is_file() => "is not executable (set its mode to 0755 in the zip)",
        Ok(_) => "is not a regular file",
        Err(_) => "is missing",
    };
    Err(CoreError::InvalidParameter(format!(
        "runtime {runtime} runs the package's executable '{PROVIDED_BOOTSTRAP}' file, \
         but '{PROVIDED_BOOTSTRAP}' at the root of the code package {problem}"
    )))
}

pub(super) fn validate_description(d: &str) -> Result<(), CoreError> {
    let n = d.chars().count();
    if n > MAX_DESCRIPTION {
        return Err(ValidationError::Description(n).into());
    }
    Ok(())
}

pub(crate) fn parse_ephemeral(mb: i64) -> Result<u32, CoreError> {
    u32::try_from(mb)
        .ok()
        .filter(|mb| EPHEMERAL_MB.contains(mb))
        .ok_or_else(|| {
            CoreError::InvalidParameter(format!(
                "invalid ephemeral storage {mb} MB: must be between {} and {} MB",
                EPHEMERAL_MB.start(),
                EPHEMERAL_MB.end()
            ))
        })
}

/// Lambda's tag rules: keys of 1–128 characters not starting with `aws:`, values of at
/// most 256.
pub(super) fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), CoreError> {
    if tags.len() > MAX_TAGS {
        return Err(CoreError::InvalidParameter(format!(
            "{} tags given: the limit is {MAX_TAGS}",
            tags.len()
        )));
    }
    for (k, v) in tags {
        validate_tag_key(k)?;
        if v.chars().count() > 256 {
            return Err(CoreError::InvalidParameter(format!(
                "the value of tag {k:?} is longer than 256 characters"
            )));
        }
    }
    Ok(())
}

pub(super) fn validate_tag_key(k: &str) -> Result<(), CoreError> {
    let n = k.chars().count();
    if n == 0 || n > 128 || k.to_ascii_lowercase().starts_with("aws:") {
        return Err(CoreError::InvalidParameter(format!(
            "invalid tag key {k:?}: must be 1 to 128 characters and not start with \"aws:\""
        )));
    }
    Ok(())
}

/// What a qualifier names.
pub(super) enum Qualifier<'a> {
    Latest,
    Version(u64),
    Alias(&'a str),
}

pub(super) fn parse_qualifier<'a>(
    name: &str,
    qualifier: Option<&'a str>,
) -> Result<Qualifier<'a>, CoreError> {
    match qualifier {
        None | Some("$LATEST") => Ok(Qualifier::Latest),
        Some(q) if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) => q
            .parse::<u64>()
            .map(Qualifier::Version)
            .map_err(|_| CoreError::NotFound(format!("function {name}:{q} not found"))),
        Some(q) if crate::aliases::is_alias_name(q) => Ok(Qualifier::Alias(q)),
        Some(q) => Err(CoreError::NotFound(format!(
            "function {name}:{q} not found"
        ))),
    }
}
