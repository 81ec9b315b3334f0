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

use crate::runtimes::PROVIDED_BOOTSTRAP;
use crate::{blocking, ControlPlane, CoreError, Principal};

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
    }
}

impl ControlPlane {
    pub async fn create_function(
        &self,
        _by: &Principal,
        req: CreateFunction,
    ) -> Result<FunctionInfo, CoreError> {
        let name = parse_name(&req.name)?;
        let runtime = self.runtimes.resolve(&req.runtime)?;
        let handler = Handler::parse(req.handler.as_deref().unwrap_or(Handler::DEFAULT))?;
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
        let record = blocking(move || {
            if store.get_function(&name)?.is_some() {
                return Err(CoreError::Conflict(format!(
                    "function {name} already exists"
                )));
            }
            // The package is stored before the row that points at it: a crash in between
            // leaves an unreferenced package, never a function whose code is missing.
            let code = zip.map(|z| code_store.put_zip(&z)).transpose()?;
            check_bootstrap(&code_store, &runtime, code.as_ref())?;
            Ok(store.create_function(&NewFunction {
                name,
                runtime,
                handler,
                memory,
                timeout,
                environment: req.environment,
                description,
                code,
            })?)
        })
        .await?;
        // A failed lookup of this name may have run before the create; nothing is cached
        // for it, but invalidating keeps the rule simple: every write invalidates.
        self.changed(&record.name, false);
        tracing::info!(function = %record.name, "function created");
        Ok(info(&record))
    }

    pub async fn get_function(
        &self,
        _by: &Principal,
        name: &str,
    ) -> Result<FunctionInfo, CoreError> {
        Ok(info(&*self.function_record(name).await?))
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

    /// After a write of a function's row: drop the cached row and its idle sandboxes when
    /// what runs changed.
    fn changed(&self, name: &FunctionName, retire: bool) {
        self.functions.invalidate(name);
        if retire {
            self.scheduler.retire(name);
        }
    }

    pub async fn list_functions(&self, _by: &Principal) -> Result<Vec<FunctionInfo>, CoreError> {
        let store = self.store.clone();
        let all = blocking(move || Ok(store.list_functions()?)).await?;
        Ok(all.iter().map(info).collect())
    }

    /// One page of functions by name: at most `max` after `marker` (a name returned as the
    /// previous page's next marker), and the marker of the next page if there is one.
    pub async fn list_functions_page(
        &self,
        _by: &Principal,
        marker: Option<String>,
        max: usize,
    ) -> Result<(Vec<FunctionInfo>, Option<String>), CoreError> {
        let max = max.max(1);
        let store = self.store.clone();
        let mut page =
            blocking(move || Ok(store.list_functions_after(marker.as_deref(), max + 1)?)).await?;
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
        _by: &Principal,
        name: &str,
        req: UpdateFunction,
    ) -> Result<FunctionInfo, CoreError> {
        let name = parse_name(name)?;
        let update = FunctionUpdate {
            runtime: req
                .runtime
                .as_deref()
                .map(|r| self.runtimes.resolve(r))
                .transpose()?,
            handler: req.handler.as_deref().map(Handler::parse).transpose()?,
            memory: req.memory_mb.map(MemoryMb::new).transpose()?,
            timeout: req.timeout_s.map(TimeoutSecs::new).transpose()?,
            environment: req.environment,
            description: req.description,
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
        let record = blocking(move || {
            if let Some(runtime) = &update.runtime {
                let current = store
                    .get_function(&n)?
                    .ok_or_else(|| CoreError::NotFound(format!("function {n} not found")))?;
                check_bootstrap(&code_store, runtime, current.code.as_ref())?;
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
        _by: &Principal,
        name: &str,
        zip: Vec<u8>,
    ) -> Result<FunctionInfo, CoreError> {
        let name = parse_name(name)?;
        let store = self.store.clone();
        let code_store = self.code.clone();
        let n = name.clone();
        let record = blocking(move || {
            let current = store
                .get_function(&n)?
                .ok_or_else(|| CoreError::NotFound(format!("function {n} not found")))?;
            let code = code_store.put_zip(&zip)?;
            check_bootstrap(&code_store, &current.runtime, Some(&code))?;
            Ok(store.set_function_code(&n, &code)?)
        })
        .await?;
        self.changed(&name, true);
        tracing::info!(function = %name, revision = record.revision, "code deployed");
        Ok(info(&record))
    }

    pub async fn delete_function(&self, _by: &Principal, name: &str) -> Result<(), CoreError> {
        let name = parse_name(name)?;
        let store = self.store.clone();
        let n = name.clone();
        blocking(move || Ok(store.delete_function(&n)?)).await?;
        self.changed(&name, true);
        tracing::info!(function = %name, "function deleted");
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) the function's reserved concurrency: the most
    /// invocations it may run at once; 0 disables it. Warm sandboxes stay.
    pub async fn set_reserved_concurrency(
        &self,
        _by: &Principal,
        name: &str,
        reserved: Option<i64>,
    ) -> Result<FunctionInfo, CoreError> {
        let name = parse_name(name)?;
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
