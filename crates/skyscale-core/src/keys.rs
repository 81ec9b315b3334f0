//! API keys: the in-memory table every request is checked against, and key management
//! (create, list, revoke; admin keys only).
//!
//! The whole `api_keys` table is held in memory and replaced after every key write, so a
//! known and an unknown key id cost the same lookup (a cache that missed only for unknown
//! ids would tell them apart by timing), and a revocation is seen by the very next request.
//! Keys are few (people and services, not requests), so holding them all is cheap.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use skyscale_store::{ApiKeyRecord, NewApiKey, Revocation, Store};
use skyscale_types::{ApiKey, FunctionPattern, KeyId, Role};

use crate::audit::AuditAction;
use crate::auth::{self, Action, Principal};
use crate::{blocking, ControlPlane, CoreError};

const MAX_DESCRIPTION: usize = 256;

/// One stored key and the principal it stands for (`None`: a row this build cannot use,
/// e.g. an unknown role; it is refused like a wrong secret).
pub(crate) struct KeyEntry {
    pub record: ApiKeyRecord,
    pub principal: Option<Principal>,
}

/// Every key by id.
pub(crate) struct KeyTable {
    keys: HashMap<KeyId, KeyEntry>,
}

impl KeyTable {
    pub fn load(store: &Store) -> Result<Self, CoreError> {
        let mut keys = HashMap::new();
        for record in store.list_api_keys()? {
            let principal = match auth::principal(&record) {
                Ok(p) => Some(p),
                Err(why) => {
                    tracing::warn!(key = %record.id, %why, "API key cannot be used");
                    None
                }
            };
            keys.insert(record.id.clone(), KeyEntry { record, principal });
        }
        Ok(Self { keys })
    }

    pub fn get(&self, id: &KeyId) -> Option<&KeyEntry> {
        self.keys.get(id)
    }
}

/// The table behind a lock that is held only to clone or swap the `Arc`.
pub(crate) struct Keys {
    table: RwLock<Arc<KeyTable>>,
    /// Serialises key writes with their reload, so an older reload never replaces a newer one.
    pub(crate) writes: tokio::sync::Mutex<()>,
}

impl Keys {
    pub fn new(table: KeyTable) -> Self {
        Self {
            table: RwLock::new(Arc::new(table)),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    pub fn snapshot(&self) -> Arc<KeyTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the key can still be used: it exists, is not revoked and has a usable role.
    /// Long-lived responses ask this while they run, so a revocation ends them too.
    pub fn is_live(&self, id: &KeyId) -> bool {
        self.snapshot()
            .get(id)
            .is_some_and(|e| e.principal.is_some() && e.record.revoked_at.is_none())
    }

    fn replace(&self, table: KeyTable) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }
}

/// A new key as a caller asks for it: raw values the core checks.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    /// `admin`, `developer` or `invoker`.
    pub role: String,
    /// Patterns of the function names the key may use; empty: every function.
    pub functions: Vec<String>,
    pub description: Option<String>,
}

/// A key as the core shows it: never its secret, nor anything derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyView {
    pub id: KeyId,
    pub role: Role,
    /// Patterns of the function names the key may use; empty: every function.
    pub functions: Vec<String>,
    pub description: String,
    pub created_at: String,
    /// `None` while the key is active.
    pub revoked_at: Option<String>,
}

/// A key just created: the only time its token (`<id>.<secret>`) exists outside the caller.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: KeyView,
    pub token: String,
}

fn key_info(r: &ApiKeyRecord) -> KeyView {
    KeyView {
        id: r.id.clone(),
        // A row with an unknown role is listed as an invoker (the least privilege); it
        // cannot authenticate at all.
        role: Role::parse(&r.role).unwrap_or(Role::Invoker),
        functions: r.functions.clone().unwrap_or_default(),
        description: r.description.clone(),
        created_at: r.created_at.clone(),
        revoked_at: r.revoked_at.clone(),
    }
}

/// A new key's role and patterns, checked: patterns are valid, at most
/// `FunctionPattern::MAX_PER_KEY`, and an admin key has none (it manages keys, so a
/// limit would not hold).
fn parse_new_key(req: &KeySpec) -> Result<(Role, Option<Vec<String>>), CoreError> {
    let role = Role::parse(&req.role)?;
    if req.functions.is_empty() {
        return Ok((role, None));
    }
    if role == Role::Admin {
        return Err(CoreError::InvalidParameter(
            "an admin key cannot be limited to functions: it manages keys, so it could \
             create an unlimited one"
                .into(),
        ));
    }
    if req.functions.len() > FunctionPattern::MAX_PER_KEY {
        return Err(CoreError::InvalidParameter(format!(
            "{} function patterns given: a key may have at most {}",
            req.functions.len(),
            FunctionPattern::MAX_PER_KEY
        )));
    }
    let mut patterns: Vec<String> = Vec::new();
    for p in &req.functions {
        let p = FunctionPattern::parse(p)?;
        if !patterns.iter().any(|q| q == p.as_str()) {
            patterns.push(p.as_str().to_owned());
        }
    }
    Ok((role, Some(patterns)))
}

impl ControlPlane {
    /// Re-reads every key after a write (call with `keys.writes` held).
    pub(crate) async fn reload_keys(&self) -> Result<(), CoreError> {
        let store = self.store.clone();
        let table = blocking(move || KeyTable::load(&store)).await?;
        self.keys.replace(table);
        Ok(())
    }

    /// Creates a key; its secret is in the answer and nowhere else (the store keeps its
    /// hash, and the secret sealed with the server key for SigV4).
    pub async fn create_key(&self, by: &Principal, req: KeySpec) -> Result<NewKey, CoreError> {
        self.audited_with(
            by,
            AuditAction::KeyCreate,
            "-",
            async {
                by.authorize(Action::ManageKeys, None)?;
                let (role, functions) = parse_new_key(&req)?;
                let description = req.description.unwrap_or_default();
                if description.chars().count() > MAX_DESCRIPTION {
                    return Err(CoreError::InvalidParameter(format!(
                        "the description is longer than {MAX_DESCRIPTION} characters"
                    )));
                }
                let key = ApiKey::generate();
                let sealed = self.server_key.seal(&key.id, key.secret())?;
                let sha = auth::hash_secret(key.secret());
                let _writing = self.keys.writes.lock().await;
                let store = self.store.clone();
                let id = key.id.clone();
                let record = blocking(move || {
                    Ok(store.insert_api_key(&NewApiKey {
                        id: &id,
                        secret_sha256: &sha,
                        secret_sealed: &sealed,
                        role: role.as_str(),
                        functions: functions.as_deref(),
                        description: &description,
                    })?)
                })
                .await?;
                self.reload_keys().await?;
                tracing::info!(key = %record.id, role = %role, "API key created");
                Ok(NewKey {
                    key: key_info(&record),
                    token: key.token(),
                })
            },
            |NewKey { key: k, .. }| {
                let functions = if k.functions.is_empty() {
                    "all functions".to_owned()
                } else {
                    format!("functions {}", k.functions.join(", "))
                };
                (k.id.to_string(), format!("role {}, {functions}", k.role))
            },
        )
        .await
    }

    /// Every key, revoked ones included, without secrets.
    pub async fn list_keys(&self, by: &Principal) -> Result<Vec<KeyView>, CoreError> {
        by.authorize(Action::ManageKeys, None)?;
        let store = self.store.clone();
        let keys = blocking(move || Ok(store.list_api_keys()?)).await?;
        Ok(keys.iter().map(key_info).collect())
    }

    /// Revokes a key: the next request with it is refused. The last active admin key cannot
    /// be revoked (409). Revoking a revoked key changes nothing.
    pub async fn revoke_key(&self, by: &Principal, id: &str) -> Result<KeyView, CoreError> {
        self.audited(by, AuditAction::KeyRevoke, id, async {
            by.authorize(Action::ManageKeys, None)?;
            let not_found = || CoreError::NotFound(format!("key {id} not found"));
            let key_id = KeyId::parse(id).map_err(|_| not_found())?;
            let _writing = self.keys.writes.lock().await;
            let store = self.store.clone();
            let k = key_id.clone();
            let outcome = blocking(move || Ok(store.revoke_api_key(&k)?)).await?;
            match outcome {
                Revocation::Revoked(r) => {
                    self.reload_keys().await?;
                    tracing::info!(key = %key_id, "API key revoked");
                    Ok(key_info(&r))
                }
                Revocation::AlreadyRevoked(r) => Ok(key_info(&r)),
                Revocation::NotFound => Err(not_found()),
                Revocation::LastAdmin => Err(CoreError::Conflict(format!(
                    "key {key_id} is the last active admin key and cannot be revoked: \
                     create another admin key first"
                ))),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(role: &str, functions: &[&str]) -> KeySpec {
        KeySpec {
            role: role.into(),
            functions: functions.iter().map(|s| s.to_string()).collect(),
            description: None,
        }
    }

    #[test]
    fn new_keys_are_checked() {
        assert_eq!(
            parse_new_key(&req("developer", &["team-a-*", "team-a-*", "x"])).ok(),
            Some((
                Role::Developer,
                Some(vec!["team-a-*".to_owned(), "x".to_owned()])
            ))
        );
        assert_eq!(
            parse_new_key(&req("invoker", &[])).ok(),
            Some((Role::Invoker, None))
        );
        assert!(parse_new_key(&req("admin", &["x"])).is_err());
        assert!(parse_new_key(&req("root", &[])).is_err());
        assert!(parse_new_key(&req("developer", &["a/b"])).is_err());
        let many: Vec<String> = (0..51).map(|i| format!("f{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(parse_new_key(&req("developer", &many)).is_err());
    }
}
