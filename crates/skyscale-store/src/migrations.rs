//! Versioned schema migrations. Each entry runs once, in order, inside a transaction; the
//! database's `user_version` records how many have run. Never edit a released entry: add one.

pub const MIGRATIONS: &[&str] = &[
    // 1: functions and API keys.
    r#"
    CREATE TABLE functions (
        name        TEXT PRIMARY KEY,
        runtime     TEXT NOT NULL,
        handler     TEXT NOT NULL,
        memory_mb   INTEGER NOT NULL,
        timeout_s   INTEGER NOT NULL,
        environment TEXT NOT NULL,          -- JSON object of strings
        description TEXT NOT NULL,
        code_sha256 TEXT,                   -- hex; NULL until code is deployed
        code_size   INTEGER,
        revision    INTEGER NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    ) STRICT;
    CREATE TABLE api_keys (
        id            TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL,        -- hex SHA-256 of the secret, never the secret
        role          TEXT NOT NULL,
        description   TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        revoked_at    TEXT
    ) STRICT;
    "#,
    // 2: per-function reserved concurrency (NULL = no reservation, 0 = disabled).
    r#"
    ALTER TABLE functions ADD COLUMN reserved_concurrency INTEGER;
    "#,
    // 3: each key's secret sealed (AEAD) with the server key, for SigV4; NULL for keys
    // created before, which can then only authenticate with a bearer token.
    r#"
    ALTER TABLE api_keys ADD COLUMN secret_sealed BLOB;
    "#,
];
