//! The server key and sealing API key secrets with it.
//!
//! SigV4 needs each key's secret on the server, and secrets must never be stored in plain
//! text: the database holds them sealed (ChaCha20-Poly1305, a random nonce per key, the key
//! id as associated data so a sealed secret cannot be moved to another key) with a 32-byte
//! server key that lives in `<data_dir>/server.key` (mode 0600), outside the database.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::Rng;
use skyscale_types::KeyId;

use crate::CoreError;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// The file, in the data directory, that holds the server key.
pub const SERVER_KEY_FILE: &str = "server.key";

/// The key that seals API key secrets. `Debug` never shows it.
#[derive(Clone)]
pub struct ServerKey([u8; KEY_LEN]);

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

impl ServerKey {
    /// An HMAC-SHA256 keyed by the server key for one `purpose` (domain separation: a
    /// signature made for one purpose is worthless for another).
    pub(crate) fn mac(&self, purpose: &str) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        let mut key = Vec::with_capacity(KEY_LEN + purpose.len() + 1);
        key.extend_from_slice(&self.0);
        key.push(0);
        key.extend_from_slice(purpose.as_bytes());
        // HMAC takes keys of any length.
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("hmac accepts any key length"))
    }

    /// The server key of a cluster's API nodes, derived from the cluster secret every node
    /// is given, so that every API node opens what any of them sealed (a key made through
    /// one signs SigV4 requests to all) and honours the code locations any of them signed.
    /// Changing the cluster secret changes it: keys made before can then only use bearer
    /// tokens (create new ones for SigV4).
    pub fn derive(cluster_secret: &str) -> Self {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(cluster_secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
        mac.update(b"skyscale server key v1");
        Self(mac.finalize().into_bytes().into())
    }

    /// Reads `<data_dir>/server.key`, creating it (32 random bytes, mode 0600) on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, CoreError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join(SERVER_KEY_FILE);
        let io_err = |e: std::io::Error| CoreError::internal_from(format!("{}", path.display()), e);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    CoreError::internal(format!(
                        "{} holds {} bytes, expected {KEY_LEN}",
                        path.display(),
                        bytes.len()
                    ))
                })?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                rand::rng().fill(&mut key[..]);
                // Written to a temporary file and renamed, so a crash never leaves a short
                // key behind; `create_new` on the temporary name keeps two writers apart.
                let tmp = data_dir.join(format!(".{SERVER_KEY_FILE}.tmp"));
                let _ = std::fs::remove_file(&tmp);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io_err)?;
                f.write_all(&key).map_err(io_err)?;
                f.sync_all().map_err(io_err)?;
                std::fs::rename(&tmp, &path).map_err(io_err)?;
                tracing::info!(path = %path.display(), "generated the server key");
                Ok(Self(key))
            }
            Err(e) => Err(io_err(e)),
        }
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    /// Seals a key's secret: `nonce || ciphertext+tag`.
    pub fn seal(&self, id: &KeyId, secret: &str) -> Result<Vec<u8>, CoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce[..]);
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: id.as_str().as_bytes(),
                },
            )
            .map_err(|_| CoreError::internal("sealing a key secret failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what `seal` produced for the same key id.
    pub fn open(&self, id: &KeyId, sealed: &[u8]) -> Result<String, CoreError> {
        let broken = || {
            CoreError::internal(format!(
                "the sealed secret of key {id} does not open with this server key"
            ))
        };
        if sealed.len() < NONCE_LEN {
            return Err(broken());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: id.as_str().as_bytes(),
                },
            )
            .map_err(|_| broken())?;
        String::from_utf8(plain).map_err(|_| broken())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_key_is_the_same_for_the_same_secret_only() {
        let id = KeyId::parse("SKYTESTKEY000001").unwrap();
        let a = ServerKey::derive("a-cluster-secret-a-cluster-secret-0001");
        let b = ServerKey::derive("a-cluster-secret-a-cluster-secret-0001");
        let other = ServerKey::derive("a-cluster-secret-a-cluster-secret-0002");
        let sealed = a.seal(&id, "the secret").unwrap();
        assert_eq!(b.open(&id, &sealed).unwrap(), "the secret");
        assert!(other.open(&id, &sealed).is_err());
    }

    #[test]
    fn server_key_is_created_once_with_mode_0600_and_seals() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let k = ServerKey::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(SERVER_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = ServerKey::load_or_create(dir.path()).unwrap();
        assert_eq!(k.0, again.0);
        assert_eq!(format!("{k:?}"), "ServerKey(<redacted>)");

        let id = KeyId::parse("SKYABCD1234").unwrap();
        let other = KeyId::parse("SKYOTHER999").unwrap();
        let a = k.seal(&id, "the-secret").unwrap();
        let b = k.seal(&id, "the-secret").unwrap();
        assert_ne!(a, b, "a random nonce per seal");
        assert!(!a.windows(10).any(|w| w == b"the-secret"));
        assert_eq!(again.open(&id, &a).unwrap(), "the-secret");
        assert!(k.open(&other, &a).is_err(), "bound to its key id");
        let mut tampered = a.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(k.open(&id, &tampered).is_err());
    }
}
