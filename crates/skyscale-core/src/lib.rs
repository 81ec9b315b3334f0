//! The control plane's logic, independent of HTTP: the function service, authentication,
//! and the invoke path (warm pool, cold starts, the agent conversation).
//!
//! `ControlPlane` is the one object the HTTP layer talks to. It owns the store, the code
//! packages and the sandbox driver; nothing here knows about axum or SQL.

mod account;
mod aliases;
mod auth;
mod cache;
mod error;
mod functions;
mod invoke;
pub mod logs;
mod runtimes;
mod scheduler;
mod secrets;
mod session;
mod urls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use skyscale_sandbox::Driver;
use skyscale_store::{ApiKeyRecord, CodeLimits, CodeStore, FunctionRecord, Store};
use skyscale_types::{ApiKey, FunctionName, KeyId};

pub use account::AccountSettings;
pub use aliases::AliasInfo;
pub use auth::{authenticate, ensure_admin_key, AdminKeySource, Principal, Role};
pub use error::{CoreError, Throttle};
pub use invoke::{InvokeOptions, InvokeOutput, InvokeTiming, MAX_SYNC_PAYLOAD};
pub use runtimes::{Runtimes, PYTHON_BOOTSTRAP};
pub use scheduler::{Limits, SandboxCounts};
pub use secrets::{ServerKey, SERVER_KEY_FILE};
pub use urls::{UrlConfig, INVOKE_MODE_BUFFERED};

use cache::Cache;
use scheduler::Scheduler;

/// Settings the control plane's logic needs (the daemon builds them from the environment).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Region reported to functions (`AWS_REGION`) and used in ARNs.
    pub region: String,
    /// Account id used in ARNs.
    pub account_id: String,
    /// Size of each sandbox's `/tmp`, MiB.
    pub tmp_mb: u32,
    /// Most processes/threads per sandbox.
    pub pids_limit: i64,
    /// How long a runtime may take to initialise (import the handler).
    pub init_timeout: Duration,
    /// How long a new sandbox's agent may take to say hello.
    pub boot_timeout: Duration,
    /// Pool sizes, host caps, keep-alive.
    pub limits: Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            tmp_mb: 512,
            pids_limit: 1024,
            init_timeout: Duration::from_secs(10),
            boot_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

/// The control plane: every API operation is a method here.
pub struct ControlPlane {
    store: Arc<Store>,
    code: CodeStore,
    scheduler: Arc<Scheduler>,
    /// API keys by id, read on every request.
    keys: Cache<KeyId, ApiKeyRecord>,
    /// Function records by name, read on every invocation.
    functions: Cache<FunctionName, FunctionRecord>,
    /// Published versions by function and number (immutable; dropped on delete).
    versions: Cache<(FunctionName, u64), FunctionRecord>,
    /// Aliases by function and name (invalidated on every alias write).
    aliases: Cache<(FunctionName, String), skyscale_store::AliasRecord>,
    /// Function URL settings by function and alias (`None`: `$LATEST`), read per request.
    urls: Cache<(FunctionName, Option<String>), skyscale_store::UrlConfigRecord>,
    runtimes: Runtimes,
    settings: Settings,
    /// Seals and opens API key secrets (SigV4 needs them).
    server_key: ServerKey,
}

impl ControlPlane {
    /// Builds the control plane on an open store and starts its scheduler (which boots the
    /// generic warm pool in the background). `data_dir` holds code packages (`code/`), the
    /// per-sandbox task directories (`sandboxes/task/`) and the server key (created if
    /// missing). Must run inside a tokio runtime.
    pub fn start(
        store: Arc<Store>,
        data_dir: &Path,
        driver: Arc<dyn Driver>,
        runtimes: Runtimes,
        settings: Settings,
    ) -> Result<Self, CoreError> {
        let code_dir = data_dir.join("code");
        let code = CodeStore::open(&code_dir, CodeLimits::default())
            .map_err(|e| CoreError::Internal(format!("opening {}: {e}", code_dir.display())))?;
        let server_key = ServerKey::load_or_create(data_dir)?;
        let task_root = data_dir.join("sandboxes").join("task");
        let scheduler = Scheduler::start(
            driver,
            settings.limits.clone(),
            task_root.clone(),
            settings.tmp_mb,
            settings.pids_limit,
            settings.boot_timeout,
        )
        .map_err(|e| CoreError::Internal(format!("preparing {}: {e}", task_root.display())))?;
        Ok(Self {
            store,
            code,
            scheduler,
            keys: Cache::new(),
            functions: Cache::new(),
            versions: Cache::new(),
            aliases: Cache::new(),
            urls: Cache::new(),
            runtimes,
            settings,
            server_key,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn driver_name(&self) -> &'static str {
        self.scheduler.driver().name()
    }

    pub fn runtimes(&self) -> &Runtimes {
        &self.runtimes
    }

    /// Checks a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, CoreError> {
        let key = ApiKey::parse(token)?;
        let record = self.key_record(&key.id).await?;
        auth::verify(&key, record.as_deref())
    }

    /// Checks an AWS SigV4-signed request (`authorization`: its `Authorization` header) for
    /// the `lambda` service at `now`. The key id is the access key id; its secret is
    /// opened from the store with the server key for this check only.
    pub async fn authenticate_sigv4(
        &self,
        req: &skyscale_sigv4::Request<'_>,
        authorization: Option<&str>,
        now: SystemTime,
    ) -> Result<Principal, CoreError> {
        use skyscale_sigv4::{Authorization, SigV4Error};
        let auth = Authorization::parse(authorization.ok_or(SigV4Error::Missing)?)?;
        let id = KeyId::parse(&auth.key_id).map_err(|_| SigV4Error::UnknownKey)?;
        let record = self.key_record(&id).await?;
        let Some(record) = record.filter(|r| r.revoked_at.is_none()) else {
            return Err(SigV4Error::UnknownKey.into());
        };
        let principal = auth::principal(&record)?;
        let Some(sealed) = &record.secret_sealed else {
            return Err(CoreError::Unauthorized(format!(
                "key {id} was created before SigV4 support and cannot sign AWS requests; \
                 create a new key (its bearer token still works on /v1)"
            )));
        };
        let secret = self.server_key.open(&id, sealed)?;
        skyscale_sigv4::verify(req, &auth, &secret, "lambda", now)?;
        Ok(principal)
    }

    /// An API key's row, from the cache or the store.
    async fn key_record(&self, id: &KeyId) -> Result<Option<Arc<ApiKeyRecord>>, CoreError> {
        if let Some(r) = self.keys.get(id) {
            return Ok(Some(r));
        }
        let loaded_at = self.keys.generation();
        let store = self.store.clone();
        let key_id = id.clone();
        let loaded = blocking(move || Ok(store.get_api_key(&key_id)?))
            .await?
            .map(Arc::new);
        if let Some(r) = &loaded {
            self.keys.insert(loaded_at, id.clone(), r.clone());
        }
        Ok(loaded)
    }

    /// How many sandboxes exist and how many invocations run.
    pub fn sandbox_counts(&self) -> SandboxCounts {
        self.scheduler.counts()
    }

    /// Stops handing out sandboxes, waits up to `grace` for in-flight invocations, then
    /// destroys every sandbox.
    pub async fn shutdown(&self, grace: Duration) {
        self.scheduler.shutdown(grace).await;
    }
}

/// Runs blocking store or file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoreError::Internal(format!("blocking task failed: {e}")))?
}

/// Writes the agent binary and the Python bootstrap into `dir`, which every sandbox binds
/// read-only at `/var/runtime`. Files are replaced by rename, so a sandbox never sees a
/// half-written one.
pub fn install_runtime_dir(dir: &Path, agent_binary: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let put = |name: &str, write: &dyn Fn(&Path) -> std::io::Result<()>, mode: u32| {
        let tmp = dir.join(format!(".{name}.tmp"));
        write(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, dir.join(name))
    };
    put(
        "skyscale-agent",
        &|p| std::fs::copy(agent_binary, p).map(drop),
        0o755,
    )?;
    put(
        "bootstrap.py",
        &|p| std::fs::write(p, PYTHON_BOOTSTRAP),
        0o644,
    )?;
    Ok(dir.to_path_buf())
}
