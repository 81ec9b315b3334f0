//! Domain types, validation rules and the `/v1` wire formats.
//!
//! Everything here is plain data: no I/O, no HTTP, no SQL. Validation happens once, when a
//! value is parsed into one of these types; code that holds a [`FunctionName`] never checks
//! it again.

pub mod access;
pub mod api;
pub mod cluster;
pub mod events;
pub mod invocation;
mod key;
pub mod metrics;
mod names;
pub mod provisioned;
pub mod schedules;
pub mod snapstart;
pub mod time;
mod url;

pub use names::{validate_env_name, version_label, RESERVED_ENV};

pub use access::{FunctionPattern, Role};
pub use key::{ApiKey, KeyId, KeyParseError};
pub use names::{
    FunctionName, Handler, LayerName, MemoryMb, Runtime, TimeoutSecs, ValidationError,
};
pub use url::{Cors, UrlAuthType};
