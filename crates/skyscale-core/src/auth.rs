//! Who may do what: the principal a request acts for, the one authorization check every
//! `ControlPlane` operation makes (`Principal::authorize`), checking a key's secret, and the
//! first admin key.
//!
//! | action                                  | admin | developer | invoker |
//! |-----------------------------------------|-------|-----------|---------|
//! | list functions (only those in scope)    | yes   | yes       | no      |
//! | create, read, change, delete a function | yes   | in scope  | no      |
//! | invoke a function                       | yes   | in scope  | in scope|
//! | read account settings                   | yes   | yes       | no      |
//! | read metrics (only those in scope)      | yes   | yes       | no      |
//! | publish, read, delete layers            | yes   | yes       | no      |
//! | manage keys, read the audit log         | yes   | no        | no      |
//!
//! "In scope": the function's name matches one of the key's patterns (a key without
//! patterns covers every function; admin keys never have patterns). A refusal is decided
//! from the role, the patterns and the name alone, before anything is looked up, so it
//! never tells whether the function exists.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use skyscale_store::{ApiKeyRecord, NewApiKey, Store};
use skyscale_types::{ApiKey, FunctionName, FunctionPattern, KeyId, Role};
use subtle::ConstantTimeEq;

use crate::secrets::ServerKey;
use crate::CoreError;

/// Who is calling: the key, its role and the functions it is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The API key that signed or carried the request; `None` for a public function URL.
    pub key_id: Option<KeyId>,
    pub role: Role,
    pub functions: FunctionScope,
}

/// The functions a principal may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionScope {
    All,
    /// Those whose name matches one of the patterns.
    Matching(Arc<[FunctionPattern]>),
}

impl FunctionScope {
    pub fn allows(&self, name: &FunctionName) -> bool {
        match self {
            FunctionScope::All => true,
            FunctionScope::Matching(patterns) => patterns.iter().any(|p| p.matches(name.as_str())),
        }
    }

    /// The patterns as the wire shows them: empty for every function.
    pub fn patterns(&self) -> Vec<String> {
        match self {
            FunctionScope::All => Vec::new(),
            FunctionScope::Matching(p) => p.iter().map(|p| p.as_str().to_owned()).collect(),
        }
    }
}

/// What a request wants to do; `Principal::authorize` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// List functions: the list holds only those in the principal's scope.
    ListFunctions,
    CreateFunction,
    /// Read a function's configuration, versions, aliases, tags, URL settings, and its
    /// invocation records and logs.
    ReadFunction,
    /// Change a function's code, configuration, concurrency, versions, aliases, URLs, tags.
    ChangeFunction,
    DeleteFunction,
    Invoke,
    ReadAccount,
    /// Read the metrics: the per-function series hold only those in the principal's scope.
    ReadMetrics,
    ManageKeys,
    ReadAudit,
    /// Read the cluster's membership (workers, API nodes).
    ReadCluster,
    /// Publish or delete layer versions (account-wide, not scoped to functions).
    ManageLayers,
    /// Read layers and their versions.
    ReadLayers,
}

impl Action {
    /// The permission table (see the module's documentation).
    fn allowed_for(self, role: Role) -> bool {
        match (role, self) {
            (Role::Admin, _) => true,
            (Role::Developer, Action::ManageKeys | Action::ReadAudit | Action::ReadCluster) => {
                false
            }
            (Role::Developer, _) => true,
            (Role::Invoker, Action::Invoke) => true,
            (Role::Invoker, _) => false,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Action::ListFunctions => "list functions",
            Action::CreateFunction => "create function",
            Action::ReadFunction => "read function",
            Action::ChangeFunction => "change function",
            Action::DeleteFunction => "delete function",
            Action::Invoke => "invoke function",
            Action::ReadAccount => "read the account settings",
            Action::ReadMetrics => "read metrics",
            Action::ManageKeys => "manage API keys",
            Action::ReadAudit => "read the audit log",
            Action::ReadCluster => "read the cluster status",
            Action::ManageLayers => "publish or delete layers",
            Action::ReadLayers => "read layers",
        }
    }
}

impl Principal {
    /// The caller of a function URL whose AuthType is `NONE`: no key, and may invoke that
    /// URL's function and nothing else.
    pub fn function_url(function: &FunctionName) -> Self {
        Self {
            key_id: None,
            role: Role::Invoker,
            functions: FunctionScope::Matching(Arc::new([FunctionPattern::exact(function)])),
        }
    }

    /// The one authorization check: may this principal do `action` (on `function`, for
    /// actions on one function)? Decided from the role, the patterns and the name only.
    pub fn authorize(
        &self,
        action: Action,
        function: Option<&FunctionName>,
    ) -> Result<(), CoreError> {
        if !action.allowed_for(self.role) {
            // "create function" → "create functions"; the others read as they are.
            let what = match action {
                Action::CreateFunction
                | Action::ReadFunction
                | Action::ChangeFunction
                | Action::DeleteFunction
                | Action::Invoke => format!("{}s", action.describe()),
                _ => action.describe().to_owned(),
            };
            let why = match self.role {
                Role::Invoker => ": an invoker key may only invoke functions",
                Role::Developer => ": only an admin key may",
                Role::Admin => "",
            };
            return Err(CoreError::Forbidden(format!(
                "{} may not {what}{why}",
                self.label()
            )));
        }
        match function {
            Some(f) if !self.functions.allows(f) => Err(CoreError::Forbidden(format!(
                "{} may not {} {f}: it is limited to functions matching {}",
                self.label(),
                action.describe(),
                self.functions.patterns().join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// Whether a function belongs in this principal's lists.
    pub fn may_see(&self, function: &FunctionName) -> bool {
        self.functions.allows(function)
    }

    fn label(&self) -> String {
        match &self.key_id {
            Some(id) => format!("key {id} ({})", self.role),
            None => "a function URL".to_owned(),
        }
    }
}

/// The principal a stored key stands for, or why it cannot be used.
pub(crate) fn principal(r: &ApiKeyRecord) -> Result<Principal, String> {
    let role = Role::parse(&r.role).map_err(|e| e.to_string())?;
    let functions = match &r.functions {
        None => FunctionScope::All,
        Some(_) if role == Role::Admin => {
            return Err("an admin key cannot be limited to functions".into())
        }
        Some(p) => FunctionScope::Matching(
            p.iter()
                .map(|p| FunctionPattern::parse(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?
                .into(),
        ),
    };
    Ok(Principal {
        key_id: Some(r.id.clone()),
        role,
        functions,
    })
}

/// Where the first admin key came from, for the start-up message.
#[derive(Debug)]
pub enum AdminKeySource {
    /// `SKYSCALE_ADMIN_KEY` was set; the key is registered if it was not already.
    Environment,
    /// Keys already existed; nothing was generated.
    Existing,
    /// A new key was generated and written to this file (mode 0600).
    Generated {
        key: ApiKey,
        path: std::path::PathBuf,
    },
}

pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Makes sure an admin key exists: registers `from_env` if given, otherwise generates one
/// on the first start and writes it once, mode 0600, to `data_dir/admin-key`. Its secret is
/// sealed with `server_key` (the one the control plane will open it with).
pub fn ensure_admin_key(
    store: &Store,
    data_dir: &Path,
    from_env: Option<&ApiKey>,
    server_key: &ServerKey,
) -> Result<AdminKeySource, CoreError> {
    if let Some(key) = from_env {
        match store.get_api_key(&key.id)? {
            Some(rec) if rec.secret_sha256 == hash_secret(key.secret()) => {
                // Registered before secrets were sealed: the environment proves the
                // secret, so it can sign SigV4 requests from now on.
                if rec.secret_sealed.is_none() {
                    store.set_api_key_sealed_secret(
                        &key.id,
                        &server_key.seal(&key.id, key.secret())?,
                    )?;
                }
                // A revocation outlives the variable: the key stays refused.
                if rec.revoked_at.is_some() {
                    tracing::warn!(key = %key.id, "SKYSCALE_ADMIN_KEY names a revoked key: it is refused");
                }
            }
            Some(_) => {
                return Err(CoreError::InvalidParameter(format!(
                    "SKYSCALE_ADMIN_KEY: key id {} is already registered with another secret",
                    key.id
                )))
            }
            None => {
                store.insert_api_key(&NewApiKey {
                    id: &key.id,
                    secret_sha256: &hash_secret(key.secret()),
                    secret_sealed: &server_key.seal(&key.id, key.secret())?,
                    role: Role::Admin.as_str(),
                    functions: None,
                    description: "from SKYSCALE_ADMIN_KEY",
                })?;
            }
        }
        return Ok(AdminKeySource::Environment);
    }
    if store.count_active_api_keys()? > 0 {
        return Ok(AdminKeySource::Existing);
    }
    let key = ApiKey::generate();
    let path = data_dir.join("admin-key");
    write_secret_file(&path, &key.token())
        .map_err(|e| CoreError::internal_from(format!("writing {}", path.display()), e))?;
    store.insert_api_key(&NewApiKey {
        id: &key.id,
        secret_sha256: &hash_secret(key.secret()),
        secret_sealed: &server_key.seal(&key.id, key.secret())?,
        role: Role::Admin.as_str(),
        functions: None,
        description: "generated on first start",
    })?;
    Ok(AdminKeySource::Generated { key, path })
}

fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// The refusal of a bearer token, the same for an unknown id, a wrong secret, a revoked key
/// and a malformed token.
pub(crate) fn invalid_key() -> CoreError {
    CoreError::Unauthorized("invalid API key".into())
}

/// Compared against when the key id is unknown, so that case hashes and compares too.
const DUMMY_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Checks a presented key against its stored record (`None`: unknown id) and the principal
/// the record stands for. Unknown ids, wrong secrets and revoked keys get the same answer
/// after the same work (one SHA-256 and a constant-time comparison), so neither the answer
/// nor its timing tells whether an id exists.
pub(crate) fn verify(
    key: &ApiKey,
    record: Option<&ApiKeyRecord>,
    principal: Option<&Principal>,
) -> Result<Principal, CoreError> {
    let presented = hash_secret(key.secret());
    let stored = record.map_or(DUMMY_SHA256, |r| r.secret_sha256.as_str());
    let matches: bool = presented.as_bytes().ct_eq(stored.as_bytes()).into();
    match (record, principal) {
        (Some(r), Some(p)) if matches && r.revoked_at.is_none() => Ok(p.clone()),
        _ => Err(invalid_key()),
    }
}

/// Checks a bearer token `<id>.<secret>` against the store.
pub fn authenticate(store: &Store, token: &str) -> Result<Principal, CoreError> {
    let key = ApiKey::parse(token)?;
    let record = store.get_api_key(&key.id)?;
    let p = record.as_ref().and_then(|r| principal(r).ok());
    verify(&key, record.as_ref(), p.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_written_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let AdminKeySource::Generated { key, path } = ensure_admin_key(
            &store,
            dir.path(),
            None,
            &ServerKey::load_or_create(dir.path()).unwrap(),
        )
        .unwrap() else {
            panic!("expected a generated key");
        };
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), key.token());
        // The secret is stored sealed with the server key (for SigV4), never in the clear.
        let server_key = ServerKey::load_or_create(dir.path()).unwrap();
        let sealed = store.get_api_key(&key.id).unwrap().unwrap().secret_sealed;
        let sealed = sealed.expect("a sealed secret");
        assert!(!sealed
            .windows(key.secret().len())
            .any(|w| w == key.secret().as_bytes()));
        assert_eq!(server_key.open(&key.id, &sealed).unwrap(), key.secret());
        assert!(matches!(
            ensure_admin_key(
                &store,
                dir.path(),
                None,
                &ServerKey::load_or_create(dir.path()).unwrap()
            )
            .unwrap(),
            AdminKeySource::Existing
        ));
        assert_eq!(
            authenticate(&store, &key.token()).unwrap().key_id,
            Some(key.id.clone())
        );
        let wrong = format!("{}.{}", key.id, "x".repeat(40));
        assert!(matches!(
            authenticate(&store, &wrong),
            Err(CoreError::Unauthorized(_))
        ));
        let unknown = ApiKey::generate();
        assert!(matches!(
            authenticate(&store, &unknown.token()),
            Err(CoreError::Unauthorized(_))
        ));
    }

    fn key(role: Role, patterns: &[&str]) -> Principal {
        Principal {
            key_id: KeyId::parse("SKYTEST1").ok(),
            role,
            functions: if patterns.is_empty() {
                FunctionScope::All
            } else {
                FunctionScope::Matching(
                    patterns
                        .iter()
                        .map(|p| FunctionPattern::parse(p).unwrap())
                        .collect(),
                )
            },
        }
    }

    fn allowed(p: &Principal, action: Action, function: Option<&str>) -> bool {
        let f = function.map(|f| FunctionName::parse(f).unwrap());
        match p.authorize(action, f.as_ref()) {
            Ok(()) => true,
            Err(CoreError::Forbidden(_)) => false,
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn the_permission_table() {
        use Action::*;
        let admin = key(Role::Admin, &[]);
        let dev = key(Role::Developer, &["team-a-*"]);
        let invoker = key(Role::Invoker, &["team-a-*"]);
        let a = Some("team-a-x");
        let b = Some("team-b-y");
        for action in [
            ListFunctions,
            CreateFunction,
            ReadFunction,
            ChangeFunction,
            DeleteFunction,
            Invoke,
            ReadAccount,
            ReadMetrics,
            ManageKeys,
            ReadAudit,
            ReadCluster,
        ] {
            assert!(allowed(&admin, action, b), "admin {action:?}");
            let on_function = !matches!(
                action,
                ListFunctions | ReadAccount | ReadMetrics | ManageKeys | ReadAudit | ReadCluster
            );
            let dev_may = !matches!(action, ManageKeys | ReadAudit | ReadCluster);
            assert_eq!(
                allowed(&dev, action, on_function.then_some("team-a-x")),
                dev_may,
                "developer {action:?}"
            );
            if on_function {
                assert!(
                    !allowed(&dev, action, b),
                    "developer {action:?} outside its patterns"
                );
            }
            assert_eq!(
                allowed(&invoker, action, a.filter(|_| on_function)),
                action == Invoke,
                "invoker {action:?}"
            );
        }
        assert!(!allowed(&invoker, Invoke, b));
        // A refusal says what was refused and never whether the function exists.
        let msg = invoker
            .authorize(
                ChangeFunction,
                FunctionName::parse("team-b-y").ok().as_ref(),
            )
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "key SKYTEST1 (invoker) may not change functions: an invoker key may only invoke functions");
        let msg = dev
            .authorize(Invoke, FunctionName::parse("team-b-y").ok().as_ref())
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "key SKYTEST1 (developer) may not invoke function team-b-y: it is limited to functions matching team-a-*");
        // A public function URL invokes its own function only.
        let url = Principal::function_url(&FunctionName::parse("web").unwrap());
        assert!(allowed(&url, Invoke, Some("web")));
        assert!(!allowed(&url, Invoke, Some("web2")));
        assert!(!allowed(&url, ReadFunction, Some("web")));
    }

    #[test]
    fn stored_keys_become_principals() {
        let rec = |role: &str, functions: Option<Vec<String>>| ApiKeyRecord {
            id: KeyId::parse("SKYTEST1").unwrap(),
            secret_sha256: String::new(),
            secret_sealed: None,
            role: role.into(),
            functions,
            description: String::new(),
            created_at: String::new(),
            revoked_at: None,
        };
        assert_eq!(principal(&rec("admin", None)).unwrap().role, Role::Admin);
        assert!(principal(&rec("admin", Some(vec!["x".into()]))).is_err());
        assert!(principal(&rec("superuser", None)).is_err());
        assert!(principal(&rec("invoker", Some(vec!["a/b".into()]))).is_err());
        let p = principal(&rec("invoker", Some(vec!["a-*".into()]))).unwrap();
        assert_eq!(p.functions.patterns(), ["a-*"]);
    }
}
