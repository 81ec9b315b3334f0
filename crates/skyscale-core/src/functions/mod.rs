//! The function service: create, read, update, deploy, delete. Every request value is
//! validated here, before anything is written.

mod lookup;
mod spec;
mod tags;
mod validate;
mod versions;

pub use spec::{FunctionChanges, FunctionSpec};

use skyscale_store::{FunctionRecord, FunctionUpdate, NewFunction};
use skyscale_types::{Handler, MemoryMb, TimeoutSecs};

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::code::put_code;
use crate::{blocking, ControlPlane, CoreError, Principal};
use validate::{
    check_bootstrap, parse_ephemeral, parse_name, validate_description, validate_env,
    validate_tags, EPHEMERAL_MB, MAX_RESERVED_CONCURRENCY,
};

/// What a change requires of the function it changes, checked in the same transaction as
/// the change (Lambda's `RevisionId` preconditions): `None` is no requirement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    /// The function (`$LATEST`) must be at this revision.
    pub revision: Option<u64>,
}

impl ControlPlane {
    /// Creates a function (with its tags and code, if given), validated whole before
    /// anything is written.
    pub async fn create_function(
        &self,
        by: &Principal,
        spec: FunctionSpec,
    ) -> Result<FunctionRecord, CoreError> {
        let target = spec.name.clone();
        self.audited(
            by,
            AuditAction::FunctionCreate,
            &target,
            self.create_function_inner(by, spec),
        )
        .await
    }

    pub(super) async fn create_function_inner(
        &self,
        by: &Principal,
        req: FunctionSpec,
    ) -> Result<FunctionRecord, CoreError> {
        let tags = req.tags;
        let name = parse_name(&req.name)?;
        by.authorize(Action::CreateFunction, Some(&name))?;
        validate_tags(&tags)?;
        let runtime = self.runtimes.resolve(&req.runtime)?;
        let handler =
            Handler::for_runtime(req.handler.as_deref().unwrap_or(Handler::DEFAULT), &runtime)?;
        let memory = req
            .memory_mb
            .map(MemoryMb::new)
            .transpose()?
            .unwrap_or(MemoryMb::DEFAULT);
        let timeout = req
            .timeout_s
            .map(TimeoutSecs::new)
            .transpose()?
            .unwrap_or(TimeoutSecs::DEFAULT);
        validate_env(&req.environment)?;
        let ephemeral_mb = req
            .ephemeral_storage_mb
            .map(parse_ephemeral)
            .transpose()?
            .unwrap_or(*EPHEMERAL_MB.start());
        let network = req.network.unwrap_or(false);
        let snap_start = req
            .snap_start
            .as_deref()
            .map(parse_snap_start)
            .transpose()?
            .unwrap_or_default();
        let description = req.description.unwrap_or_default();
        validate_description(&description)?;
        let zip = req.code;
        let layer_arns = req.layers;
        let layer_check = self.layer_check();
        let store = self.store.clone();
        let code_store = self.code.clone();
        let uploads = zip.is_some();
        let created = blocking(move || {
            if store.get_function(&name)?.is_some() {
                return Err(CoreError::Conflict(format!(
                    "function {name} already exists"
                )));
            }
            // The package is stored before the row that points at it: a crash in between
            // leaves an unreferenced package (collected at the next start), never a
            // function whose code is missing. It stays pinned until the row is committed.
            let stored = zip.map(|z| put_code(&store, &code_store, &z)).transpose()?;
            let code = stored.as_ref().map(|s| s.code.clone());
            check_bootstrap(&code_store, &runtime, code.as_ref())?;
            let layers = layer_check.resolve(&layer_arns, &runtime, code.as_ref())?;
            let record = store.create_function(&NewFunction {
                name,
                runtime,
                handler,
                memory,
                timeout,
                environment: req.environment,
                description,
                code,
                network,
                ephemeral_mb,
                layers,
                snap_start,
            })?;
            if !tags.is_empty() {
                store.tag_function(&record.name, &tags)?;
            }
            Ok(record)
        })
        .await;
        if uploads && created.is_err() {
            // The package may be stored with nothing referencing it.
            self.request_code_collection();
        }
        let record = created?;
        // A failed lookup of this name may have run before the create; nothing is cached
        // for it, but invalidating keeps the rule simple: every write invalidates.
        self.changed(&record.name, false);
        tracing::info!(function = %record.name, "function created");
        Ok(record)
    }

    /// Every function the key may see.
    pub async fn list_functions(&self, by: &Principal) -> Result<Vec<FunctionRecord>, CoreError> {
        by.authorize(Action::ListFunctions, None)?;
        let store = self.store.clone();
        let all = blocking(move || Ok(store.list_functions()?)).await?;
        Ok(all.into_iter().filter(|f| by.may_see(&f.name)).collect())
    }

    /// One page of the functions the key may see, by name: at most `max` after `marker` (a
    /// name returned as the previous page's next marker), and the marker of the next page if
    /// there is one.
    pub async fn list_functions_page(
        &self,
        by: &Principal,
        marker: Option<String>,
        max: usize,
    ) -> Result<(Vec<FunctionRecord>, Option<String>), CoreError> {
        by.authorize(Action::ListFunctions, None)?;
        let max = max.max(1);
        // Functions the key may not see are skipped, so the store is read in chunks until
        // the page (plus one, to know whether there is a next) is full or the end is reached.
        let chunk = (max + 1).max(100);
        let mut page = Vec::new();
        let mut after = marker;
        loop {
            let store = self.store.clone();
            let from = after.clone();
            let rows =
                blocking(move || Ok(store.list_functions_after(from.as_deref(), chunk)?)).await?;
            let done = rows.len() < chunk;
            after = rows.last().map(|f| f.name.to_string());
            page.extend(rows.into_iter().filter(|f| by.may_see(&f.name)));
            if done || page.len() > max {
                break;
            }
        }
        let next = if page.len() > max {
            page.truncate(max);
            page.last().map(|f| f.name.to_string())
        } else {
            None
        };
        Ok((page, next))
    }

    /// Changes a function's configuration, if the function still is as `expect` says.
    pub async fn update_function(
        &self,
        by: &Principal,
        name: &str,
        req: FunctionChanges,
        expect: Expect,
    ) -> Result<FunctionRecord, CoreError> {
        self.audited(
            by,
            AuditAction::FunctionUpdate,
            name,
            self.update_function_inner(by, name, req, expect),
        )
        .await
    }

    pub(super) async fn update_function_inner(
        &self,
        by: &Principal,
        name: &str,
        req: FunctionChanges,
        expect: Expect,
    ) -> Result<FunctionRecord, CoreError> {
        let name = self.authorize_on(by, Action::ChangeFunction, name)?;
        let update = FunctionUpdate {
            runtime: req
                .runtime
                .as_deref()
                .map(|r| self.runtimes.resolve(r))
                .transpose()?,
            // Checked below, against the runtime the function will have.
            handler: None,
            memory: req.memory_mb.map(MemoryMb::new).transpose()?,
            timeout: req.timeout_s.map(TimeoutSecs::new).transpose()?,
            environment: req.environment,
            description: req.description,
            network: req.network,
            ephemeral_mb: req.ephemeral_storage_mb.map(parse_ephemeral).transpose()?,
            // Resolved below, against the runtime and code the function will have.
            layers: None,
            snap_start: req
                .snap_start
                .as_deref()
                .map(parse_snap_start)
                .transpose()?,
            expected_revision: expect.revision,
        };
        if let Some(env) = &update.environment {
            validate_env(env)?;
        }
        if let Some(d) = &update.description {
            validate_description(d)?;
        }
        let store = self.store.clone();
        let code_store = self.code.clone();
        let n = name.clone();
        let handler = req.handler;
        let layer_arns = req.layers;
        let layer_check = self.layer_check();
        let mut update = update;
        let record = blocking(move || {
            if let Some(arns) = &layer_arns {
                let current = store
                    .get_function(&n)?
                    .ok_or_else(|| CoreError::NotFound(format!("function {n} not found")))?;
                let runtime = update.runtime.as_ref().unwrap_or(&current.runtime);
                update.layers = Some(layer_check.resolve(arns, runtime, current.code.as_ref())?);
            }
            if update.runtime.is_some() || handler.is_some() {
                let current = store
                    .get_function(&n)?
                    .ok_or_else(|| CoreError::NotFound(format!("function {n} not found")))?;
                if let Some(runtime) = &update.runtime {
                    check_bootstrap(&code_store, runtime, current.code.as_ref())?;
                }
                // A handler suits its runtime: a Python one is `module.function`, a custom
                // runtime's is free text (and a runtime change must suit the old handler).
                let runtime = update.runtime.as_ref().unwrap_or(&current.runtime);
                let text = handler.as_deref().unwrap_or(current.handler.as_str());
                let checked = Handler::for_runtime(text, runtime)?;
                update.handler = handler.is_some().then_some(checked);
            }
            Ok(store.update_function(&n, &update)?)
        })
        .await?;
        self.changed(&name, true);
        tracing::info!(function = %name, revision = record.revision, "function configuration updated");
        Ok(record)
    }

    /// Stores a new code package and points the function at it, if the function still is
    /// as `expect` says. The package is validated completely first; on any error the
    /// function keeps its previous code. With `layers` (version ARNs, in order) the
    /// function's layers are replaced in the same update (a requirements deploy).
    pub async fn deploy_code(
        &self,
        by: &Principal,
        name: &str,
        zip: Vec<u8>,
        layers: Option<Vec<String>>,
        expect: Expect,
    ) -> Result<FunctionRecord, CoreError> {
        self.audited_with(
            by,
            AuditAction::FunctionDeploy,
            name,
            self.deploy_code_inner(by, name, zip, layers, expect),
            |f| {
                let sha = f.code.as_ref().map_or("", |c| c.sha256.as_str());
                let short = sha.get(..12).unwrap_or(sha);
                (
                    f.name.to_string(),
                    format!("revision {}, code {short}", f.revision),
                )
            },
        )
        .await
    }

    pub(super) async fn deploy_code_inner(
        &self,
        by: &Principal,
        name: &str,
        zip: Vec<u8>,
        layers: Option<Vec<String>>,
        expect: Expect,
    ) -> Result<FunctionRecord, CoreError> {
        let name = self.authorize_on(by, Action::ChangeFunction, name)?;
        let store = self.store.clone();
        let code_store = self.code.clone();
        let layer_check = self.layer_check();
        let n = name.clone();
        let deployed = blocking(move || {
            let current = store
                .get_function(&n)?
                .ok_or_else(|| CoreError::NotFound(format!("function {n} not found")))?;
            let stored = put_code(&store, &code_store, &zip)?;
            check_bootstrap(&code_store, &current.runtime, Some(&stored.code))?;
            // With `layers` (version ARNs), they replace the function's in the same update.
            let layers = match &layers {
                Some(arns) => {
                    Some(layer_check.resolve(arns, &current.runtime, Some(&stored.code))?)
                }
                None => {
                    layer_check.check_size(&current.layers, Some(&stored.code))?;
                    None
                }
            };
            // `stored` (its pin) lives until the row is committed.
            Ok(store.set_function_code_if(&n, &stored.code, layers.as_deref(), expect.revision)?)
        })
        .await;
        if deployed.is_ok() {
            // Before the collection: a cached record must not name a collected package.
            self.changed(&name, true);
        }
        // Either the previous package or (after a failure) this one may be unused now.
        self.request_code_collection();
        let record = deployed?;
        tracing::info!(function = %name, revision = record.revision, "code deployed");
        Ok(record)
    }

    pub async fn delete_function(&self, by: &Principal, name: &str) -> Result<(), CoreError> {
        self.audited(
            by,
            AuditAction::FunctionDelete,
            name,
            self.delete_function_inner(by, name),
        )
        .await
    }

    pub(super) async fn delete_function_inner(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<(), CoreError> {
        let name = self.authorize_on(by, Action::DeleteFunction, name)?;
        let store = self.store.clone();
        let n = name.clone();
        blocking(move || Ok(store.delete_function(&n)?)).await?;
        self.functions.invalidate(&name);
        self.versions.invalidate_where(|(f, _)| f == &name);
        self.aliases.invalidate_where(|(f, _)| f == &name);
        self.urls.invalidate_where(|(f, _)| f == &name);
        self.policies.invalidate(&name);
        if let Some(s) = &self.scheduler {
            s.retire(&name);
        }
        self.metrics.forget(name.as_str());
        self.events.metrics.forget(name.as_str());
        self.request_code_collection();
        tracing::info!(function = %name, "function deleted");
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) the function's reserved concurrency: the most
    /// invocations it may run at once; 0 disables it. Warm sandboxes stay.
    pub async fn set_reserved_concurrency(
        &self,
        by: &Principal,
        name: &str,
        reserved: Option<i64>,
    ) -> Result<FunctionRecord, CoreError> {
        self.audited_with(
            by,
            AuditAction::FunctionConcurrency,
            name,
            self.set_reserved_concurrency_inner(by, name, reserved),
            |f| {
                let detail = match f.reserved_concurrency {
                    Some(n) => format!("reserved {n}"),
                    None => "reservation removed".to_owned(),
                };
                (f.name.to_string(), detail)
            },
        )
        .await
    }

    pub(super) async fn set_reserved_concurrency_inner(
        &self,
        by: &Principal,
        name: &str,
        reserved: Option<i64>,
    ) -> Result<FunctionRecord, CoreError> {
        let name = self.authorize_on(by, Action::ChangeFunction, name)?;
        let reserved = reserved
            .map(|n| {
                u32::try_from(n)
                    .ok()
                    .filter(|&n| n <= MAX_RESERVED_CONCURRENCY)
                    .ok_or_else(|| {
                        CoreError::InvalidParameter(format!(
                            "invalid reserved concurrency {n}: must be between 0 and {MAX_RESERVED_CONCURRENCY}"
                        ))
                    })
            })
            .transpose()?;
        let store = self.store.clone();
        let n = name.clone();
        let record = blocking(move || Ok(store.set_reserved_concurrency(&n, reserved)?)).await?;
        self.changed(&name, false);
        tracing::info!(function = %record.name, reserved = ?reserved, "reserved concurrency set");
        Ok(record)
    }

    /// Largest code package accepted, in bytes.
    pub fn max_code_bytes(&self) -> u64 {
        self.code.limits().max_zip_bytes
    }
}

/// Lambda's `SnapStart.ApplyOn`, refused by name when it is not one of its values.
fn parse_snap_start(s: &str) -> Result<skyscale_types::snapstart::SnapStart, CoreError> {
    skyscale_types::snapstart::SnapStart::parse(s).map_err(CoreError::InvalidParameter)
}
