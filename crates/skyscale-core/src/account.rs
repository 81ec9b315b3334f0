//! Account-wide limits and usage (Lambda's GetAccountSettings).

use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};

/// Limits and usage of this control plane, in Lambda's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSettings {
    pub total_code_size_limit: u64,
    pub code_size_zipped_limit: u64,
    pub code_size_unzipped_limit: u64,
    /// Invocations that may run at once: the host's sandbox cap (on an API node, the sum
    /// of the live workers' caps).
    pub concurrent_executions: u64,
    /// `concurrent_executions` minus every function's reserved concurrency and the
    /// provisioned concurrency of functions without one.
    pub unreserved_concurrent_executions: u64,
    /// What the stored code packages take, all functions and versions of the account
    /// together (each distinct package once, unpacked, in whole blocks: what
    /// `total_code_size_limit` is checked against).
    pub total_code_size: u64,
    pub function_count: u64,
}

impl ControlPlane {
    /// The limits, and the usage: the function count of the functions the key may see; the
    /// code storage and concurrency figures are the account's, for everyone (the limits
    /// they are checked against are shared too).
    pub async fn account_settings(&self, by: &Principal) -> Result<AccountSettings, CoreError> {
        by.authorize(Action::ReadAccount, None)?;
        let store = self.store.clone();
        let (all, provisioned) =
            blocking(move || Ok((store.list_functions()?, store.all_provisioned_configs()?)))
                .await?;
        let visible: Vec<_> = all.iter().filter(|f| by.may_see(&f.name)).collect();
        // On an API node: the cluster's, the sum of the live workers' capacities (each
        // worker enforces its own; docs/cluster.md).
        let concurrent = match &self.cluster {
            crate::Cluster::Api(node) => node.capacity(),
            _ => self.settings.limits.max_sandboxes as u64,
        };
        let reserved: u64 = all
            .iter()
            .filter_map(|f| f.reserved_concurrency)
            .map(u64::from)
            .sum();
        // Provisioned concurrency of functions without a reservation comes out of the
        // unreserved pool too, as in Lambda (lambda-compatibility.md).
        let unreserved_provisioned: u64 = provisioned
            .iter()
            .filter(|c| {
                all.iter()
                    .any(|f| f.name == c.function && f.reserved_concurrency.is_none())
            })
            .map(|c| u64::from(c.requested))
            .sum();
        let limits = self.code.limits();
        Ok(AccountSettings {
            total_code_size_limit: limits.max_total_bytes,
            code_size_zipped_limit: limits.max_zip_bytes,
            code_size_unzipped_limit: limits.max_unzipped_bytes,
            concurrent_executions: concurrent,
            unreserved_concurrent_executions: concurrent
                .saturating_sub(reserved)
                .saturating_sub(unreserved_provisioned),
            total_code_size: self.code.usage().bytes,
            function_count: visible.len() as u64,
        })
    }
}
