//! API keys: the first admin key, and checking a bearer token on every request.

use std::path::Path;

use sha2::{Digest, Sha256};
use skyscale_store::{ApiKeyRecord, Store};
use skyscale_types::{ApiKey, KeyId};

use crate::secrets::ServerKey;
use crate::CoreError;

/// Who is calling. Roles beyond `admin` arrive with key management; the middleware and
/// every service method already receive a `Principal`, so checks have one place to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The API key that signed or carried the request; `None` for a public function URL.
    pub key_id: Option<KeyId>,
    pub role: Role,
}

impl Principal {
    /// A caller of a function URL whose AuthType is `NONE`: no key at all.
    pub fn anonymous() -> Self {
        Self {
            key_id: None,
            role: Role::Anonymous,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    /// No key: may only invoke through a public function URL.
    Anonymous,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
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
/// on the first start and writes it once, mode 0600, to `data_dir/admin-key`. Creates the
/// server key (`data_dir/server.key`) that seals key secrets if it does not exist.
pub fn ensure_admin_key(
    store: &Store,
    data_dir: &Path,
    from_env: Option<&ApiKey>,
) -> Result<AdminKeySource, CoreError> {
    let server_key = ServerKey::load_or_create(data_dir)?;
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
            }
            Some(_) => {
                return Err(CoreError::InvalidParameter(format!(
                    "SKYSCALE_ADMIN_KEY: key id {} is already registered with another secret",
                    key.id
                )))
            }
            None => {
                store.insert_api_key(
                    &key.id,
                    &hash_secret(key.secret()),
                    &server_key.seal(&key.id, key.secret())?,
                    "admin",
                    "from SKYSCALE_ADMIN_KEY",
                )?;
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
        .map_err(|e| CoreError::Internal(format!("writing {}: {e}", path.display())))?;
    store.insert_api_key(
        &key.id,
        &hash_secret(key.secret()),
        &server_key.seal(&key.id, key.secret())?,
        "admin",
        "generated on first start",
    )?;
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

/// Checks a bearer token `<id>.<secret>` against the store.
pub fn authenticate(store: &Store, token: &str) -> Result<Principal, CoreError> {
    let key = ApiKey::parse(token)?;
    let record = store.get_api_key(&key.id)?;
    verify(&key, record.as_ref())
}

/// Checks a presented key against its stored record (`None`: unknown id). Unknown ids and
/// wrong secrets get the same answer and the same work (a hash and a constant-time
/// compare), so a caller cannot probe for ids.
pub(crate) fn verify(key: &ApiKey, record: Option<&ApiKeyRecord>) -> Result<Principal, CoreError> {
    let denied = || CoreError::Unauthorized("invalid api key".into());
    let presented = hash_secret(key.secret());
    let stored = record
        .map(|r| r.secret_sha256.as_str())
        .unwrap_or("0000000000000000000000000000000000000000000000000000000000000000");
    let matches = constant_time_eq(presented.as_bytes(), stored.as_bytes());
    match record {
        Some(r) if matches && r.revoked_at.is_none() => principal(r),
        _ => Err(denied()),
    }
}

/// The principal a valid key stands for.
pub(crate) fn principal(r: &ApiKeyRecord) -> Result<Principal, CoreError> {
    Ok(Principal {
        key_id: Some(r.id.clone()),
        role: Role::parse(&r.role)
            .ok_or_else(|| CoreError::Unauthorized("invalid api key".into()))?,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_written_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let AdminKeySource::Generated { key, path } =
            ensure_admin_key(&store, dir.path(), None).unwrap()
        else {
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
            ensure_admin_key(&store, dir.path(), None).unwrap(),
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
}
