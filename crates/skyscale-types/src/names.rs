use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that breaks one of the rules of the function model. Each variant's message says
/// which rule and what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// function name must be 1-64 characters of letters, digits, '-' and '_'
    #[error("invalid function name {0:?}: use 1-64 characters of letters, digits, '-' and '_'")]
    FunctionName(String),
    /// memory out of range
    #[error("invalid memory size {0} MB: must be between {min} and {max} MB", min = MemoryMb::MIN, max = MemoryMb::MAX)]
    Memory(i64),
    /// timeout out of range
    #[error("invalid timeout {0} s: must be between {min} and {max} seconds", min = TimeoutSecs::MIN, max = TimeoutSecs::MAX)]
    Timeout(i64),
    /// handler not of the form module.function
    #[error("invalid handler {0:?}: expected 'module.function', e.g. 'handler.handler'")]
    Handler(String),
    /// a custom runtime's handler with spaces, empty or too long
    #[error("invalid handler {0:?}: for a provided runtime use 1-128 characters without spaces, e.g. 'bootstrap'")]
    FreeHandler(String),
    /// runtime name not of the form python3.X or provided
    #[error("invalid runtime {0:?}: expected a name like 'python3.11', or 'provided' ('provided.al2', 'provided.al2023') for a custom runtime")]
    Runtime(String),
    /// environment variable name not valid
    #[error("invalid environment variable name {0:?}: use letters, digits and '_', not starting with a digit")]
    EnvName(String),
    /// environment variable reserved by the platform
    #[error("environment variable {0:?} is reserved by the platform and cannot be set")]
    EnvReserved(String),
    /// description too long
    #[error("description is {0} characters long: at most 256 are allowed")]
    Description(usize),
    /// not one of the key roles
    #[error("invalid role {0:?}: expected admin, developer or invoker")]
    Role(String),
    /// layer name must be 1-140 characters of letters, digits, '-' and '_'
    #[error("invalid layer name {0:?}: use 1-140 characters of letters, digits, '-' and '_'")]
    LayerName(String),
    /// function pattern with characters other than a name's and `*`
    #[error("invalid function pattern {0:?}: use 1-128 characters of letters, digits, '-', '_' and '*' (any run of characters)")]
    FunctionPattern(String),
}

/// A function's name: `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FunctionName(String);

impl FunctionName {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::FunctionName(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FunctionName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A layer's name: `[A-Za-z0-9_-]{1,140}` (Lambda's, without the ARN form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct LayerName(String);

impl LayerName {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = !s.is_empty()
            && s.len() <= 140
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::LayerName(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LayerName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Memory size of a function in MB, 128..=10240. It is the sandbox's memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MemoryMb(u32);

impl MemoryMb {
    pub const MIN: u32 = 128;
    pub const MAX: u32 = 10240;
    pub const DEFAULT: MemoryMb = MemoryMb(128);

    pub fn new(mb: i64) -> Result<Self, ValidationError> {
        if (Self::MIN as i64..=Self::MAX as i64).contains(&mb) {
            Ok(Self(mb as u32))
        } else {
            Err(ValidationError::Memory(mb))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn bytes(self) -> u64 {
        u64::from(self.0) * 1024 * 1024
    }
}

/// A function's timeout in seconds, 1..=900: a hard deadline for one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TimeoutSecs(u32);

impl TimeoutSecs {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 900;
    pub const DEFAULT: TimeoutSecs = TimeoutSecs(3);

    pub fn new(s: i64) -> Result<Self, ValidationError> {
        if (Self::MIN as i64..=Self::MAX as i64).contains(&s) {
            Ok(Self(s as u32))
        } else {
            Err(ValidationError::Timeout(s))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.0))
    }
}

/// A handler string `module.function`; the module may be a dotted or slashed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Handler(String);

impl Handler {
    pub const DEFAULT: &'static str = "handler.handler";

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ident = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'/')
        };
        match s.rsplit_once('.') {
            Some((module, func))
                if s.len() <= 128 && module.split('.').all(ident) && ident(func) =>
            {
                Ok(Self(s.to_owned()))
            }
            _ => Err(ValidationError::Handler(s.to_owned())),
        }
    }

    /// A handler for `runtime`: `module.function` for Python; for the custom runtime
    /// (`provided*`) free text, handed to the code's `bootstrap` as `_HANDLER` (Lambda's rule:
    /// `bootstrap` is the usual value for Rust and Go functions).
    pub fn for_runtime(s: &str, runtime: &Runtime) -> Result<Self, ValidationError> {
        if runtime.is_provided() {
            Self::free_text(s)
        } else {
            Self::parse(s)
        }
    }

    /// Any handler Lambda accepts: 1-128 characters without whitespace. Stored handlers are
    /// read back this way (they were checked against their runtime when written).
    pub fn free_text(s: &str) -> Result<Self, ValidationError> {
        if s.is_empty() || s.chars().count() > 128 || s.chars().any(char::is_whitespace) {
            return Err(ValidationError::FreeHandler(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A runtime name such as `python3.11`, or `provided` (also spelled `provided.al2` and
/// `provided.al2023`, all the same here): Lambda's custom runtime, whose code package brings
/// its own executable `bootstrap`. Whether a Python runtime is installed is the control
/// plane's question, not this type's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Runtime(String);

impl Runtime {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let valid = PROVIDED.contains(&s)
            || s.strip_prefix("python3.").is_some_and(|minor| {
                !minor.is_empty() && minor.len() <= 2 && minor.bytes().all(|b| b.is_ascii_digit())
            });
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::Runtime(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the custom runtime: the code's `bootstrap` is the runtime process.
    pub fn is_provided(&self) -> bool {
        PROVIDED.contains(&self.0.as_str())
    }
}

/// The names of the custom runtime, all equivalent.
const PROVIDED: [&str; 3] = ["provided", "provided.al2", "provided.al2023"];

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Environment variables the platform sets itself (see the Lambda contract, section 8).
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    // Where the Python bootstrap finds a function's layers (skyscale-core's invoke.rs).
    "_SKYSCALE_OPT",
];

/// Checks one user environment variable name.
/// How a version is named everywhere: `$LATEST` (`None`) or a published version's number.
pub fn version_label(version: Option<u64>) -> String {
    version.map_or_else(|| "$LATEST".to_owned(), |n| n.to_string())
}

pub fn validate_env_name(name: &str) -> Result<(), ValidationError> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || name.len() > 128 || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ValidationError::EnvName(name.to_owned()));
    }
    if RESERVED_ENV.contains(&name) {
        return Err(ValidationError::EnvReserved(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(FunctionName::parse("hello-world_1").is_ok());
        assert!(FunctionName::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "bad name", "a/b", "x;rm", &"a".repeat(65), "é"] {
            assert!(FunctionName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ranges() {
        assert!(MemoryMb::new(127).is_err());
        assert_eq!(MemoryMb::new(128).unwrap().get(), 128);
        assert!(MemoryMb::new(10241).is_err());
        assert!(TimeoutSecs::new(0).is_err());
        assert!(TimeoutSecs::new(901).is_err());
        assert_eq!(TimeoutSecs::new(900).unwrap().get(), 900);
    }

    #[test]
    fn handlers_and_runtimes() {
        assert!(Handler::parse("handler.handler").is_ok());
        assert!(Handler::parse("pkg.mod.fn").is_ok());
        let provided = Runtime::parse("provided.al2023").unwrap();
        let python = Runtime::parse("python3.11").unwrap();
        assert!(Handler::for_runtime("bootstrap", &provided).is_ok());
        assert!(Handler::for_runtime("bootstrap", &python).is_err());
        assert!(Handler::for_runtime("my handler", &provided).is_err());
        assert!(Handler::for_runtime("", &provided).is_err());
        assert!(Handler::for_runtime(&"h".repeat(129), &provided).is_err());
        for bad in ["handler", ".x", "x.", "a b.c", "a..b"] {
            assert!(Handler::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Runtime::parse("python3.11").is_ok());
        assert!(!Runtime::parse("python3.11").unwrap().is_provided());
        for provided in ["provided", "provided.al2", "provided.al2023"] {
            assert!(Runtime::parse(provided).unwrap().is_provided());
        }
        for bad in [
            "python3",
            "python2.7",
            "node18",
            "python3.x",
            "provided.al2024",
            "provided.",
        ] {
            assert!(Runtime::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn env_names() {
        assert!(validate_env_name("GREETING").is_ok());
        assert!(validate_env_name("1X").is_err());
        assert!(validate_env_name("A-B").is_err());
        assert_eq!(
            validate_env_name("AWS_REGION"),
            Err(ValidationError::EnvReserved("AWS_REGION".into()))
        );
    }
}
