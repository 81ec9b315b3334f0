//! A function's tags.

use std::collections::BTreeMap;

use super::validate::{validate_tag_key, validate_tags};
use crate::audit::AuditAction;
use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};

impl ControlPlane {
    /// The function's tags.
    pub async fn list_tags(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<BTreeMap<String, String>, CoreError> {
        self.authorize_on(by, Action::ReadFunction, name)?;
        let f = self.function_record(name).await?;
        let store = self.store.clone();
        blocking(move || Ok(store.tags(&f.name)?)).await
    }

    /// Adds or replaces tags on a function.
    pub async fn tag_function(
        &self,
        by: &Principal,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<(), CoreError> {
        let op = async {
            let name = self.authorize_on(by, Action::ChangeFunction, name)?;
            validate_tags(&tags)?;
            let store = self.store.clone();
            blocking(move || Ok(store.tag_function(&name, &tags)?)).await
        };
        self.audited(by, AuditAction::FunctionTag, name, op).await
    }

    /// Removes tags from a function by key.
    pub async fn untag_function(
        &self,
        by: &Principal,
        name: &str,
        keys: Vec<String>,
    ) -> Result<(), CoreError> {
        let op = async {
            let name = self.authorize_on(by, Action::ChangeFunction, name)?;
            for k in &keys {
                validate_tag_key(k)?;
            }
            let store = self.store.clone();
            blocking(move || Ok(store.untag_function(&name, &keys)?)).await
        };
        self.audited(by, AuditAction::FunctionUntag, name, op).await
    }
}
