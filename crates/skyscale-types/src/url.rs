//! Function URL settings: who may call the URL and which cross-origin requests browsers
//! may make to it.

use serde::{Deserialize, Serialize};

/// How a function URL authenticates its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UrlAuthType {
    /// Public: anyone who can reach the control plane may call it.
    #[serde(rename = "NONE")]
    None,
    /// Requests must carry a SigV4 signature made with an API key.
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

impl UrlAuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            UrlAuthType::None => "NONE",
            UrlAuthType::AwsIam => "AWS_IAM",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "NONE" => Ok(UrlAuthType::None),
            "AWS_IAM" => Ok(UrlAuthType::AwsIam),
            other => Err(format!(
                "invalid AuthType {other:?}: expected NONE or AWS_IAM"
            )),
        }
    }
}

/// Cross-origin resource sharing for a function URL (Lambda's `Cors`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cors {
    pub allow_credentials: bool,
    pub allow_headers: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_origins: Vec<String>,
    pub expose_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer.
    pub max_age: Option<u32>,
}

const CORS_METHODS: &[&str] = &["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"];
const MAX_CORS_METHODS: usize = 6;
const MAX_CORS_ITEMS: usize = 100;
const MAX_ORIGIN: usize = 253;
const MAX_HEADER: usize = 1024;
const MAX_CORS_MAX_AGE: u32 = 86_400;

impl Cors {
    /// Lambda's limits: known methods (at most 6), at most 100 origins and headers each,
    /// `MaxAge` up to a day.
    pub fn validate(&self) -> Result<(), String> {
        if self.allow_methods.len() > MAX_CORS_METHODS {
            return Err(format!(
                "Cors.AllowMethods has {} entries: at most {MAX_CORS_METHODS}",
                self.allow_methods.len()
            ));
        }
        if let Some(m) = self
            .allow_methods
            .iter()
            .find(|m| !CORS_METHODS.contains(&m.as_str()))
        {
            return Err(format!(
                "invalid Cors.AllowMethods entry {m:?}: expected one of {}",
                CORS_METHODS.join(", ")
            ));
        }
        for (field, items, max_len) in [
            ("AllowOrigins", &self.allow_origins, MAX_ORIGIN),
            ("AllowHeaders", &self.allow_headers, MAX_HEADER),
            ("ExposeHeaders", &self.expose_headers, MAX_HEADER),
        ] {
            if items.len() > MAX_CORS_ITEMS {
                return Err(format!(
                    "Cors.{field} has {} entries: at most {MAX_CORS_ITEMS}",
                    items.len()
                ));
            }
            if let Some(bad) = items.iter().find(|i| {
                i.is_empty() || i.len() > max_len || i.bytes().any(|b| !(0x21..0x7f).contains(&b))
            }) {
                return Err(format!(
                    "invalid Cors.{field} entry {bad:?}: 1 to {max_len} printable ASCII \
                     characters without spaces"
                ));
            }
        }
        if self.max_age.is_some_and(|a| a > MAX_CORS_MAX_AGE) {
            return Err(format!(
                "Cors.MaxAge must be between 0 and {MAX_CORS_MAX_AGE} seconds"
            ));
        }
        Ok(())
    }

    /// Whether `origin` may make cross-origin requests.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allow_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_limits() {
        let ok = Cors {
            allow_methods: vec!["GET".into(), "*".into()],
            allow_origins: vec!["https://example.com".into()],
            max_age: Some(600),
            ..Cors::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        assert!(ok.allows_origin("https://EXAMPLE.com"));
        assert!(!ok.allows_origin("https://evil.example"));
        let bad_method = Cors {
            allow_methods: vec!["TRACE".into()],
            ..Cors::default()
        };
        assert!(bad_method.validate().unwrap_err().contains("TRACE"));
        let bad_age = Cors {
            max_age: Some(86_401),
            ..Cors::default()
        };
        assert!(bad_age.validate().is_err());
        let bad_origin = Cors {
            allow_origins: vec!["a b".into()],
            ..Cors::default()
        };
        assert!(bad_origin.validate().is_err());
    }

    #[test]
    fn auth_types() {
        assert_eq!(UrlAuthType::parse("AWS_IAM"), Ok(UrlAuthType::AwsIam));
        assert!(UrlAuthType::parse("aws_iam").is_err());
        assert_eq!(UrlAuthType::None.as_str(), "NONE");
    }
}
