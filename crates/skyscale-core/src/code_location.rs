//! GetFunction's `Code.Location`: a short-lived, signed address from which a function's
//! package (the zip as uploaded) can be downloaded without a key, as Lambda's presigned S3
//! URL. The signature is an HMAC under the server key over the package's hash and the
//! expiry, so it cannot be moved to another package or extended; it is checked in constant
//! time.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use skyscale_types::time::epoch_ms;

use hmac::Mac;
use skyscale_store::CodePin;

use crate::auth::Principal;
use crate::{ControlPlane, CoreError};

/// How long a location stays valid (Lambda's presigned URLs last 10 minutes).
pub const CODE_LOCATION_TTL: Duration = Duration::from_secs(600);

const PURPOSE: &str = "code-location";

/// A signed grant to download one package until `expires` (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    pub sha256: String,
    pub expires: u64,
    pub signature: String,
}

/// A package being downloaded: its zip, kept from collection while the download runs.
#[derive(Debug)]
pub struct CodeDownload {
    pub zip: PathBuf,
    _pin: CodePin,
}

fn message(sha256: &str, expires: u64) -> String {
    format!("{sha256}\n{expires}")
}

impl ControlPlane {
    /// A grant for the package of `name` (at `qualifier`), for a caller who may read the
    /// function; `None` if it has no code.
    pub async fn code_location(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
        now: SystemTime,
    ) -> Result<Option<CodeGrant>, CoreError> {
        // Authorizes reading the function, like GetFunction itself.
        let f = self.get_function_version(by, name, qualifier).await?;
        let Some(sha256) = f.code.map(|c| c.sha256) else {
            return Ok(None);
        };
        let expires = epoch_ms(now + CODE_LOCATION_TTL) / 1000;
        let mut mac = self.server_key.mac(PURPOSE);
        mac.update(message(&sha256, expires).as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        Ok(Some(CodeGrant {
            sha256,
            expires,
            signature,
        }))
    }

    /// The package a grant names, if its signature holds and it has not expired. Every
    /// refusal says the same, so a caller learns nothing about which part was wrong.
    pub async fn redeem_code_location(
        &self,
        sha256: &str,
        expires: u64,
        signature: &str,
        now: SystemTime,
    ) -> Result<CodeDownload, CoreError> {
        let refused = || {
            CoreError::Forbidden(
                "the code location is invalid or has expired: call GetFunction for a new one"
                    .into(),
            )
        };
        let now = epoch_ms(now) / 1000;
        let given = hex::decode(signature).map_err(|_| refused())?;
        let mut mac = self.server_key.mac(PURPOSE);
        mac.update(message(sha256, expires).as_bytes());
        mac.verify_slice(&given).map_err(|_| refused())?;
        if now > expires {
            return Err(refused());
        }
        // Signed by us, so `sha256` is a package name this server wrote, not a path.
        let gone =
            || CoreError::NotFound("the package of this code location no longer exists".into());
        let pin = match self.code.pin(sha256) {
            Some(pin) => pin,
            // On a shared store another host may have taken the upload (see `code.rs`).
            None if self.store.is_shared() => {
                let (store, code, sha) = (self.store.clone(), self.code.clone(), sha256.to_owned());
                crate::blocking(move || crate::code::fetch_code(&store, &code, &sha))
                    .await?
                    .ok_or_else(gone)?
            }
            None => return Err(gone()),
        };
        Ok(CodeDownload {
            zip: self.code.zip_path(sha256),
            _pin: pin,
        })
    }
}
