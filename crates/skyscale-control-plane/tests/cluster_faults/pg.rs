//! The cluster test's PostgreSQL: a fresh database per run on the server that
//! `SKYSCALE_TEST_DATABASE_URL` names (scripts/test-postgres starts Debian's PostgreSQL and
//! prints it), made and dropped with `psql`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::Command;

/// A `postgres://user:pass@host:port/db?params` URL split where the test needs it.
#[derive(Clone, Debug)]
pub struct PgUrl {
    /// `user:pass@` (empty when the URL has none).
    userinfo: String,
    host: String,
    port: u16,
    database: String,
    /// `?...` or empty.
    query: String,
}

impl PgUrl {
    pub fn parse(url: &str) -> PgUrl {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .unwrap_or_else(|| {
                panic!("SKYSCALE_TEST_DATABASE_URL must start with postgres://, got {url:?}")
            });
        let (rest, query) = match rest.find('?') {
            Some(q) => (&rest[..q], rest[q..].to_owned()),
            None => (rest, String::new()),
        };
        let (authority, database) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (authority[..=at].to_owned(), &authority[at + 1..]),
            None => (String::new(), authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse()
                    .unwrap_or_else(|_| panic!("bad port in SKYSCALE_TEST_DATABASE_URL: {p:?}")),
            ),
            None => (hostport.to_owned(), 5432),
        };
        assert!(
            !host.is_empty(),
            "SKYSCALE_TEST_DATABASE_URL has no host (a unix socket cannot be forwarded into \
             the workers' namespaces): {url:?}"
        );
        PgUrl {
            userinfo,
            host,
            port,
            database: if database.is_empty() {
                "postgres".into()
            } else {
                database.to_owned()
            },
            query,
        }
    }

    /// The server's TCP address.
    pub fn socket_addr(&self) -> SocketAddr {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("cannot resolve PostgreSQL host {}", self.host))
    }

    /// The same server and credentials, database `db`.
    pub fn with_database(&self, db: &str) -> PgUrl {
        PgUrl {
            database: db.to_owned(),
            ..self.clone()
        }
    }

    /// The same database and credentials reached at `addr` (the forwarder).
    pub fn via(&self, addr: SocketAddr) -> PgUrl {
        PgUrl {
            host: addr.ip().to_string(),
            port: addr.port(),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres://{}{}:{}/{}{}",
            self.userinfo, self.host, self.port, self.database, self.query
        )
    }
}

/// The base URL from `SKYSCALE_TEST_DATABASE_URL`; missing is a failure, never a skip.
pub fn base_url() -> PgUrl {
    let url = std::env::var("SKYSCALE_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| {
            panic!(
            "SKYSCALE_TEST_DATABASE_URL is not set: the cluster tests need PostgreSQL. Start it \
             with `export SKYSCALE_TEST_DATABASE_URL=$(scripts/test-postgres)` (scripts/test \
             does), or point it at a server where the user may create databases"
        )
        });
    PgUrl::parse(&url)
}

/// Runs `sql` with `psql` against `url`; returns stdout (tuples only, unaligned).
pub fn psql(url: &PgUrl, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .arg(url.to_string())
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("running psql (install postgresql-client): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A database made for one run; dropped (with its connections) when this is dropped.
pub struct Database {
    admin: PgUrl,
    pub name: String,
    pub url: PgUrl,
}

impl Database {
    /// Creates `skyscale_ctest_<pid>_<n>` after dropping what dead runs left.
    pub fn create(base: &PgUrl, n: u32) -> Database {
        let pid = std::process::id();
        psql(base, "SELECT 1").unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} does not answer (is it running? scripts/test-postgres starts it): {e}")
        });
        let existing = psql(
            base,
            "SELECT datname FROM pg_database WHERE datname LIKE 'skyscale_ctest_%'",
        )
        .unwrap();
        for db in existing.lines() {
            let owner: Option<u32> = db
                .strip_prefix("skyscale_ctest_")
                .and_then(|r| r.split('_').next())
                .and_then(|p| p.parse().ok());
            if owner
                .is_some_and(|p| p != pid && !std::path::Path::new(&format!("/proc/{p}")).exists())
            {
                eprintln!("cluster test: dropping stale database {db}");
                let _ = psql(base, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
            }
        }
        let name = format!("skyscale_ctest_{pid}_{n}");
        psql(
            base,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .unwrap();
        psql(base, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating database {name} on {base}: {e}"));
        Database {
            admin: base.clone(),
            url: base.with_database(&name),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("cluster test: dropping database {}: {e}", self.name);
        }
    }
}
