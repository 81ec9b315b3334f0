//! Access control: the roles an API key can have, the function-name patterns that limit a
//! key, and the `/v1` wire formats of key management and the audit log.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// What a key may do. The control plane's `Principal::authorize` holds the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, key management and the audit log included. Never limited to patterns.
    Admin,
    /// Create, deploy, configure, invoke and delete functions (those its patterns match).
    Developer,
    /// Invoke functions (those its patterns match), nothing else.
    Invoker,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Developer, Role::Invoker];

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ValidationError::Role(s.to_owned()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Invoker => "invoker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A glob over function names: the characters of a name (`[A-Za-z0-9_-]`) and `*`, which
/// matches any run of characters (none included). `team-a-*` matches `team-a-x` and
/// `team-a-`; a pattern without `*` matches exactly that name. Matching is case-sensitive,
/// like function names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct FunctionPattern(String);

impl FunctionPattern {
    /// Longest pattern accepted (a name is at most 64 characters; stars come on top).
    pub const MAX_LEN: usize = 128;
    /// Most patterns on one key.
    pub const MAX_PER_KEY: usize = 50;

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::FunctionPattern(s.to_owned()))
        }
    }

    /// The pattern that matches exactly `name`.
    pub fn exact(name: &crate::FunctionName) -> Self {
        Self(name.as_str().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches. Linear in practice: on a mismatch after a `*`, only the
    /// position of the last `*` moves (the classic wildcard algorithm, no backtracking
    /// stack), so a hostile pattern cannot make it exponential.
    pub fn matches(&self, name: &str) -> bool {
        let (p, n) = (self.0.as_bytes(), name.as_bytes());
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ni));
                pi += 1;
            } else if pi < p.len() && p[pi] == n[ni] {
                pi += 1;
                ni += 1;
            } else if let Some((sp, sn)) = star {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

impl fmt::Display for FunctionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FunctionPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `POST /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// `admin`, `developer` or `invoker`.
    pub role: String,
    /// Patterns of the function names the key may use; absent or empty: every function.
    /// Not allowed for `admin`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An API key as `GET /v1/keys` shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key id (the AWS access key id).
    pub id: String,
    pub role: Role,
    /// Patterns of the function names the key may use; empty: every function.
    pub functions: Vec<String>,
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; `null` while the key is active.
    pub revoked_at: Option<String>,
}

/// The answer to `POST /v1/keys`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub id: String,
    /// The bearer token `<id>.<secret>`; the part after the `.` is the AWS secret access key.
    pub key: String,
    pub role: Role,
    pub functions: Vec<String>,
    pub description: String,
    pub created_at: String,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// One management action as the audit log recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increases with every entry.
    pub id: u64,
    /// RFC 3339, when the action finished.
    pub time: String,
    /// The key that asked; `null` when no key was involved.
    pub key_id: Option<String>,
    /// E.g. `function.deploy`, `alias.create`, `key.revoke`.
    pub action: String,
    /// The function (`name` or `name:qualifier`) or key the action was about.
    pub target: String,
    /// `ok`, `refused` (the key may not do this), or the error code of the failure
    /// (`not_found`, `invalid_parameter`, …).
    pub outcome: String,
    /// What went wrong, or a short summary; may be empty.
    pub detail: String,
}

/// `GET /v1/audit?limit=N&since=RFC3339`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(p: &str, n: &str) -> bool {
        FunctionPattern::parse(p).unwrap().matches(n)
    }

    #[test]
    fn patterns_match_like_globs() {
        assert!(matches("team-a-*", "team-a-x"));
        assert!(matches("team-a-*", "team-a-"));
        assert!(!matches("team-a-*", "team-b-x"));
        assert!(!matches("team-a-*", "team-a"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(!matches("exact", "Exact"));
        assert!(matches("*", "anything"));
        assert!(matches("*-api", "orders-api"));
        assert!(!matches("*-api", "orders-api-v2"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(matches("a*b*c", "abc"));
        assert!(!matches("a*b*c", "a-x-c-y-b"));
        assert!(matches("**x", "x"));
        // Pathological input stays fast.
        assert!(!matches(&format!("{}c", "*a".repeat(20)), &"a".repeat(64)));
    }

    #[test]
    fn patterns_and_roles_are_validated() {
        for bad in ["", "team/a", "a?b", "a b", "é*", &"a".repeat(129)] {
            assert!(FunctionPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(FunctionPattern::parse("*").is_ok());
        assert_eq!(Role::parse("developer"), Ok(Role::Developer));
        assert!(Role::parse("Admin").is_err());
        assert!(Role::parse("root").is_err());
        assert_eq!(
            serde_json::to_string(&Role::Invoker).unwrap_or_default(),
            "\"invoker\""
        );
    }
}
