//! All persistent state of the control plane: the SQLite database (schema migrations and
//! every SQL statement) and the content-addressed code packages on disk.
//!
//! The store knows nothing of HTTP or sandboxes. Its methods are blocking; async callers
//! run them on a blocking thread.

mod aliases;
mod audit;
mod code;
mod db;
mod functions;
mod invocations;
mod keys;
mod migrations;
mod policies;
mod tags;
mod urls;
mod versions;

pub use aliases::{AliasRecord, AliasUpdate};
pub use audit::{AuditRecord, NewAuditEntry};
pub use code::{
    CodeError, CodeLimits, CodePin, CodeRef, CodeStore, CodeUsage, Collected, StoredCode,
};
pub use db::{Store, StoreError};
pub use functions::{FunctionRecord, FunctionUpdate, NewFunction};
pub use invocations::{InvocationQuery, InvocationRow, LogPage, LogQuery, LogRow, RecordTotals};
pub use keys::{ApiKeyRecord, NewApiKey, Revocation};
pub use policies::{PolicyStatement, MAX_STATEMENTS};
pub use tags::MAX_TAGS;
pub use urls::{UrlConfigRecord, UrlConfigUpdate};

/// Current time as RFC 3339 UTC with milliseconds, the format every stored timestamp uses.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
