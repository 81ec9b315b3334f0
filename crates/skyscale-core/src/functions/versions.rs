//! Published versions: publish, list, delete.

use std::sync::Arc;

use skyscale_store::FunctionRecord;

use super::validate::{parse_name, parse_qualifier, validate_description, Qualifier};
use super::Expect;
use crate::audit::AuditAction;
use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};

impl ControlPlane {
    /// Publishes `$LATEST` as an immutable version (or returns the newest version when
    /// nothing changed since it was published). Returns the version and whether it is new.
    /// Only if `$LATEST` still is as `expect` says.
    /// A version with SnapStart gets its snapshot taken in the background (`snapstart.rs`).
    pub async fn publish_version(
        self: &Arc<Self>,
        by: &Principal,
        name: &str,
        description: Option<String>,
        expect: Expect,
    ) -> Result<(FunctionRecord, bool), CoreError> {
        let op = async {
            let name = self.authorize_on(by, Action::ChangeFunction, name)?;
            if let Some(d) = &description {
                validate_description(d)?;
            }
            let store = self.store.clone();
            let n = name.clone();
            let (v, new) = blocking(move || {
                Ok(store.publish_version_if(&n, description.as_deref(), expect.revision)?)
            })
            .await?;
            tracing::info!(function = %name, version = ?v.version, new, "version published");
            self.want_snapshot(&Arc::new(v.clone()));
            Ok((v, new))
        };
        self.audited_with(by, AuditAction::VersionPublish, name, op, |(v, new)| {
            let n = v.version.unwrap_or_default();
            let what = if *new {
                "published"
            } else {
                "unchanged: newest"
            };
            (format!("{name}:{n}"), format!("{what} version {n}"))
        })
        .await
    }

    /// One page of a function's versions, `$LATEST` first: at most `max` from the offset
    /// `marker`, and the next page's marker if there is one.
    pub async fn list_versions_page(
        &self,
        by: &Principal,
        name: &str,
        marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<FunctionRecord>, Option<String>), CoreError> {
        let latest = self.get_function(by, name).await?; // authorizes ReadFunction
        let store = self.store.clone();
        let n = parse_name(name)?;
        let versions = blocking(move || Ok(store.list_versions(&n)?)).await?;
        let all: Vec<FunctionRecord> = std::iter::once(latest).chain(versions).collect();
        crate::offset_page(all, marker, max)
    }

    /// Deletes one published version (`$LATEST` goes only with the whole function).
    pub async fn delete_version(
        &self,
        by: &Principal,
        name: &str,
        qualifier: &str,
    ) -> Result<(), CoreError> {
        let target = format!("{name}:{qualifier}");
        self.audited(
            by,
            AuditAction::VersionDelete,
            &target,
            self.delete_version_inner(by, name, qualifier),
        )
        .await
    }

    pub(super) async fn delete_version_inner(
        &self,
        by: &Principal,
        name: &str,
        qualifier: &str,
    ) -> Result<(), CoreError> {
        self.authorize_on(by, Action::DeleteFunction, name)?;
        let f = self.function_record(name).await?;
        let n = match parse_qualifier(f.name.as_str(), Some(qualifier))? {
            Qualifier::Version(n) => n,
            Qualifier::Latest => {
                return Err(CoreError::InvalidParameter(
                    "$LATEST version cannot be deleted without deleting the function".into(),
                ))
            }
            Qualifier::Alias(a) => {
                return Err(CoreError::InvalidParameter(format!(
                    "{a:?} is an alias: delete it with DeleteAlias"
                )))
            }
        };
        let store = self.store.clone();
        let fname = f.name.clone();
        let existed = blocking(move || Ok(store.delete_version(&fname, n)?)).await?;
        self.versions.invalidate(&(f.name.clone(), n));
        self.policies.invalidate(&f.name);
        if !existed {
            return Err(CoreError::NotFound(format!(
                "function {}:{n} not found",
                f.name
            )));
        }
        if let Some(s) = &self.scheduler {
            s.retire_where(&f.name, |v| v == Some(n));
        }
        self.request_code_collection();
        tracing::info!(function = %f.name, version = n, "version deleted");
        Ok(())
    }
}
