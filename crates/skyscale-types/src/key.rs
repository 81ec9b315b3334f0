use std::fmt;

use rand::Rng;

/// The public half of an API key: letters and digits, like an AWS access key id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(s: &str) -> Result<Self, KeyParseError> {
        if (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(KeyParseError::Id)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key token was refused. Messages never echo the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("api key must have the form <id>.<secret>")]
    Shape,
    #[error("api key id must be 4-64 letters and digits")]
    Id,
    #[error("api key secret must be 32-128 characters of letters, digits, '_' and '-'")]
    Secret,
}

/// An API key: a public id and a secret. Its bearer token is `<id>.<secret>`; the same pair
/// signs AWS-style (SigV4) requests. `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: KeyId,
    secret: String,
}

impl ApiKey {
    pub const ID_PREFIX: &'static str = "SKY";

    /// Parses a bearer token `<id>.<secret>`.
    pub fn parse(token: &str) -> Result<Self, KeyParseError> {
        let (id, secret) = token.split_once('.').ok_or(KeyParseError::Shape)?;
        let id = KeyId::parse(id)?;
        let secret_ok = (32..=128).contains(&secret.len())
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !secret_ok {
            return Err(KeyParseError::Secret);
        }
        Ok(Self {
            id,
            secret: secret.to_owned(),
        })
    }

    /// A fresh random key: a 20-character id and a 40-character secret.
    pub fn generate() -> Self {
        const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const SECRET_CHARS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
        let mut rng = rand::rng();
        let mut pick = |set: &[u8], n: usize| -> String {
            (0..n)
                .map(|_| set[rng.random_range(0..set.len())] as char)
                .collect()
        };
        let id = format!("{}{}", Self::ID_PREFIX, pick(ID_CHARS, 17));
        let secret = pick(SECRET_CHARS, 40);
        Self {
            id: KeyId(id),
            secret,
        }
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The bearer token `<id>.<secret>`. Handle with care: it is the credential.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}.<redacted>)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        let k = ApiKey::generate();
        let back = ApiKey::parse(&k.token()).unwrap();
        assert_eq!(back, k);
        assert!(!format!("{k:?}").contains(k.secret()));
    }

    #[test]
    fn bad_tokens() {
        assert_eq!(ApiKey::parse("nodot"), Err(KeyParseError::Shape));
        assert_eq!(
            ApiKey::parse("a-b.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
            Err(KeyParseError::Id)
        );
        assert_eq!(ApiKey::parse("ABCD.short"), Err(KeyParseError::Secret));
    }
}
