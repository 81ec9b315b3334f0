//! A throwaway PostgreSQL database per run, made and dropped with `psql` on a server the
//! caller names (`scripts/test-postgres` starts Debian's PostgreSQL and prints its URL), and
//! the URL's parts the namespaces need to reach it through a [`crate::forward::Forwarder`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::Command;

use anyhow::{anyhow, bail, Context};

/// A `postgres://user:pass@host:port/db?params` URL split where a run needs it.
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
    pub fn parse(url: &str) -> anyhow::Result<PgUrl> {
        let Some(rest) = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
        else {
            bail!("a PostgreSQL URL must start with postgres://, got {url:?}");
        };
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
                    .map_err(|_| anyhow!("bad port {p:?} in the PostgreSQL URL {url:?}"))?,
            ),
            None => (hostport.to_owned(), 5432),
        };
        if host.is_empty() {
            bail!(
                "the PostgreSQL URL {url:?} has no host (a unix socket cannot be forwarded into \
                 network namespaces)"
            );
        }
        Ok(PgUrl {
            userinfo,
            host,
            port,
            database: if database.is_empty() {
                "postgres".into()
            } else {
                database.to_owned()
            },
            query,
        })
    }

    /// The server's TCP address.
    pub fn socket_addr(&self) -> anyhow::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| format!("cannot resolve the PostgreSQL host {}", self.host))
    }

    /// The same server and credentials, database `db`.
    pub fn with_database(&self, db: &str) -> PgUrl {
        PgUrl {
            database: db.to_owned(),
            ..self.clone()
        }
    }

    /// The same database and credentials reached at `addr` (a forwarder).
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

/// Runs `sql` with `psql` against `url`; returns stdout (tuples only, unaligned).
pub fn psql(url: &PgUrl, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .arg(url.to_string())
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("running psql (install postgresql-client)")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A database made for one run; dropped (with its connections) when this is dropped.
pub struct Database {
    admin: PgUrl,
    pub name: String,
    pub url: PgUrl,
}

impl Database {
    /// Creates `<prefix>_<pid>_<n>` on the server of `base`, after dropping the
    /// `<prefix>_<pid>_*` databases of runs whose process is gone. `prefix` is lower case
    /// letters, digits and `_` (it is not quoted).
    pub fn create(base: &PgUrl, prefix: &str, n: u32) -> anyhow::Result<Database> {
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("database prefix {prefix:?}: use lower case letters, digits and _");
        }
        let pid = std::process::id();
        psql(base, "SELECT 1").with_context(|| {
            format!(
                "PostgreSQL at {base} does not answer (is it running? scripts/test-postgres \
                 starts it)"
            )
        })?;
        let existing = psql(
            base,
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{prefix}\\_%'"),
        )?;
        for db in existing.lines() {
            let owner: Option<u32> = db
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('_'))
                .and_then(|r| r.split('_').next())
                .and_then(|p| p.parse().ok());
            if owner
                .is_some_and(|p| p != pid && !std::path::Path::new(&format!("/proc/{p}")).exists())
            {
                eprintln!("skyscale-testnet: dropping stale database {db}");
                if let Err(e) = psql(base, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")) {
                    eprintln!("skyscale-testnet: dropping stale database {db}: {e:#}");
                }
            }
        }
        let name = format!("{prefix}_{pid}_{n}");
        psql(
            base,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        psql(base, &format!("CREATE DATABASE {name}"))
            .with_context(|| format!("creating database {name} on {base}"))?;
        Ok(Database {
            admin: base.clone(),
            url: base.with_database(&name),
            name,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("skyscale-testnet: dropping database {}: {e:#}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PgUrl;

    #[test]
    fn urls_keep_their_parts() -> anyhow::Result<()> {
        let u = PgUrl::parse("postgres://u:p@127.0.0.1:5433/x?sslmode=disable")?;
        assert_eq!(
            u.with_database("y").to_string(),
            "postgres://u:p@127.0.0.1:5433/y?sslmode=disable"
        );
        let via = u.via("10.213.4.1:40000".parse()?);
        assert_eq!(
            via.to_string(),
            "postgres://u:p@10.213.4.1:40000/x?sslmode=disable"
        );
        assert_eq!(
            PgUrl::parse("postgresql://localhost")?.to_string(),
            "postgres://localhost:5432/postgres"
        );
        assert!(PgUrl::parse("mysql://x").is_err());
        assert!(PgUrl::parse("postgres://u@:5432/x").is_err());
        assert!(PgUrl::parse("postgres://h:port/x").is_err());
        Ok(())
    }
}
