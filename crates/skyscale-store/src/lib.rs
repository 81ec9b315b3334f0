//! All persistent state of the control plane: the database (SQLite, or PostgreSQL shared by
//! the nodes of a cluster: schema migrations and every SQL statement, written once for both
//! through `sql.rs`) and the content-addressed code packages on disk.
//!
//! The store knows nothing of HTTP or sandboxes. Its methods are blocking; async callers
//! run them on a blocking thread.

mod aliases;
mod audit;
mod changes;
mod cluster;
mod code;
mod code_packages;
mod db;
mod events;
mod functions;
mod invocations;
mod keys;
mod layers;
mod migrations;
mod migrations_pg;
mod policies;
mod provisioned;
mod schedules;
mod singleton;
mod sql;
mod tags;
mod urls;
mod versions;

pub use aliases::{AliasRecord, AliasUpdate};
pub use audit::{AuditRecord, NewAuditEntry};
pub use changes::{CacheListener, CHANNEL as CACHE_CHANNEL};
pub use cluster::{ApiNodeRow, WarmKey, WorkerLease, WorkerRow, WorkerStatus};
pub use code::{
    charged_size, CodeError, CodeLimits, CodePin, CodeRef, CodeStore, CodeUsage, Collected, Derive,
    StoredCode, CHARGE_BLOCK,
};
pub use db::{Store, StoreError};
pub use events::{
    Enqueued, EventConfigRecord, EventConfigUpdate, EventEnd, EventFilter, EventRow, EventState,
    Idempotency, NewEvent, QueueStats, Retry,
};
pub use functions::{FunctionRecord, FunctionUpdate, NewFunction};
pub use invocations::{
    InvocationQuery, InvocationRecord, LogEntry, LogPage, LogQuery, RecordTotals,
};
pub use migrations::SCHEMA_VERSION;

pub use keys::{ApiKeyRecord, NewApiKey, Revocation};
pub use layers::{FunctionLayer, LayerVersionRecord, NewLayerVersion, MAX_FUNCTION_LAYERS};
pub use policies::{PolicyStatement, MAX_STATEMENTS};
pub use provisioned::ProvisionedConfigRecord;
pub use schedules::{Fire, Fired, ScheduleFields, ScheduleRecord, Through};
pub use singleton::Singleton;
pub use tags::MAX_TAGS;
pub use urls::{UrlConfigRecord, UrlConfigUpdate};

pub use skyscale_types::time::now_rfc3339;
