//! The function service: create, read, update, deploy, delete. Every request value is
//! validated here, before anything is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use skyscale_store::{CodeRef, CodeStore, FunctionRecord, FunctionUpdate, NewFunction};
use skyscale_types::api::{CreateFunction, FunctionInfo, UpdateFunction};
use skyscale_types::{
    validate_env_name, FunctionName, Handler, MemoryMb, Runtime, TimeoutSecs, ValidationError,
};

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::code::put_code;
use crate::runtimes::PROVIDED_BOOTSTRAP;
use crate::{blocking, ControlPlane, CoreError, Principal};
use skyscale_store::MAX_TAGS;

/// What a change requires of the function it changes, checked in the same transaction as
/// the change (Lambda's `RevisionId` preconditions): `None` is no requirement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    /// The function (`$LATEST`) must be at this revision.
    pub revision: Option<u64>,
}

/// Lambda's limit on the total size of a function's environment variables.
const MAX_ENV_BYTES: usize = 4096;
const MAX_DESCRIPTION: usize = 256;
/// Upper bound for a reserved concurrency (the host cap applies on top).
const MAX_RESERVED_CONCURRENCY: u32 = 10_000;

pub(crate) fn parse_name(name: &str) -> Result<FunctionName, CoreError> {
    Ok(FunctionName::parse(name)?)
}

fn validate_env(env: &BTreeMap<String, String>) -> Result<(), CoreError> {
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
fn check_bootstrap(
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

fn validate_description(d: &str) -> Result<(), CoreError> {
    let n = d.chars().count();
    if n > MAX_DESCRIPTION {
        return Err(ValidationError::Description(n).into());
    }
    Ok(())
}

pub(crate) fn info(f: &FunctionRecord) -> FunctionInfo {
    FunctionInfo {
        name: f.name.to_string(),
        runtime: f.runtime.to_string(),
        handler: f.handler.as_str().to_owned(),
        memory_mb: f.memory.get(),
        timeout_s: f.timeout.get(),
        environment: f.environment.clone(),
        description: f.description.clone(),
        code_sha256: f.code.as_ref().map(|c| c.sha256.clone()),
        code_size: f.code.as_ref().map(|c| c.size),
        reserved_concurrency: f.reserved_concurrency,
        revision: f.revision,
        created_at: f.created_at.clone(),
        updated_at: f.updated_at.clone(),
        version: f.version,
        network: f.network,
        ephemeral_storage_mb: f.ephemeral_mb,
    }
}

/// Lambda's `EphemeralStorage` range for `/tmp`, MiB.
pub(crate) const EPHEMERAL_MB: std::ops::RangeInclusive<u32> = 512..=10_240;

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
fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), CoreError> {
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

fn validate_tag_key(k: &str) -> Result<(), CoreError> {
    let n = k.chars().count();
    if n == 0 || n > 128 || k.to_ascii_lowercase().starts_with("aws:") {
        return Err(CoreError::InvalidParameter(format!(
            "invalid tag key {k:?}: must be 1 to 128 characters and not start with \"aws:\""
        )));
    }
    Ok(())
}

/// What a qualifier names.
enum Qualifier<'a> {
    Latest,
    Version(u64),
    Alias(&'a str),
}

fn parse_qualifier<'a>(name: &str, qualifier: Option<&'a str>) -> Result<Qualifier<'a>, CoreError> {
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

impl ControlPlane {
    pub async fn create_function(
        &self,
        by: &Principal,
        req: CreateFunction,
    ) -> Result<FunctionInfo, CoreError> {
        self.create_function_tagged(by, req, BTreeMap::new()).await
    }

    /// Creates a function with tags (validated before anything is written).
    pub async fn create_function_tagged(
        &self,
        by: &Principal,
        req: CreateFunction,
        tags: BTreeMap<String, String>,
    ) -> Result<FunctionInfo, CoreError> {
        let target = req.name.clone();
        self.audited(
            by,
            AuditAction::FunctionCreate,
            &target,
            self.create_function_inner(by, req, tags),
        )
        .await
    }

    async fn create_function_inner(
        &self,
        by: &Principal,
        req: CreateFunction,
        tags: BTreeMap<String, String>,
    ) -> Result<FunctionInfo, CoreError> {
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
        let description = req.description.unwrap_or_default();
        validate_description(&description)?;
        let zip = req
            .code_zip_base64
            .map(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        CoreError::InvalidParameter(format!(
                            "code_zip_base64 is not valid base64: {e}"
                        ))
                    })
            })
            .transpose()?;
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
            })?;
            if !tags.is_empty() {
                store.tag_function(&record.name, &tags)?;
            }
            Ok(record)
        })
        .await;
        if uploads && created.is_err() {
            // The package may be stored with nothing referencing it.
            self.code_gc.request();
        }
        let record = created?;
        // A failed lookup of this name may have run before the create; nothing is cached
        // for it, but invalidating keeps the rule simple: every write invalidates.
        self.changed(&record.name, false);
        tracing::info!(function = %record.name, "function created");
        Ok(info(&record))
    }

    pub async fn get_function(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<FunctionInfo, CoreError> {
        self.authorize_on(by, Action::ReadFunction, name)?;
        Ok(info(&*self.function_record(name).await?))
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
    fn changed(&self, name: &FunctionName, retire: bool) {
        self.functions.invalidate(name);
        if retire {
            self.scheduler.retire_where(name, |v| v.is_none());
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
    ) -> Result<FunctionInfo, CoreError> {
        self.authorize_on(by, Action::ReadFunction, name)?;
        Ok(info(&*self.version_record(name, qualifier, false).await?))
    }

    /// Publishes `$LATEST` as an immutable version (or returns the newest version when
    /// nothing changed since it was published). Returns the version and whether it is new.
    pub async fn publish_version(
        &self,
        by: &Principal,
        name: &str,
        description: Option<String>,
    ) -> Result<(FunctionInfo, bool), CoreError> {
        self.publish_version_expecting(by, name, description, Expect::default())
            .await
    }

    /// Like [`Self::publish_version`], if `$LATEST` still is as `expect` says.
    pub async fn publish_version_expecting(
        &self,
        by: &Principal,
        name: &str,
        description: Option<String>,
        expect: Expect,
    ) -> Result<(FunctionInfo, bool), CoreError> {
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
            Ok((info(&v), new))
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
    ) -> Result<(Vec<FunctionInfo>, Option<String>), CoreError> {
        let latest = self.get_function(by, name).await?; // authorizes ReadFunction
        let store = self.store.clone();
        let n = parse_name(name)?;
        let versions = blocking(move || Ok(store.list_versions(&n)?)).await?;
        let all: Vec<FunctionInfo> = std::iter::once(latest)
            .chain(versions.iter().map(info))
            .collect();
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

    async fn delete_version_inner(
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
        self.scheduler.retire_where(&f.name, |v| v == Some(n));
        self.code_gc.request();
        tracing::info!(function = %f.name, version = n, "version deleted");
        Ok(())
    }

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

    /// Every function the key may see.
    pub async fn list_functions(&self, by: &Principal) -> Result<Vec<FunctionInfo>, CoreError> {
        by.authorize(Action::ListFunctions, None)?;
        let store = self.store.clone();
        let all = blocking(move || Ok(store.list_functions()?)).await?;
        Ok(all
            .iter()
            .filter(|f| by.may_see(&f.name))
            .map(info)
            .collect())
    }

    /// One page of the functions the key may see, by name: at most `max` after `marker` (a
    /// name returned as the previous page's next marker), and the marker of the next page if
    /// there is one.
    pub async fn list_functions_page(
        &self,
        by: &Principal,
        marker: Option<String>,
        max: usize,
    ) -> Result<(Vec<FunctionInfo>, Option<String>), CoreError> {
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
        Ok((page.iter().map(info).collect(), next))
    }

    pub async fn update_function(
        &self,
        by: &Principal,
        name: &str,
        req: UpdateFunction,
    ) -> Result<FunctionInfo, CoreError> {
        self.update_function_expecting(by, name, req, Expect::default())
            .await
    }

    /// Like [`Self::update_function`], if the function still is as `expect` says.
    pub async fn update_function_expecting(
        &self,
        by: &Principal,
        name: &str,
        req: UpdateFunction,
        expect: Expect,
    ) -> Result<FunctionInfo, CoreError> {
        self.audited(
            by,
            AuditAction::FunctionUpdate,
            name,
            self.update_function_inner(by, name, req, expect),
        )
        .await
    }

    async fn update_function_inner(
        &self,
        by: &Principal,
        name: &str,
        req: UpdateFunction,
        expect: Expect,
    ) -> Result<FunctionInfo, CoreError> {
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
        let mut update = update;
        let record = blocking(move || {
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
        Ok(info(&record))
    }

    /// Stores a new code package and points the function at it. The package is validated
    /// completely first; on any error the function keeps its previous code.
    pub async fn deploy_code(
        &self,
        by: &Principal,
        name: &str,
        zip: Vec<u8>,
    ) -> Result<FunctionInfo, CoreError> {
        self.deploy_code_expecting(by, name, zip, Expect::default())
            .await
    }

    /// Like [`Self::deploy_code`], if the function still is as `expect` says.
    pub async fn deploy_code_expecting(
        &self,
        by: &Principal,
        name: &str,
        zip: Vec<u8>,
        expect: Expect,
    ) -> Result<FunctionInfo, CoreError> {
        self.audited_with(
            by,
            AuditAction::FunctionDeploy,
            name,
            self.deploy_code_inner(by, name, zip, expect),
            |f| {
                let sha = f.code_sha256.as_deref().unwrap_or_default();
                let short = sha.get(..12).unwrap_or(sha);
                (
                    f.name.clone(),
                    format!("revision {}, code {short}", f.revision),
                )
            },
        )
        .await
    }

    async fn deploy_code_inner(
        &self,
        by: &Principal,
        name: &str,
        zip: Vec<u8>,
        expect: Expect,
    ) -> Result<FunctionInfo, CoreError> {
        let name = self.authorize_on(by, Action::ChangeFunction, name)?;
        let store = self.store.clone();
        let code_store = self.code.clone();
        let n = name.clone();
        let deployed = blocking(move || {
            let current = store
                .get_function(&n)?
                .ok_or_else(|| CoreError::NotFound(format!("function {n} not found")))?;
            let stored = put_code(&store, &code_store, &zip)?;
            check_bootstrap(&code_store, &current.runtime, Some(&stored.code))?;
            // `stored` (its pin) lives until the row is committed.
            Ok(store.set_function_code_if(&n, &stored.code, expect.revision)?)
        })
        .await;
        if deployed.is_ok() {
            // Before the collection: a cached record must not name a collected package.
            self.changed(&name, true);
        }
        // Either the previous package or (after a failure) this one may be unused now.
        self.code_gc.request();
        let record = deployed?;
        tracing::info!(function = %name, revision = record.revision, "code deployed");
        Ok(info(&record))
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

    async fn delete_function_inner(&self, by: &Principal, name: &str) -> Result<(), CoreError> {
        let name = self.authorize_on(by, Action::DeleteFunction, name)?;
        let store = self.store.clone();
        let n = name.clone();
        blocking(move || Ok(store.delete_function(&n)?)).await?;
        self.functions.invalidate(&name);
        self.versions.invalidate_where(|(f, _)| f == &name);
        self.aliases.invalidate_where(|(f, _)| f == &name);
        self.urls.invalidate_where(|(f, _)| f == &name);
        self.policies.invalidate(&name);
        self.scheduler.retire(&name);
        self.metrics.forget(name.as_str());
        self.code_gc.request();
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
    ) -> Result<FunctionInfo, CoreError> {
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
                (f.name.clone(), detail)
            },
        )
        .await
    }

    async fn set_reserved_concurrency_inner(
        &self,
        by: &Principal,
        name: &str,
        reserved: Option<i64>,
    ) -> Result<FunctionInfo, CoreError> {
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
        Ok(info(&record))
    }

    /// Largest code package accepted, in bytes.
    pub fn max_code_bytes(&self) -> u64 {
        self.code.limits().max_zip_bytes
    }
}
