//! The one layer between the store's operations and its two databases (SQLite and
//! PostgreSQL), so that each operation is written once.
//!
//! - [`Db`]: one locked connection of one role (see [`crate::Store`]); `execute`, `query`,
//!   `query_opt`, `query_one` and [`Db::transaction`]. Statements are written in SQLite's
//!   syntax with `?N` placeholders; on PostgreSQL they are translated once to `$N` and
//!   prepared once per connection (both cached by the statement's text).
//! - [`Param`]: a statement's parameters (`args![…]`), [`Row`]/[`Value`]: its results, read
//!   with typed getters. Booleans are stored as integers 0/1 on both (the schema's columns are
//!   integers); a boolean *expression* read back (`EXISTS`, PostgreSQL's `bool`) reads as a
//!   bool or an integer alike.
//! - [`Dialect`]: the few places the two differ, as named fragments ([`Dialect::now_ms`],
//!   [`Dialect::skip_locked`], [`Dialect::for_update`], [`Dialect::greatest`],
//!   [`Dialect::row_order`]) rather than string edits scattered over the statements.
//!
//! Transactions: on SQLite `BEGIN IMMEDIATE` (one writer at a time: a read-then-write inside
//! needs nothing more). On PostgreSQL `BEGIN` at the default isolation (read committed):
//! every read-then-write transaction locks the rows its decision rests on with
//! [`Dialect::for_update`] (see each operation's comment). A transaction not committed is
//! rolled back when its guard drops.
//!
//! PostgreSQL connections reconnect: a connection found closed is replaced before the next
//! statement, and a transaction whose `BEGIN` fails on a closed connection is begun again on a
//! new one (nothing had been sent, so that is always safe). A single statement that fails on a
//! connection closed under it returns the error (it may or may not have been applied), and
//! the next operation reconnects.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type};

use crate::db::StoreError;

/// Which database a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The database's clock in epoch milliseconds (an SQL expression). Leases and due times
    /// use it so that every process sharing the database agrees on them.
    pub(crate) fn now_ms(self) -> &'static str {
        match self {
            Self::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Self::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
        }
    }

    /// Appended to the subquery that picks rows to claim: on PostgreSQL a row another
    /// transaction is claiming is skipped, not waited for (and never claimed twice). SQLite
    /// has one writer: nothing to add.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Appended to a `SELECT` inside a transaction whose later writes depend on what it
    /// read: on PostgreSQL the rows read stay locked until the commit. On SQLite the
    /// `IMMEDIATE` transaction already excludes every other writer.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// The larger of two values (SQLite's two-argument `MAX`).
    pub(crate) fn greatest(self) -> &'static str {
        match self {
            Self::Sqlite => "MAX",
            Self::Postgres => "GREATEST",
        }
    }

    /// A column ordering `invocations` rows as inserted (SQLite's `rowid`; PostgreSQL has no
    /// rowid, its schema has an identity column `seq`).
    pub(crate) fn row_order(self) -> &'static str {
        match self {
            Self::Sqlite => "rowid",
            Self::Postgres => "seq",
        }
    }
}

/// A statement parameter.
#[derive(Debug, Clone)]
pub(crate) enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    /// A text made for the statement (e.g. a number's decimal form).
    String(String),
    Bytes(&'a [u8]),
}

/// `args![a, b, …]`: a statement's parameters (`?1`, `?2`, …), each converted with `Param::from`.
macro_rules! args {
    () => { &[] as &[$crate::sql::Param<'_>] };
    ($($v:expr),+ $(,)?) => { &[$($crate::sql::Param::from($v)),+] as &[$crate::sql::Param<'_>] };
}
pub(crate) use args;

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<i32> for Param<'_> {
    fn from(v: i32) -> Self {
        Self::Int(v.into())
    }
}
impl From<u32> for Param<'_> {
    fn from(v: u32) -> Self {
        Self::Int(v.into())
    }
}
impl From<u64> for Param<'_> {
    fn from(v: u64) -> Self {
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<usize> for Param<'_> {
    fn from(v: usize) -> Self {
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Self::Int(v.into())
    }
}
impl From<f64> for Param<'_> {
    fn from(v: f64) -> Self {
        Self::Real(v)
    }
}
impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(v)
    }
}
impl From<String> for Param<'_> {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}
impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Self::Text(v)
    }
}
impl<'a> From<&&'a str> for Param<'a> {
    fn from(v: &&'a str) -> Self {
        Self::Text(v)
    }
}
impl From<&u32> for Param<'_> {
    fn from(v: &u32) -> Self {
        (*v).into()
    }
}
impl From<&i64> for Param<'_> {
    fn from(v: &i64) -> Self {
        (*v).into()
    }
}
impl From<&u64> for Param<'_> {
    fn from(v: &u64) -> Self {
        (*v).into()
    }
}
impl From<&bool> for Param<'_> {
    fn from(v: &bool) -> Self {
        (*v).into()
    }
}
impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Self::Bytes(v)
    }
}
impl<'a, const N: usize> From<&'a [u8; N]> for Param<'a> {
    fn from(v: &'a [u8; N]) -> Self {
        Self::Bytes(v)
    }
}
impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}
impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}
impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_ref().map_or(Self::Null, |s| Self::Text(s))
    }
}
impl<'a> From<&'a Option<Vec<u8>>> for Param<'a> {
    fn from(v: &'a Option<Vec<u8>>) -> Self {
        v.as_ref().map_or(Self::Null, |b| Self::Bytes(b))
    }
}
impl From<&Option<i64>> for Param<'_> {
    fn from(v: &Option<i64>) -> Self {
        (*v).into()
    }
}
impl From<&Option<u32>> for Param<'_> {
    fn from(v: &Option<u32>) -> Self {
        (*v).into()
    }
}
impl From<&Option<f64>> for Param<'_> {
    fn from(v: &Option<f64>) -> Self {
        (*v).into()
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Null => ValueRef::Null,
            Self::Int(v) => ValueRef::Integer(*v),
            Self::Real(v) => ValueRef::Real(*v),
            Self::Text(v) => ValueRef::Text(v.as_bytes()),
            Self::String(v) => ValueRef::Text(v.as_bytes()),
            Self::Bytes(v) => ValueRef::Blob(v),
        }))
    }
}

/// On PostgreSQL a parameter takes the type the server inferred for its placeholder: an
/// integer binds to any integer (checked), float or text parameter, and so on.
impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_string().as_str().to_sql(ty, out),
            },
            Self::Real(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Self::Text(v) => v.to_sql(ty, out),
            Self::String(v) => v.as_str().to_sql(ty, out),
            Self::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// One column's value as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Self::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Self::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Self::Int(i16::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Self::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Self::Real(f32::from_sql(ty, raw)?.into()),
            Type::BOOL => Self::Bool(bool::from_sql(ty, raw)?),
            Type::BYTEA => Self::Bytes(Vec::<u8>::from_sql(ty, raw)?),
            _ => Self::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::BOOL
                | Type::BYTEA
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
        )
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    values: Vec<Value>,
}

impl Row {
    /// Column `i` as a `T` (see [`FromValue`]).
    pub(crate) fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self.values.get(i).ok_or_else(|| StoreError::Database {
            message: format!("no column {i} in a row of {}", self.values.len()),
            source: None,
        })?;
        T::from_value(v).ok_or_else(|| StoreError::Database {
            message: format!("column {i} holds {v:?}, not {}", std::any::type_name::<T>()),
            source: None,
        })
    }
}

/// A Rust type a column converts to (`None`: it does not).
pub(crate) trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match *v {
            Value::Int(n) => Some(n),
            Value::Bool(b) => Some(b.into()),
            _ => None,
        }
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|n| u32::try_from(n).ok())
    }
}
impl FromValue for u64 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|n| u64::try_from(n).ok())
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match *v {
            Value::Real(n) => Some(n),
            Value::Int(n) => Some(n as f64),
            _ => None,
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        match *v {
            Value::Bool(b) => Some(b),
            Value::Int(n) => Some(n != 0),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// The connections of one role: a store has four (see [`crate::Store`]).
pub(crate) enum Conn {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Box<Mutex<PgConn>>),
}

impl Conn {
    /// Locks the connection. A panic while holding the lock cannot leave a statement
    /// half-applied (each statement or transaction is atomic, and a transaction guard
    /// dropped by the unwind rolls back), so a poisoned lock is safe to keep using.
    pub(crate) fn lock(&self) -> Db<'_> {
        match self {
            Self::Sqlite(m) => Db::Sqlite(m.lock().unwrap_or_else(|p| p.into_inner())),
            Self::Postgres(m) => Db::Postgres(m.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}

/// One PostgreSQL connection, opened on first use and again whenever it is found closed,
/// with its prepared statements (by their text in SQLite syntax).
pub(crate) struct PgConn {
    config: postgres::Config,
    /// Run on every new connection (e.g. `SET synchronous_commit = off`).
    setup: &'static str,
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
    last_used: Instant,
}

/// Closing a client blocks on its own runtime, which panics on an async runtime's thread
/// (where the last handle of a store may well be dropped, e.g. by a task ending at
/// shutdown): a client is closed on a thread of its own.
impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            close_client(client);
        }
    }
}

/// Closes a PostgreSQL client on a thread of its own (see [`PgConn`]'s `Drop`), waiting for
/// it.
pub(crate) fn close_client(client: postgres::Client) {
    if let Ok(closer) = std::thread::Builder::new()
        .name("skyscale-pg-close".into())
        .spawn(move || drop(client))
    {
        let _ = closer.join();
    }
}

/// A connection idle for longer than this is checked (one round trip) before use, so a
/// server restarted while it was idle costs no failed operation.
const CHECK_IDLE: Duration = Duration::from_secs(1);

impl PgConn {
    pub(crate) fn new(config: postgres::Config, setup: &'static str) -> Self {
        Self {
            config,
            setup,
            client: None,
            statements: HashMap::new(),
            last_used: Instant::now(),
        }
    }

    /// Connects now (so that a store that cannot reach its database fails at open).
    pub(crate) fn connect(&mut self) -> Result<(), StoreError> {
        self.client()?;
        Ok(())
    }

    fn client(&mut self) -> Result<&mut postgres::Client, StoreError> {
        let stale = match &mut self.client {
            None => true,
            Some(c) if c.is_closed() => true,
            Some(c) if self.last_used.elapsed() > CHECK_IDLE => {
                c.is_valid(Duration::from_secs(5)).is_err()
            }
            Some(_) => false,
        };
        if stale {
            self.client = None;
            self.statements.clear();
            let mut client = self.config.connect(postgres::NoTls)?;
            if !self.setup.is_empty() {
                client.batch_execute(self.setup)?;
            }
            self.client = Some(client);
        }
        self.last_used = Instant::now();
        self.client.as_mut().ok_or_else(|| StoreError::Database {
            message: "no PostgreSQL connection".into(),
            source: None,
        })
    }

    /// After an error: forget a connection that is closed now, or whose session the server
    /// ended (a `FATAL` error, e.g. a restart or `pg_terminate_backend`), to open another
    /// next time.
    fn after_error(&mut self, e: &StoreError) {
        use postgres::error::Severity;
        let ended = match e {
            StoreError::Database {
                source: Some(source),
                ..
            } => source.downcast_ref::<postgres::Error>().is_some_and(|pe| {
                pe.is_closed()
                    || pe.as_db_error().is_some_and(|d| {
                        matches!(d.parsed_severity(), Some(Severity::Fatal | Severity::Panic))
                    })
            }),
            _ => false,
        };
        if ended
            || self
                .client
                .as_ref()
                .is_some_and(postgres::Client::is_closed)
        {
            self.client = None;
            self.statements.clear();
        }
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let translated = placeholders_to_pg(sql);
        let stmt = self.client()?.prepare(&translated)?;
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    fn run<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        f: impl FnOnce(
            &mut postgres::Client,
            &postgres::Statement,
            &[&(dyn ToSql + Sync)],
        ) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let out = (|| {
            // Connect (or reconnect) first: a statement prepared on a connection replaced
            // afterwards would not exist on the new one.
            self.client()?;
            let stmt = self.statement(sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            Ok(f(self.client()?, &stmt, &refs)?)
        })();
        if let Err(e) = &out {
            self.after_error(e);
        }
        out
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let out = self.client().and_then(|c| Ok(c.batch_execute(sql)?));
        if let Err(e) = &out {
            self.after_error(e);
        }
        out
    }

    /// `BEGIN`, on a new connection if the current one turns out to be closed: nothing was
    /// sent on it yet, so beginning again elsewhere is always safe.
    fn begin(&mut self) -> Result<(), StoreError> {
        match self.batch("BEGIN") {
            Err(_) if self.client.is_none() => self.batch("BEGIN"),
            other => other,
        }
    }
}

/// Rewrites `?N` placeholders to PostgreSQL's `$N`, leaving string literals and quoted
/// identifiers alone.
pub(crate) fn placeholders_to_pg(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            None => out.push(c),
        }
    }
    out
}

/// One locked connection (see [`Conn::lock`]).
pub(crate) enum Db<'a> {
    Sqlite(MutexGuard<'a, rusqlite::Connection>),
    Postgres(MutexGuard<'a, PgConn>),
}

impl<'a> Db<'a> {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub(crate) fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<usize, StoreError> {
        match self {
            Self::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?),
            Self::Postgres(c) => {
                let n = c.run(sql, params, |client, stmt, p| client.execute(stmt, p))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Runs one statement; returns its rows.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        self.query_each(sql, params, |r| {
            out.push(r.clone());
            Ok(true)
        })?;
        Ok(out)
    }

    /// Runs one statement and hands its rows to `f` as they come, until `f` answers `false`
    /// (for reads that may stop early, e.g. at a size limit, without holding every row).
    pub(crate) fn query_each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        mut f: impl FnMut(&Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                while let Some(r) = rows.next()? {
                    if !f(&sqlite_row(r, n)?)? {
                        break;
                    }
                }
                Ok(())
            }
            Self::Postgres(c) => {
                let out = (|| -> Result<(), StoreError> {
                    use postgres::fallible_iterator::FallibleIterator;
                    c.client()?;
                    let stmt = c.statement(sql)?;
                    let mut rows = c.client()?.query_raw(&stmt, params.iter())?;
                    while let Some(r) = rows.next()? {
                        if !f(&pg_row(&r)?)? {
                            break;
                        }
                    }
                    Ok(())
                })();
                if let Err(e) = &out {
                    c.after_error(e);
                }
                out
            }
        }
    }

    /// Runs one statement; returns its first row, if any.
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs one statement that returns a row (e.g. `SELECT COUNT(*)`).
    pub(crate) fn query_one(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Database {
                message: format!("no row from {sql}"),
                source: None,
            })
    }

    /// Runs one statement and maps each row with `f`.
    pub(crate) fn query_map<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        f: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// Runs statements without parameters (migrations, settings).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Self::Postgres(c) => c.batch(sql),
        }
    }

    /// Begins a transaction (see the module's doc): committed by [`Tx::commit`], rolled back
    /// when dropped otherwise.
    pub(crate) fn transaction(&mut self) -> Result<Tx<'_, 'a>, StoreError> {
        match self {
            Self::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Self::Postgres(c) => c.begin()?,
        }
        Ok(Tx {
            db: self,
            open: true,
        })
    }
}

fn sqlite_row(r: &rusqlite::Row<'_>, n: usize) -> Result<Row, StoreError> {
    use rusqlite::types::ValueRef;
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        values.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Real(v) => Value::Real(v),
            ValueRef::Text(t) => Value::Text(
                std::str::from_utf8(t)
                    .map_err(|e| StoreError::Database {
                        message: format!("column {i} is not UTF-8: {e}"),
                        source: None,
                    })?
                    .to_owned(),
            ),
            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        });
    }
    Ok(Row { values })
}

fn pg_row(r: &postgres::Row) -> Result<Row, StoreError> {
    let values = (0..r.len())
        .map(|i| r.try_get::<_, Value>(i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Row { values })
}

/// An open transaction on a [`Db`]; use it as the `Db` (it derefs to it).
pub(crate) struct Tx<'t, 'a> {
    db: &'t mut Db<'a>,
    open: bool,
}

impl Tx<'_, '_> {
    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        self.db.batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl<'a> std::ops::Deref for Tx<'_, 'a> {
    type Target = Db<'a>;
    fn deref(&self) -> &Db<'a> {
        self.db
    }
}

impl<'a> std::ops::DerefMut for Tx<'_, 'a> {
    fn deref_mut(&mut self) -> &mut Db<'a> {
        self.db
    }
}

impl Drop for Tx<'_, '_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing to do when this fails: a closed connection has rolled back already.
            let _ = self.db.batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders_to_pg;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            placeholders_to_pg("SELECT ?1, '?2', \"a?3\" WHERE x = ?12 AND y = '?'"),
            "SELECT $1, '?2', \"a?3\" WHERE x = $12 AND y = '?'"
        );
    }
}
