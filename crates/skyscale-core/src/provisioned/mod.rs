//! Provisioned concurrency (Lambda's Put/Get/List/DeleteProvisionedConcurrencyConfig):
//! a published version or an alias keeps a number of initialised sandboxes ready, so that
//! its invocations start warm.
//!
//! - The store keeps what was asked for (function, qualifier, requested); how far it got is
//!   the keeper's live state (`keeper.rs`), never stored: a restart provisions again from
//!   the stored configurations and starts `IN_PROGRESS`.
//! - A configuration applies to a version: its own number, or the version its alias points
//!   at now (the keeper follows an alias that moves). `$LATEST`, an alias of `$LATEST` and a
//!   weighted alias are refused (lambda-compatibility.md, "Provisioned concurrency").
//! - The sandboxes live in the scheduler's provisioned pools (`scheduler/provisioned.rs`).
//! - Only a single node (`SKYSCALE_ROLE=all`) provisions; on a cluster a put is refused by
//!   name (docs/cluster.md).

mod keeper;
pub(crate) mod policy;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use skyscale_store::ProvisionedConfigRecord;
use skyscale_types::provisioned::ProvisionedStatus;
use skyscale_types::FunctionName;

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::session::PoolKey;
use crate::{blocking, offset_page, Cluster, ControlPlane, CoreError, Principal};

pub(crate) use keeper::Keeper;

/// Most configurations on one page of a list, as in Lambda.
pub const MAX_PROVISIONED_LIST: usize = 50;

/// The most sandboxes one configuration may ask for (the scheduler's cap bounds it further).
const MAX_REQUESTED: i64 = 10_000;

/// Lambda's refusal of `$LATEST` (and of an alias of it).
const UNPUBLISHED: &str =
    "Provisioned Concurrency Configs cannot be applied to unpublished function versions.";

/// A provisioned concurrency configuration and how far its sandboxes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedConfig {
    pub function: FunctionName,
    /// A published version's number or an alias.
    pub qualifier: String,
    /// The qualified ARN it applies to.
    pub function_arn: String,
    pub requested: u32,
    /// Initialised sandboxes, idle or running an invocation (at most `requested`).
    pub allocated: u32,
    /// Of those, ready to take an invocation or taking one: Skyscale's are the same.
    pub available: u32,
    pub status: ProvisionedStatus,
    pub status_reason: Option<String>,
    /// The version its sandboxes are for, once resolved.
    pub version: Option<u64>,
    /// When it was last put, RFC 3339.
    pub last_modified: String,
}

/// What a qualifier of a provisioned concurrency configuration names.
enum Target<'a> {
    Version(u64),
    Alias(&'a str),
}

/// The qualifier a configuration is about: a version or an alias, never `$LATEST`.
fn target(qualifier: Option<&str>) -> Result<Target<'_>, CoreError> {
    match qualifier {
        None | Some("") => Err(CoreError::InvalidParameter(
            "a qualifier is required: provisioned concurrency applies to a published version \
             or an alias"
                .into(),
        )),
        Some("$LATEST") => Err(CoreError::InvalidParameter(UNPUBLISHED.into())),
        Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => q
            .parse::<u64>()
            .map(Target::Version)
            .map_err(|_| CoreError::InvalidParameter(format!("invalid version {q:?}"))),
        Some(q) => Ok(Target::Alias(q)),
    }
}

impl ControlPlane {
    /// The version `qualifier` of `function` provisions now, or why it cannot be
    /// provisioned (an alias of `$LATEST`, a weighted alias). `Err` when it does not exist.
    pub(crate) async fn provisioned_version(
        &self,
        function: &FunctionName,
        qualifier: &str,
    ) -> Result<Result<u64, String>, CoreError> {
        match target(Some(qualifier))? {
            Target::Version(n) => {
                self.version_record(function.as_str(), Some(qualifier), false)
                    .await?;
                Ok(Ok(n))
            }
            Target::Alias(a) => {
                let alias = self.alias_record(function, a).await?;
                Ok(match (alias.version, alias.routing) {
                    (_, Some((extra, _))) => Err(format!(
                        "Alias with weights can not be used with Provisioned Concurrency: \
                         alias {a} routes a share of its invocations to version {extra}, and \
                         Skyscale does not split provisioned concurrency between versions"
                    )),
                    (None, None) => Err(UNPUBLISHED.to_owned()),
                    (Some(n), None) => Ok(n),
                })
            }
        }
    }

    /// Creates or replaces the provisioned concurrency of a version or alias.
    pub async fn put_provisioned(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
        requested: i64,
    ) -> Result<ProvisionedConfig, CoreError> {
        let target_name = format!("{name}:{}", qualifier.unwrap_or_default());
        self.audited_with(
            by,
            AuditAction::ProvisionedPut,
            &target_name,
            self.put_provisioned_inner(by, name, qualifier, requested),
            |c| {
                (
                    format!("{}:{}", c.function, c.qualifier),
                    format!("requested {}", c.requested),
                )
            },
        )
        .await
    }

    async fn put_provisioned_inner(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
        requested: i64,
    ) -> Result<ProvisionedConfig, CoreError> {
        let name = self.authorize_on(by, Action::ChangeFunction, name)?;
        if !matches!(self.cluster, Cluster::Single) {
            return Err(CoreError::Unsupported(format!(
                "provisioned concurrency is not supported on a cluster (SKYSCALE_ROLE={}): \
                 only a single node (SKYSCALE_ROLE=all) keeps provisioned sandboxes; see \
                 docs/cluster.md",
                self.role().as_str()
            )));
        }
        let requested = u32::try_from(requested)
            .ok()
            .filter(|n| (1..=MAX_REQUESTED as u32).contains(n))
            .ok_or_else(|| {
                CoreError::InvalidParameter(format!(
                    "ProvisionedConcurrentExecutions {requested} is out of range: expected 1 to \
                     {MAX_REQUESTED}"
                ))
            })?;
        target(qualifier)?;
        let qualifier = qualifier.unwrap_or_default().to_owned();
        let f = self.function_record(name.as_str()).await?;
        let version = self
            .provisioned_version(&name, &qualifier)
            .await?
            .map_err(CoreError::InvalidParameter)?;
        let v = self
            .version_record(name.as_str(), Some(&version.to_string()), false)
            .await?;
        let store = self.store.clone();
        let (all, functions) =
            blocking(move || Ok((store.all_provisioned_configs()?, store.list_functions()?)))
                .await?;
        let others: Vec<&ProvisionedConfigRecord> = all
            .iter()
            .filter(|c| !(c.function == name && c.qualifier == qualifier))
            .collect();
        // One version, one configuration: an alias and its version (or two aliases of one
        // version) would each count the same sandboxes.
        for c in others.iter().filter(|c| c.function == name) {
            if let Ok(Ok(n)) = self.provisioned_version(&name, &c.qualifier).await {
                if n == version {
                    return Err(CoreError::Conflict(format!(
                        "version {version} of {name} already has provisioned concurrency \
                         through {}: delete that configuration first",
                        c.qualifier
                    )));
                }
            }
        }
        let reserved_of: HashMap<&FunctionName, Option<u32>> = functions
            .iter()
            .map(|f| (&f.name, f.reserved_concurrency))
            .collect();
        let memory_of: HashMap<&FunctionName, u32> = functions
            .iter()
            .map(|f| (&f.name, f.memory.get()))
            .collect();
        let limits = &self.settings.limits;
        let check = policy::PutCheck {
            requested,
            reserved: f.reserved_concurrency,
            same_function: others
                .iter()
                .filter(|c| c.function == name)
                .map(|c| u64::from(c.requested))
                .sum(),
            account_limit: limits.max_sandboxes as u64,
            reserved_total: functions
                .iter()
                .filter_map(|f| f.reserved_concurrency)
                .map(u64::from)
                .sum(),
            unreserved_provisioned: others
                .iter()
                .filter(|c| c.function != name)
                .filter(|c| reserved_of.get(&c.function).copied().flatten().is_none())
                .map(|c| u64::from(c.requested))
                .sum::<u64>()
                + if f.reserved_concurrency.is_none() {
                    others
                        .iter()
                        .filter(|c| c.function == name)
                        .map(|c| u64::from(c.requested))
                        .sum()
                } else {
                    0
                },
            memory_mb: v.memory.get(),
            memory_others_mb: others
                .iter()
                .map(|c| {
                    u64::from(c.requested)
                        * u64::from(memory_of.get(&c.function).copied().unwrap_or(0))
                })
                .sum(),
            memory_budget_mb: limits.memory_budget_mb,
        };
        policy::check_put(&check).map_err(policy::PutRefusal::into_error)?;
        let store = self.store.clone();
        let (n, q) = (name.clone(), qualifier.clone());
        let record = blocking(move || Ok(store.put_provisioned_config(&n, &q, requested)?)).await?;
        tracing::info!(function = %name, qualifier = %qualifier, requested, "provisioned concurrency set");
        self.provisioned.wake(self.scheduler.as_deref());
        Ok(self.provisioned_view(record))
    }

    /// The configuration of a version or alias; `None` when it has none (the version or
    /// alias exists).
    pub async fn get_provisioned(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<ProvisionedConfig>, CoreError> {
        let name = self.authorize_on(by, Action::ReadFunction, name)?;
        target(qualifier)?;
        let qualifier = qualifier.unwrap_or_default().to_owned();
        self.version_record(name.as_str(), Some(&qualifier), false)
            .await?;
        let store = self.store.clone();
        let record = blocking(move || Ok(store.get_provisioned_config(&name, &qualifier)?)).await?;
        Ok(record.map(|r| self.provisioned_view(r)))
    }

    /// A function's configurations, a page at a time (`marker` from the previous page).
    pub async fn list_provisioned(
        &self,
        by: &Principal,
        name: &str,
        marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<ProvisionedConfig>, Option<String>), CoreError> {
        let name = self.authorize_on(by, Action::ReadFunction, name)?;
        self.function_record(name.as_str()).await?;
        let store = self.store.clone();
        let all = blocking(move || Ok(store.list_provisioned_configs(&name)?)).await?;
        let (page, next) = offset_page(all, marker, max.min(MAX_PROVISIONED_LIST))?;
        Ok((
            page.into_iter().map(|r| self.provisioned_view(r)).collect(),
            next,
        ))
    }

    /// Deletes the configuration of a version or alias; its sandboxes are destroyed (busy
    /// ones when their invocation ends). `false` when it had none.
    pub async fn delete_provisioned(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<bool, CoreError> {
        let target_name = format!("{name}:{}", qualifier.unwrap_or_default());
        self.audited(
            by,
            AuditAction::ProvisionedDelete,
            &target_name,
            self.delete_provisioned_inner(by, name, qualifier),
        )
        .await
    }

    async fn delete_provisioned_inner(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<bool, CoreError> {
        let name = self.authorize_on(by, Action::ChangeFunction, name)?;
        target(qualifier)?;
        let qualifier = qualifier.unwrap_or_default().to_owned();
        self.version_record(name.as_str(), Some(&qualifier), false)
            .await?;
        let store = self.store.clone();
        let (n, q) = (name.clone(), qualifier.clone());
        let existed = blocking(move || Ok(store.delete_provisioned_config(&n, &q)?)).await?;
        if existed {
            tracing::info!(function = %name, qualifier = %qualifier, "provisioned concurrency deleted");
            self.provisioned.forget(&name, &qualifier);
            self.provisioned.wake(self.scheduler.as_deref());
        }
        Ok(existed)
    }

    /// A stored configuration with the keeper's view of its sandboxes.
    fn provisioned_view(&self, r: ProvisionedConfigRecord) -> ProvisionedConfig {
        let counts = self
            .scheduler
            .as_ref()
            .map(|s| s.provisioned_counts())
            .unwrap_or_default();
        let resolved = self.provisioned.resolved(&r.function, &r.qualifier);
        let (version, unresolved) = match &resolved {
            Some(Ok(key)) => (key.version, None),
            Some(Err(reason)) => (None, Some(reason.as_str())),
            None => (None, None),
        };
        let ready = match &resolved {
            Some(Ok(key)) => counts.get(key).map_or(0, |c| c.ready()),
            _ => 0,
        };
        let failure = match &resolved {
            Some(Ok(key)) => self.provisioned.failure(key),
            _ => None,
        };
        let (status, status_reason) =
            policy::status(r.requested, ready, unresolved, failure.as_deref());
        let allocated = ready.min(r.requested);
        ProvisionedConfig {
            function_arn: format!(
                "{}:{}",
                self.settings.function_arn(r.function.as_str()),
                r.qualifier
            ),
            function: r.function,
            qualifier: r.qualifier,
            requested: r.requested,
            allocated,
            available: allocated,
            status,
            status_reason,
            version,
            last_modified: r.updated_at,
        }
    }

    /// Per function: provisioned sandboxes requested, ready and in use, and invocations
    /// that spilled over to on-demand sandboxes, in the Prometheus text format.
    pub(crate) fn render_provisioned_metrics(&self, visible: impl Fn(&str) -> bool) -> String {
        use std::fmt::Write;
        let Some(sched) = &self.scheduler else {
            return String::new();
        };
        let mut per: BTreeMap<String, PoolTotals> = BTreeMap::new();
        for (key, c) in sched.provisioned_counts() {
            let e = per.entry(key.function.to_string()).or_default();
            e.requested += u64::from(c.target);
            e.ready += u64::from(c.ready());
            e.in_use += u64::from(c.busy);
        }
        let spill: BTreeMap<String, u64> = sched
            .provisioned_spillover()
            .into_iter()
            .map(|(f, n)| (f.to_string(), n))
            .collect();
        let mut out = String::new();
        let families = [
            (
                "skyscale_provisioned_requested",
                "Provisioned sandboxes wanted, per function",
                PoolTotals::requested as fn(&PoolTotals) -> u64,
            ),
            (
                "skyscale_provisioned_ready",
                "Provisioned sandboxes initialised (idle or in use), per function",
                PoolTotals::ready,
            ),
            (
                "skyscale_provisioned_in_use",
                "Provisioned sandboxes running an invocation, per function",
                PoolTotals::in_use,
            ),
        ];
        for (name, help, pick) in families {
            let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} gauge");
            for (f, t) in per.iter().filter(|(f, _)| visible(f)) {
                let _ = writeln!(out, "{name}{{function=\"{f}\"}} {}", pick(t));
            }
        }
        let name = "skyscale_provisioned_spillover_invocations_total";
        let _ = writeln!(
            out,
            "# HELP {name} Invocations of a provisioned version that found no idle provisioned \
             sandbox and ran on demand (Lambda's ProvisionedConcurrencySpilloverInvocations).\n\
             # TYPE {name} counter"
        );
        for (f, n) in spill.iter().filter(|(f, _)| visible(f)) {
            let _ = writeln!(out, "{name}{{function=\"{f}\"}} {n}");
        }
        out
    }
}

/// One function's provisioned sandboxes, all its versions together (for the metrics).
#[derive(Debug, Default)]
struct PoolTotals {
    requested: u64,
    ready: u64,
    in_use: u64,
}

impl PoolTotals {
    fn requested(&self) -> u64 {
        self.requested
    }
    fn ready(&self) -> u64 {
        self.ready
    }
    fn in_use(&self) -> u64 {
        self.in_use
    }
}

/// What the keeper knows of one configuration and one version, shared with the views.
#[derive(Default)]
struct Known {
    /// Per configuration: the version it provisions, or why it cannot.
    resolved: HashMap<(FunctionName, String), Result<PoolKey, String>>,
    /// Per version: its inits failing in a row.
    failures: HashMap<PoolKey, keeper::Failure>,
}

/// Keeps `Known` behind a lock held for map operations only.
#[derive(Default)]
struct Shared(Mutex<Known>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
