//! API keys: the hash of each secret (bearer check), the secret sealed by the server key
//! (SigV4), a role and the function patterns the key is limited to. Never the secret itself.

use skyscale_types::KeyId;

use crate::db::{Store, StoreError};
use crate::now_rfc3339;
use crate::sql::{args, Db, Row};

/// The role whose last active key cannot be revoked.
const ADMIN_ROLE: &str = "admin";

const COLUMNS: &str =
    "id, secret_sha256, role, description, created_at, revoked_at, secret_sealed, functions";

/// An API key as stored: the hash of its secret, never the secret in plain text. The role
/// and patterns are kept as written; the control plane parses (and refuses) them.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub secret_sha256: String,
    /// The secret sealed with the server key (opaque bytes to the store), for SigV4;
    /// `None` for keys created before SigV4 support.
    pub secret_sealed: Option<Vec<u8>>,
    pub role: String,
    /// Patterns of the function names the key may use; `None`: every function.
    pub functions: Option<Vec<String>>,
    pub description: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Everything needed to store a new key.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub id: &'a KeyId,
    pub secret_sha256: &'a str,
    pub secret_sealed: &'a [u8],
    pub role: &'a str,
    /// `None`: every function.
    pub functions: Option<&'a [String]>,
    pub description: &'a str,
}

/// What revoking a key did.
#[derive(Debug, Clone, PartialEq)]
pub enum Revocation {
    /// The key is revoked from now on (the row as it is now).
    Revoked(ApiKeyRecord),
    /// It was revoked before; nothing changed.
    AlreadyRevoked(ApiKeyRecord),
    /// No key with that id.
    NotFound,
    /// It is the last active admin key: refused, nothing changed.
    LastAdmin,
}

impl Store {
    pub fn insert_api_key(&self, k: &NewApiKey<'_>) -> Result<ApiKeyRecord, StoreError> {
        let functions = k
            .functions
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| corrupt(format!("serialising patterns: {e}")))?;
        let mut db = self.db();
        let inserted = db.execute(
            "INSERT INTO api_keys (id, secret_sha256, secret_sealed, role, description, \
             created_at, functions) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            args![
                k.id.as_str(),
                k.secret_sha256,
                k.secret_sealed,
                k.role,
                k.description,
                &now_rfc3339(),
                &functions,
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Exists(format!("key {} already exists", k.id)));
        }
        get_api_key(&mut db, k.id)?
            .ok_or_else(|| corrupt(format!("key {} vanished after insert", k.id)))
    }

    pub fn get_api_key(&self, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        get_api_key(&mut self.db(), id)
    }

    /// Every key, revoked ones included, oldest first.
    pub fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.db().query_map(
            &format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"),
            args![],
            key_from_row,
        )
    }

    /// Revokes a key, unless it is the last active admin key. The check and the write are
    /// one transaction, so two concurrent revocations cannot both pass the check: on SQLite
    /// an immediate one (one writer), on PostgreSQL one that first locks every active admin
    /// key row (`FOR UPDATE`), so a second revocation waits for the first and then counts
    /// what it left.
    pub fn revoke_api_key(&self, id: &KeyId) -> Result<Revocation, StoreError> {
        let mut db = self.db();
        let mut tx = db.transaction()?;
        let lock = tx.dialect().for_update();
        if !lock.is_empty() {
            tx.query(
                &format!("SELECT id FROM api_keys WHERE role = ?1 AND revoked_at IS NULL{lock}"),
                args![ADMIN_ROLE],
            )?;
        }
        let Some(key) = get_api_key_locked(&mut tx, id)? else {
            return Ok(Revocation::NotFound);
        };
        if key.revoked_at.is_some() {
            return Ok(Revocation::AlreadyRevoked(key));
        }
        if key.role == ADMIN_ROLE {
            let admins: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM api_keys WHERE role = ?1 AND revoked_at IS NULL",
                    args![ADMIN_ROLE],
                )?
                .get(0)?;
            if admins <= 1 {
                return Ok(Revocation::LastAdmin);
            }
        }
        tx.execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            args![id.as_str(), &now_rfc3339()],
        )?;
        let key = get_api_key(&mut tx, id)?
            .ok_or_else(|| corrupt(format!("key {id} vanished while revoked")))?;
        tx.commit()?;
        Ok(Revocation::Revoked(key))
    }

    /// Stores the sealed secret of a key that has none yet (a key created before SigV4
    /// support, whose secret the caller has just proven). Returns whether a row changed.
    pub fn set_api_key_sealed_secret(
        &self,
        id: &KeyId,
        secret_sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "UPDATE api_keys SET secret_sealed = ?2 WHERE id = ?1 AND secret_sealed IS NULL",
            args![id.as_str(), secret_sealed],
        )?;
        Ok(changed > 0)
    }

    /// Number of keys that are not revoked.
    pub fn count_active_api_keys(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .db()
            .query_one(
                "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL",
                args![],
            )?
            .get(0)?;
        Ok(n as u64)
    }
}

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt {
        table: "api_keys",
        message,
    }
}

fn get_api_key(db: &mut Db<'_>, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
    db.query_opt(
        &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"),
        args![id.as_str()],
    )?
    .map(|r| key_from_row(&r))
    .transpose()
}

/// [`get_api_key`], the row locked until the transaction ends (PostgreSQL).
fn get_api_key_locked(db: &mut Db<'_>, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
    let lock = db.dialect().for_update();
    db.query_opt(
        &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1{lock}"),
        args![id.as_str()],
    )?
    .map(|r| key_from_row(&r))
    .transpose()
}

fn key_from_row(r: &Row) -> Result<ApiKeyRecord, StoreError> {
    let functions: Option<String> = r.get(7)?;
    Ok(ApiKeyRecord {
        id: KeyId::parse(&r.get::<String>(0)?).map_err(|e| corrupt(e.to_string()))?,
        secret_sha256: r.get(1)?,
        role: r.get(2)?,
        description: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
        secret_sealed: r.get(6)?,
        functions: functions
            .map(|f| serde_json::from_str(&f))
            .transpose()
            .map_err(|e| corrupt(format!("functions: {e}")))?,
    })
}
