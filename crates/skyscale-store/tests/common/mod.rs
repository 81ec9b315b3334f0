//! What every store test file shares: a fresh database of either backend, and
//! [`store_tests!`], which runs each test against both (as `sqlite::name` and
//! `postgres::name`, so a failure says which).
//!
//! PostgreSQL tests take a server's base URL from `SKYSCALE_TEST_DATABASE_URL`
//! (`postgres://user:password@host:port`, a role that may create databases) and create a
//! database per test, dropped at its end. Without the variable they fail: run
//! `scripts/test-postgres` (it installs and starts a local PostgreSQL and prints the URL).
#![allow(dead_code, clippy::unwrap_used, clippy::panic)] // tests fail loudly by design

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use std::collections::BTreeMap;

use skyscale_store::{CodeRef, NewFunction, Store};
use skyscale_types::{FunctionName, Handler, MemoryMb, Runtime, TimeoutSecs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one test; [`TestDb::open`] opens a store on it (again and
/// again: reopening is how tests check what survives).
pub struct TestDb {
    pub backend: Backend,
    dir: tempfile::TempDir,
    /// PostgreSQL: the server's base URL and this test's database.
    pg: Option<(String, String)>,
}

/// `SKYSCALE_TEST_DATABASE_URL`, or a failure saying how to get one.
pub fn base_url() -> String {
    match std::env::var("SKYSCALE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ => panic!(
            "SKYSCALE_TEST_DATABASE_URL is not set: the PostgreSQL store tests need a server. \
             Run `export SKYSCALE_TEST_DATABASE_URL=\"$(scripts/test-postgres)\"` (it installs \
             and starts a local PostgreSQL and prints the URL), or use scripts/test."
        ),
    }
}

fn admin(base: &str) -> postgres::Client {
    postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to {base}/postgres: {e}"))
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                static N: AtomicU32 = AtomicU32::new(0);
                let base = base_url();
                let name = format!(
                    "skyscale_test_{}_{}_{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed),
                    uuid::Uuid::new_v4().simple()
                );
                admin(&base)
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap();
                Some((base, name))
            }
        };
        Self { backend, dir, pg }
    }

    /// The SQLite file, or the PostgreSQL URL of this test's database.
    pub fn url(&self) -> String {
        match &self.pg {
            Some((base, name)) => format!("{base}/{name}"),
            None => self.path().display().to_string(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    pub fn open(&self) -> Store {
        match &self.pg {
            Some(_) => Store::connect(&self.url()).unwrap(),
            None => Store::open(&self.path()).unwrap(),
        }
    }

    /// Everything stored, as bytes, to search for what must not be there: SQLite's database
    /// and WAL files; on PostgreSQL each row of `table` in its text form.
    pub fn raw_contents(&self, table: &str) -> Vec<Vec<u8>> {
        match &self.pg {
            None => {
                let wal = self.dir.path().join("store.db-wal");
                vec![
                    std::fs::read(self.path()).unwrap(),
                    std::fs::read(wal).unwrap_or_default(),
                ]
            }
            Some(_) => self
                .pg_client()
                .query(&format!("SELECT t::text FROM {table} t"), &[])
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0).into_bytes())
                .collect(),
        }
    }

    /// A plain PostgreSQL client on this test's database (to act as the server would).
    pub fn pg_client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, name)) = &self.pg {
            // FORCE: a store still open (a test that failed) must not keep it.
            if let Err(e) =
                admin(base).batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            {
                eprintln!("dropping test database {name}: {e}");
            }
        }
    }
}

/// `store_tests!(a, b, …)`: each `fn a(db: &TestDb)` of the file runs as `sqlite::a` and
/// `postgres::a`.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(&$crate::common::TestDb::new($crate::common::Backend::Sqlite));
            })+
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(&$crate::common::TestDb::new($crate::common::Backend::Postgres));
            })+
        }
    };
}

/// A function as the tests make it: python3.11 with the default settings, and `code` when
/// given.
pub fn new_function(name: &str, code: Option<CodeRef>) -> NewFunction {
    NewFunction {
        name: FunctionName::parse(name).unwrap(),
        runtime: Runtime::parse("python3.11").unwrap(),
        handler: Handler::parse("handler.handler").unwrap(),
        memory: MemoryMb::DEFAULT,
        timeout: TimeoutSecs::DEFAULT,
        environment: BTreeMap::new(),
        description: String::new(),
        code,
        network: false,
        ephemeral_mb: 512,
        layers: Vec::new(),
        snap_start: Default::default(),
    }
}

/// Creates [`new_function`] and returns its name.
pub fn create_function(store: &Store, name: &str, code: Option<CodeRef>) -> FunctionName {
    let f = new_function(name, code);
    store.create_function(&f).unwrap();
    f.name
}

/// A code reference to a package that need not exist (the store only records it).
pub fn some_code() -> Option<CodeRef> {
    Some(CodeRef {
        sha256: "ab".repeat(32),
        size: 1,
    })
}
