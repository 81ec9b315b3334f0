//! Reading functions and their versions: the authorization that comes first, the cached
//! records of the hot path, and what a change must invalidate.

use std::sync::Arc;

use skyscale_store::FunctionRecord;
use skyscale_types::FunctionName;

use super::validate::{parse_name, parse_qualifier, Qualifier};
use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};

impl ControlPlane {
    pub async fn get_function(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<FunctionRecord, CoreError> {
        self.authorize_on(by, Action::ReadFunction, name)?;
        Ok((*self.function_record(name).await?).clone())
    }

    /// Parses a function name and checks that `by` may do `action` on it: a refusal
    /// comes before any lookup, so it does not tell whether the function exists.
    pub(crate) fn authorize_on(
        &self,
        by: &Principal,
        action: Action,
        name: &str,
    ) -> Result<FunctionName, CoreError> {
        let name = parse_name(name)?;
        by.authorize(action, Some(&name))?;
        Ok(name)
    }

    /// The current record of a function, from the cache or the store.
    pub(crate) async fn function_record(
        &self,
        name: &str,
    ) -> Result<Arc<FunctionRecord>, CoreError> {
        let name = parse_name(name)?;
        if let Some(f) = self.functions.get(&name) {
            return Ok(f);
        }
        let loaded_at = self.functions.generation();
        let store = self.store.clone();
        let n = name.clone();
        let f = Arc::new(
            blocking(move || {
                store
                    .get_function(&n)?
                    .ok_or_else(|| CoreError::NotFound(format!("function {n} not found")))
            })
            .await?,
        );
        self.functions.insert(loaded_at, name, f.clone());
        Ok(f)
    }

    /// After a write of a function's row: drop the cached row and, when what runs changed,
    /// the idle sandboxes of `$LATEST` (published versions never change).
    pub(super) fn changed(&self, name: &FunctionName, retire: bool) {
        self.functions.invalidate(name);
        if retire {
            if let Some(s) = &self.scheduler {
                s.retire_where(name, |v| v.is_none());
            }
        }
    }

    /// `$LATEST` (`qualifier` absent or `$LATEST`) or a published version, with the
    /// function's current reserved concurrency (it applies to all versions together).
    /// An alias resolves to its version, or (`route`, for an invocation) to the version its
    /// routing picks this time.
    pub(crate) async fn version_record(
        &self,
        name: &str,
        qualifier: Option<&str>,
        route: bool,
    ) -> Result<Arc<FunctionRecord>, CoreError> {
        let f = self.function_record(name).await?;
        let n = match parse_qualifier(f.name.as_str(), qualifier)? {
            Qualifier::Latest => return Ok(f),
            Qualifier::Version(n) => n,
            Qualifier::Alias(a) => {
                let alias = self.alias_record(&f.name, a).await?;
                let target = if route {
                    crate::aliases::pick(&alias)
                } else {
                    alias.version
                };
                match target {
                    Some(n) => n,
                    None => return Ok(f),
                }
            }
        };
        let key = (f.name.clone(), n);
        let v = match self.versions.get(&key) {
            Some(v) => v,
            None => {
                let loaded_at = self.versions.generation();
                let store = self.store.clone();
                let fname = f.name.clone();
                let v = Arc::new(
                    blocking(move || {
                        store.get_version(&fname, n)?.ok_or_else(|| {
                            CoreError::NotFound(format!("function {fname}:{n} not found"))
                        })
                    })
                    .await?,
                );
                self.versions.insert(loaded_at, key, v.clone());
                v
            }
        };
        if v.reserved_concurrency == f.reserved_concurrency {
            return Ok(v);
        }
        let mut v = (*v).clone();
        v.reserved_concurrency = f.reserved_concurrency;
        Ok(Arc::new(v))
    }

    /// `$LATEST` or a published version of a function.
    pub async fn get_function_version(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<FunctionRecord, CoreError> {
        self.authorize_on(by, Action::ReadFunction, name)?;
        Ok((*self.version_record(name, qualifier, false).await?).clone())
    }
}
