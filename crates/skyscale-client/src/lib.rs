//! A typed, blocking HTTP client for the Skyscale `/v1` API, and the packager that turns a
//! directory into the zip the API takes.
//!
//! The client speaks only the public API: the wire types come from
//! [`skyscale_types::api`], errors come back as [`ClientError`] whose messages are meant to be
//! shown to a user as they are.
//!
//! The client is blocking (it runs its own small runtime inside `reqwest`): do not call it from
//! inside an async runtime; wrap it in `spawn_blocking` there.

mod client;
mod error;
pub mod package;

pub use client::{Client, InvocationsQuery, InvokeOutcome, LogEvent, LogsQuery};
pub use error::ClientError;
pub use package::PackageError;
