//! Aliases: a name for `$LATEST` or a published version, optionally routing a share of the
//! invocations to one other published version (Lambda's `RoutingConfig.AdditionalVersionWeights`).

use std::sync::Arc;

use rand::Rng;
use skyscale_store::{AliasRecord, AliasUpdate};
use skyscale_types::FunctionName;

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};

const MAX_ALIAS_NAME: usize = 128;
const MAX_DESCRIPTION: usize = 256;
const LATEST: &str = "$LATEST";

/// Lambda's alias names: `[a-zA-Z0-9-_]+`, 1–128 characters, not all digits.
pub(crate) fn is_alias_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ALIAS_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.bytes().all(|b| b.is_ascii_digit())
}

fn validate_name(name: &str) -> Result<(), CoreError> {
    if is_alias_name(name) {
        Ok(())
    } else {
        Err(CoreError::InvalidParameter(format!(
            "invalid alias name {name:?}: 1 to {MAX_ALIAS_NAME} of [a-zA-Z0-9-_], not only digits"
        )))
    }
}

fn validate_description(d: &str) -> Result<(), CoreError> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(CoreError::InvalidParameter(format!(
            "the description is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(())
}

/// A published version's number.
fn parse_version(v: &str) -> Result<u64, CoreError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            CoreError::InvalidParameter(format!(
                "invalid function version {v:?}: expected $LATEST or a published version number"
            ))
        })
}

/// What an alias points at: `$LATEST` (`None`) or a published version.
fn parse_target(v: &str) -> Result<Option<u64>, CoreError> {
    if v == LATEST {
        Ok(None)
    } else {
        parse_version(v).map(Some)
    }
}

/// At most one additional version with a weight in [0, 1]; it must be a published version
/// (routing between `$LATEST` and a version would make the split change with every deploy).
fn parse_routing(weights: &[(String, f64)]) -> Result<Option<(u64, f64)>, CoreError> {
    match weights {
        [] => Ok(None),
        [(v, w)] => {
            let v = parse_version(v)?;
            if !(0.0..=1.0).contains(w) {
                return Err(CoreError::InvalidParameter(format!(
                    "invalid weight {w} for version {v}: must be between 0.0 and 1.0"
                )));
            }
            Ok(Some((v, *w)))
        }
        _ => Err(CoreError::InvalidParameter(
            "an alias routes to at most one additional version".into(),
        )),
    }
}

/// What an alias points at, for the audit log: `version 2` or `version 2, 10% to 3`.
fn alias_detail(a: &AliasRecord) -> String {
    match a.routing {
        Some((v, w)) => format!(
            "version {}, {}% to {v}",
            skyscale_types::version_label(a.version),
            w * 100.0
        ),
        None => format!("version {}", skyscale_types::version_label(a.version)),
    }
}

/// Which version an alias runs this time (`None`: `$LATEST`).
pub(crate) fn pick(a: &AliasRecord) -> Option<u64> {
    match a.routing {
        Some((extra, w)) if rand::rng().random::<f64>() < w => Some(extra),
        _ => a.version,
    }
}

impl ControlPlane {
    /// Checks that the versions exist and the routing names a second published version.
    async fn check_alias_versions(
        &self,
        function: &FunctionName,
        version: Option<u64>,
        routing: Option<(u64, f64)>,
    ) -> Result<(), CoreError> {
        if let Some((extra, _)) = routing {
            match version {
                None => {
                    return Err(CoreError::InvalidParameter(
                        "an alias pointing at $LATEST cannot route to another version: \
                         publish a version and point the alias at it"
                            .into(),
                    ))
                }
                Some(v) if v == extra => {
                    return Err(CoreError::InvalidParameter(format!(
                        "the additional version {v} is the alias's own version"
                    )))
                }
                Some(_) => {}
            }
        }
        for v in version.into_iter().chain(routing.map(|(v, _)| v)) {
            let store = self.store.clone();
            let f = function.clone();
            if blocking(move || Ok(store.get_version(&f, v)?))
                .await?
                .is_none()
            {
                return Err(CoreError::NotFound(format!(
                    "function version {function}:{v} not found"
                )));
            }
        }
        Ok(())
    }

    pub async fn create_alias(
        &self,
        by: &Principal,
        function: &str,
        name: &str,
        version: &str,
        description: Option<String>,
        weights: &[(String, f64)],
    ) -> Result<AliasRecord, CoreError> {
        let op = async {
            let function = self.authorize_on(by, Action::ChangeFunction, function)?;
            validate_name(name)?;
            let version = parse_target(version)?;
            let routing = parse_routing(weights)?;
            let description = description.unwrap_or_default();
            validate_description(&description)?;
            self.check_alias_versions(&function, version, routing)
                .await?;
            let store = self.store.clone();
            let (f, n) = (function.clone(), name.to_owned());
            let a =
                blocking(move || Ok(store.create_alias(&f, &n, version, &description, routing)?))
                    .await?;
            self.aliases.invalidate(&(function, name.to_owned()));
            Ok(a)
        };
        self.audited_with(
            by,
            AuditAction::AliasCreate,
            &format!("{function}:{name}"),
            op,
            |a| (format!("{}:{}", a.function, a.name), alias_detail(a)),
        )
        .await
    }

    /// An alias record, from the cache or the store.
    pub(crate) async fn alias_record(
        &self,
        function: &FunctionName,
        name: &str,
    ) -> Result<Arc<AliasRecord>, CoreError> {
        let key = (function.clone(), name.to_owned());
        if let Some(a) = self.aliases.get(&key) {
            return Ok(a);
        }
        let loaded_at = self.aliases.generation();
        let store = self.store.clone();
        let (f, n) = key.clone();
        let a = Arc::new(
            blocking(move || {
                store
                    .get_alias(&f, &n)?
                    .ok_or_else(|| CoreError::NotFound(format!("alias {f}:{n} not found")))
            })
            .await?,
        );
        self.aliases.insert(loaded_at, key, a.clone());
        Ok(a)
    }

    pub async fn get_alias(
        &self,
        by: &Principal,
        function: &str,
        name: &str,
    ) -> Result<AliasRecord, CoreError> {
        self.authorize_on(by, Action::ReadFunction, function)?;
        let f = self.function_record(function).await?;
        Ok((*self.alias_record(&f.name, name).await?).clone())
    }

    /// One page of a function's aliases (optionally only those pointing at `version`): at
    /// most `max` from the offset `marker`, and the next page's marker.
    pub async fn list_aliases_page(
        &self,
        by: &Principal,
        function: &str,
        version: Option<&str>,
        marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<AliasRecord>, Option<String>), CoreError> {
        self.authorize_on(by, Action::ReadFunction, function)?;
        let f = self.function_record(function).await?;
        let only = version.map(parse_target).transpose()?;
        let store = self.store.clone();
        let name = f.name.clone();
        let all: Vec<AliasRecord> = blocking(move || Ok(store.list_aliases(&name)?))
            .await?
            .into_iter()
            .filter(|a| {
                only.is_none_or(|v| {
                    a.version == v || v.is_some_and(|v| a.routing.is_some_and(|r| r.0 == v))
                })
            })
            .collect();
        crate::offset_page(all, marker, max)
    }

    /// Changes an alias; `weights: Some(&[])` removes its routing.
    pub async fn update_alias(
        &self,
        by: &Principal,
        function: &str,
        name: &str,
        version: Option<&str>,
        description: Option<String>,
        weights: Option<&[(String, f64)]>,
    ) -> Result<AliasRecord, CoreError> {
        let op = async {
            let function = self.authorize_on(by, Action::ChangeFunction, function)?;
            let current = self.alias_record(&function, name).await?;
            let update = AliasUpdate {
                version: version.map(parse_target).transpose()?,
                routing: weights.map(parse_routing).transpose()?,
                description,
            };
            if let Some(d) = &update.description {
                validate_description(d)?;
            }
            let version = update.version.unwrap_or(current.version);
            let routing = update.routing.unwrap_or(current.routing);
            self.check_alias_versions(&function, version, routing)
                .await?;
            let store = self.store.clone();
            let (f, n) = (function.clone(), name.to_owned());
            let a = blocking(move || Ok(store.update_alias(&f, &n, &update)?)).await?;
            self.aliases
                .invalidate(&(function.clone(), name.to_owned()));
            // A provisioned alias that moved takes its sandboxes along (`provisioned`).
            self.provisioned.wake(self.scheduler.as_deref());
            let a =
                a.ok_or_else(|| CoreError::NotFound(format!("alias {function}:{name} not found")))?;
            Ok(a)
        };
        self.audited_with(
            by,
            AuditAction::AliasUpdate,
            &format!("{function}:{name}"),
            op,
            |a| (format!("{}:{}", a.function, a.name), alias_detail(a)),
        )
        .await
    }

    pub async fn delete_alias(
        &self,
        by: &Principal,
        function: &str,
        name: &str,
    ) -> Result<(), CoreError> {
        let op = async {
            self.authorize_on(by, Action::ChangeFunction, function)?;
            let f = self.function_record(function).await?;
            let store = self.store.clone();
            let (fname, n) = (f.name.clone(), name.to_owned());
            let existed = blocking(move || Ok(store.delete_alias(&fname, &n)?)).await?;
            self.aliases.invalidate(&(f.name.clone(), name.to_owned()));
            self.policies.invalidate(&f.name);
            self.provisioned.wake(self.scheduler.as_deref());
            self.urls
                .invalidate(&(f.name.clone(), Some(name.to_owned())));
            if !existed {
                return Err(CoreError::NotFound(format!(
                    "alias {}:{name} not found",
                    f.name
                )));
            }
            Ok(())
        };
        self.audited(
            by,
            AuditAction::AliasDelete,
            &format!("{function}:{name}"),
            op,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_and_routing() {
        assert!(is_alias_name("live") && is_alias_name("v2-beta_1"));
        assert!(!is_alias_name("12") && !is_alias_name("") && !is_alias_name("a:b"));
        assert_eq!(parse_routing(&[]).ok(), Some(None));
        assert_eq!(
            parse_routing(&[("2".into(), 0.25)]).ok(),
            Some(Some((2, 0.25)))
        );
        assert!(parse_routing(&[("2".into(), 1.5)]).is_err());
        assert!(parse_routing(&[("$LATEST".into(), 0.5)]).is_err());
        assert!(parse_routing(&[("2".into(), 0.1), ("3".into(), 0.1)]).is_err());
    }
}
