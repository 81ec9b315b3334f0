//! Account-wide limits and usage (Lambda's GetAccountSettings).

use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};

/// Lambda's default storage quota for all code packages. Reported, not enforced yet.
const TOTAL_CODE_SIZE_LIMIT: u64 = 75 * 1024 * 1024 * 1024;

/// Limits and usage of this control plane, in Lambda's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSettings {
    pub total_code_size_limit: u64,
    pub code_size_zipped_limit: u64,
    pub code_size_unzipped_limit: u64,
    /// Invocations that may run at once: the host's sandbox cap.
    pub concurrent_executions: u64,
    /// `concurrent_executions` minus every function's reserved concurrency.
    pub unreserved_concurrent_executions: u64,
    /// Sum of the sizes of the functions' code packages.
    pub total_code_size: u64,
    pub function_count: u64,
}

impl ControlPlane {
    /// The limits, and the usage of the functions the key may see (the concurrency figures
    /// are the host's, for everyone).
    pub async fn account_settings(&self, by: &Principal) -> Result<AccountSettings, CoreError> {
        by.authorize(Action::ReadAccount, None)?;
        let store = self.store.clone();
        let all = blocking(move || Ok(store.list_functions()?)).await?;
        let visible: Vec<_> = all.iter().filter(|f| by.may_see(&f.name)).collect();
        let concurrent = self.settings.limits.max_sandboxes as u64;
        let reserved: u64 = all
            .iter()
            .filter_map(|f| f.reserved_concurrency)
            .map(u64::from)
            .sum();
        let limits = self.code.limits();
        Ok(AccountSettings {
            total_code_size_limit: TOTAL_CODE_SIZE_LIMIT,
            code_size_zipped_limit: limits.max_zip_bytes,
            code_size_unzipped_limit: limits.max_unzipped_bytes,
            concurrent_executions: concurrent,
            unreserved_concurrent_executions: concurrent.saturating_sub(reserved),
            total_code_size: visible
                .iter()
                .filter_map(|f| f.code.as_ref())
                .map(|c| c.size)
                .sum(),
            function_count: visible.len() as u64,
        })
    }
}
