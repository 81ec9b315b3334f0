//! Versioned schema migrations of SQLite. Each entry runs once, in order, inside a transaction;
//! the database's `user_version` records how many have run. Never edit a released entry: add
//! one.
//!
//! Migrations come in pairs: PostgreSQL has its own list (`migrations_pg.rs`) reaching the same
//! schema entry for entry, so a new migration is added here and there together (the store's
//! tests run against both, and `migration_lists_have_the_same_length` checks the count).

/// The schema version this build migrates to (the same on both databases).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

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
    // 4: tags on functions (TagResource), gone with their function.
    r#"
    CREATE TABLE function_tags (
        function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        key      TEXT NOT NULL,
        value    TEXT NOT NULL,
        PRIMARY KEY (function, key)
    ) STRICT;
    "#,
    // 5: published versions: immutable snapshots of a function's code and configuration.
    // `last_version` is the highest number ever given, so a deleted version's number is
    // never reused.
    r#"
    ALTER TABLE functions ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE function_versions (
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        version     INTEGER NOT NULL,
        runtime     TEXT NOT NULL,
        handler     TEXT NOT NULL,
        memory_mb   INTEGER NOT NULL,
        timeout_s   INTEGER NOT NULL,
        environment TEXT NOT NULL,
        description TEXT NOT NULL,
        code_sha256 TEXT NOT NULL,
        code_size   INTEGER NOT NULL,
        revision    INTEGER NOT NULL,       -- the function's revision when published
        created_at  TEXT NOT NULL,
        PRIMARY KEY (function, version)
    ) STRICT;
    "#,
    // 6: aliases: a name for a published version, optionally routing a share of the
    // invocations (`extra_weight`, 0..=1) to one other published version.
    r#"
    CREATE TABLE function_aliases (
        function      TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        version       INTEGER NOT NULL,
        description   TEXT NOT NULL,
        extra_version INTEGER,
        extra_weight  REAL,
        revision      INTEGER NOT NULL,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        PRIMARY KEY (function, name)
    ) STRICT;
    "#,
    // 7: an alias may point at $LATEST (version NULL). SQLite cannot drop a NOT NULL
    // constraint in place, so the table is rebuilt with its rows.
    r#"
    CREATE TABLE function_aliases_new (
        function      TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        version       INTEGER,              -- NULL = $LATEST
        description   TEXT NOT NULL,
        extra_version INTEGER,
        extra_weight  REAL,
        revision      INTEGER NOT NULL,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        PRIMARY KEY (function, name)
    ) STRICT;
    INSERT INTO function_aliases_new SELECT function, name, version, description, extra_version,
        extra_weight, revision, created_at, updated_at FROM function_aliases;
    DROP TABLE function_aliases;
    ALTER TABLE function_aliases_new RENAME TO function_aliases;
    "#,
    // 8: function URLs: an HTTP endpoint for $LATEST or an alias.
    r#"
    CREATE TABLE function_urls (
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier   TEXT NOT NULL,          -- '$LATEST' or an alias name
        url_id      TEXT NOT NULL UNIQUE,   -- random; the event's apiId
        auth_type   TEXT NOT NULL,          -- 'NONE' or 'AWS_IAM'
        cors        TEXT,                   -- JSON of the CORS settings; NULL = none
        invoke_mode TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (function, qualifier)
    ) STRICT;
    "#,
    // 9: access control: the function patterns a key is limited to (JSON array; NULL =
    // every function), and the audit log of management actions.
    r#"
    ALTER TABLE api_keys ADD COLUMN functions TEXT;
    CREATE TABLE audit_log (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        time    TEXT NOT NULL,
        key_id  TEXT,                       -- NULL: no key was involved
        action  TEXT NOT NULL,              -- e.g. 'function.deploy', 'key.revoke'
        target  TEXT NOT NULL,              -- the function or key the action was about
        outcome TEXT NOT NULL,              -- 'ok', 'refused' or an error code
        detail  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_log_time ON audit_log (time);
    "#,
    // 10: sandbox settings of a function and of its versions: outbound network (0/1) and
    // the size of /tmp (MiB; Lambda's EphemeralStorage).
    r#"
    ALTER TABLE functions ADD COLUMN network INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE functions ADD COLUMN ephemeral_mb INTEGER NOT NULL DEFAULT 512;
    ALTER TABLE function_versions ADD COLUMN network INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE function_versions ADD COLUMN ephemeral_mb INTEGER NOT NULL DEFAULT 512;
    "#,
    // 11: invocation records and their logs. Times are epoch milliseconds (range queries),
    // durations microseconds. Neither references `functions`: both outlive a deleted
    // function until retention removes them. A log row's id orders the logs as written.
    r#"
    CREATE TABLE invocations (
        request_id         TEXT PRIMARY KEY,
        function           TEXT NOT NULL,
        version            TEXT NOT NULL,   -- '$LATEST' or a version number
        caller             TEXT,            -- key id; NULL for a public function URL
        trigger            TEXT NOT NULL,   -- 'sync', 'event' or 'url'
        started_at         INTEGER NOT NULL,
        ended_at           INTEGER NOT NULL,
        status             TEXT NOT NULL,   -- 'success', 'function_error', 'timeout', ...
        error_type         TEXT,
        cold_start         INTEGER NOT NULL,
        queue_wait_us      INTEGER NOT NULL,
        init_duration_us   INTEGER,
        duration_us        INTEGER NOT NULL,
        max_memory_used_mb INTEGER NOT NULL,
        memory_size_mb     INTEGER NOT NULL,
        response_bytes     INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX invocations_function_started ON invocations (function, started_at);
    CREATE INDEX invocations_started ON invocations (started_at);
    CREATE TABLE invocation_logs (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL UNIQUE,
        function   TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        bytes      INTEGER NOT NULL,
        text       TEXT NOT NULL
    ) STRICT;
    CREATE INDEX invocation_logs_function ON invocation_logs (function, id);
    CREATE INDEX invocation_logs_started ON invocation_logs (started_at);
    "#,
    // 12: resource-based policy statements (Lambda's AddPermission): who may invoke a
    // function (or one alias or version of it: `qualifier`, '' for the function itself).
    // The conditions are kept as given; the core decides which mean something.
    r#"
    CREATE TABLE function_policies (
        function         TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier        TEXT NOT NULL,
        statement_id     TEXT NOT NULL,
        action           TEXT NOT NULL,
        principal        TEXT NOT NULL,
        source_arn       TEXT,
        source_account   TEXT,
        principal_org_id TEXT,
        url_auth_type    TEXT,
        created_at       TEXT NOT NULL,
        PRIMARY KEY (function, qualifier, statement_id)
    ) STRICT;
    "#,
    // 13: the durable queue of asynchronous invocations (events.rs). Times are epoch
    // milliseconds on the database's clock, so leases mean the same to every process that
    // shares the database. Events do not reference `functions`: deleting a function turns its
    // queued events into dead letters, which outlive it. Idempotency keys are a table of their
    // own because they outlive the event they name (the window is longer than a run).
    // Event invoke configurations (Lambda's PutFunctionEventInvokeConfig) go with their
    // function. Each invocation record may name the event and attempt it ran.
    r#"
    CREATE TABLE events (
        id          TEXT PRIMARY KEY,        -- time-ordered UUID
        function    TEXT NOT NULL,
        qualifier   TEXT,                    -- NULL: unqualified ($LATEST)
        payload     BLOB NOT NULL,
        caller      TEXT,                    -- the key that enqueued it
        state       TEXT NOT NULL,           -- 'queued' or 'dead'
        accepted_at INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,        -- attempts that ran (and failed)
        throttles   INTEGER NOT NULL,        -- throttled tries since the last attempt
        next_at     INTEGER NOT NULL,        -- not claimed before this
        lease_owner TEXT,
        lease_until INTEGER,
        last_error  TEXT,
        dead_reason TEXT,
        dead_at     INTEGER,
        record      TEXT                     -- a dead letter's invocation record (JSON)
    ) STRICT;
    CREATE INDEX events_due ON events (next_at) WHERE state = 'queued';
    CREATE INDEX events_function ON events (function, state, accepted_at);
    CREATE TABLE event_idempotency (
        function   TEXT NOT NULL,
        key        TEXT NOT NULL,
        event_id   TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (function, key)
    ) STRICT;
    CREATE INDEX event_idempotency_expires ON event_idempotency (expires_at);
    CREATE TABLE event_invoke_configs (
        function      TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier     TEXT NOT NULL,         -- '$LATEST', a version number or an alias
        max_retries   INTEGER,               -- NULL: the default
        max_age_s     INTEGER,               -- NULL: the default
        on_success    TEXT,                  -- destination ARN
        on_failure    TEXT,
        last_modified INTEGER NOT NULL,      -- epoch ms
        PRIMARY KEY (function, qualifier)
    ) STRICT;
    ALTER TABLE invocations ADD COLUMN event_id TEXT;
    ALTER TABLE invocations ADD COLUMN attempt INTEGER;
    "#,
    // 14: schedules (schedules.rs): a function invoked asynchronously at the slots of an
    // expression. `through` is the fire bookkeeping (every slot at or before it is dealt
    // with), moved in the same transaction that enqueues a fire's event.
    r#"
    CREATE TABLE schedules (
        id         TEXT PRIMARY KEY,        -- UUID, named by fires' idempotency keys
        name       TEXT NOT NULL UNIQUE,
        function   TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier  TEXT,                    -- NULL: unqualified ($LATEST)
        expression TEXT NOT NULL,           -- cron(...), rate(...) or at(...)
        timezone   TEXT NOT NULL,           -- IANA name
        payload    BLOB,                    -- NULL: the Scheduled Event document
        state      TEXT NOT NULL,           -- 'enabled' or 'paused'
        missed     TEXT NOT NULL,           -- 'run-once' or 'skip'
        anchor     INTEGER NOT NULL,        -- epoch ms; rate slots count from here
        through    INTEGER,                 -- epoch ms; slots up to here are dealt with
        last_fired INTEGER,                 -- epoch ms; the slot of the last fire
        caller     TEXT,                    -- the key fires run as
        revision   INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX schedules_function ON schedules (function);
    "#,
    // 15: code packages in the database, for stores shared by several hosts
    // (code_packages.rs): each host unpacks them into its own package directory. Unused on a
    // store of its own (SQLite): packages live in the data directory only.
    r#"
    CREATE TABLE code_packages (
        sha256    TEXT PRIMARY KEY,         -- hex SHA-256 of the zip
        zip       BLOB NOT NULL,            -- the zip, byte for byte as uploaded
        size      INTEGER NOT NULL,
        stored_at INTEGER NOT NULL          -- epoch ms, database clock; set at each upload
    ) STRICT;
    "#,
    // 16: cluster membership (cluster.rs). A worker's row is keyed by its address; each
    // registration takes a new generation from `worker_generations` (AUTOINCREMENT: strictly
    // increasing, never reused), its fencing token. Leases and `last_seen` are epoch ms on
    // the database's clock.
    r#"
    CREATE TABLE worker_generations (
        generation INTEGER PRIMARY KEY AUTOINCREMENT,
        address    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE workers (
        address     TEXT PRIMARY KEY,       -- ip:port of its internal server
        name        TEXT NOT NULL,
        capacity    INTEGER NOT NULL,       -- most sandboxes it runs at once
        generation  INTEGER NOT NULL UNIQUE,
        lease_until INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        renewed_at  INTEGER NOT NULL,
        status      TEXT NOT NULL           -- JSON: sandboxes, busy, load, idle warm keys
    ) STRICT;
    CREATE TABLE api_nodes (
        id         TEXT PRIMARY KEY,        -- UUID per process
        name       TEXT NOT NULL,
        address    TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        last_seen  INTEGER NOT NULL
    ) STRICT;
    "#,
    // 17: a reserved function's home worker (cluster.rs): claimed by the worker that first
    // runs it under a generation; another may take it only once that generation's lease ran
    // out, so one scheduler at a time enforces the reservation.
    r#"
    CREATE TABLE function_homes (
        function   TEXT PRIMARY KEY,
        address    TEXT NOT NULL,
        generation INTEGER NOT NULL
    ) STRICT;
    "#,
    // 18: the cache epoch (changes.rs): every committed change of a row nodes cache moves it,
    // in the change's own transaction.
    r#"
    CREATE TABLE cache_epoch (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        epoch INTEGER NOT NULL
    ) STRICT;
    INSERT INTO cache_epoch (id, epoch) VALUES (1, 0);
    CREATE TRIGGER functions_insert_epoch AFTER INSERT ON functions
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER functions_update_epoch AFTER UPDATE ON functions
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER functions_delete_epoch AFTER DELETE ON functions
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_versions_insert_epoch AFTER INSERT ON function_versions
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_versions_update_epoch AFTER UPDATE ON function_versions
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_versions_delete_epoch AFTER DELETE ON function_versions
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_aliases_insert_epoch AFTER INSERT ON function_aliases
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_aliases_update_epoch AFTER UPDATE ON function_aliases
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_aliases_delete_epoch AFTER DELETE ON function_aliases
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_urls_insert_epoch AFTER INSERT ON function_urls
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_urls_update_epoch AFTER UPDATE ON function_urls
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_urls_delete_epoch AFTER DELETE ON function_urls
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_policies_insert_epoch AFTER INSERT ON function_policies
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_policies_update_epoch AFTER UPDATE ON function_policies
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER function_policies_delete_epoch AFTER DELETE ON function_policies
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER api_keys_insert_epoch AFTER INSERT ON api_keys
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER api_keys_update_epoch AFTER UPDATE ON api_keys
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    CREATE TRIGGER api_keys_delete_epoch AFTER DELETE ON api_keys
        BEGIN UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1; END;
    "#,
    // 19: layers (layers.rs): a layer's versions, immutable, numbered from a per-layer
    // counter never reused (`layers.last_version`); a function's and a version's ordered
    // layers (JSON array, each with its package's hash so that deleting the layer version
    // leaves the function working).
    r#"
    CREATE TABLE layers (
        name         TEXT PRIMARY KEY,
        last_version INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE layer_versions (
        layer         TEXT NOT NULL,
        version       INTEGER NOT NULL,
        description   TEXT NOT NULL,
        license       TEXT,
        runtimes      TEXT NOT NULL,       -- JSON array of runtime names
        code_sha256   TEXT NOT NULL,
        code_size     INTEGER NOT NULL,    -- the zip's size
        unzipped_size INTEGER NOT NULL,
        created_at    TEXT NOT NULL,
        PRIMARY KEY (layer, version)
    ) STRICT;
    ALTER TABLE functions ADD COLUMN layers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE function_versions ADD COLUMN layers TEXT NOT NULL DEFAULT '[]';
    "#,
    // 20: how the sandbox that ran an invocation was initialised (`InitType`: on-demand,
    // provisioned-concurrency, snap-start).
    r#"
    ALTER TABLE invocations ADD COLUMN init_type TEXT NOT NULL DEFAULT 'on-demand';
    "#,
    // 21: provisioned concurrency (provisioned.rs): how many initialised sandboxes to keep
    // ready for a published version or an alias; removed with the function (cascade), the
    // version or the alias (in their delete's transaction). Status is the keeper's, not
    // stored.
    r#"
    CREATE TABLE provisioned_concurrency (
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier   TEXT NOT NULL,          -- a version number or an alias name
        requested   INTEGER NOT NULL,
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (function, qualifier)
    ) STRICT;
    "#,
    // 22: SnapStart (`SnapStart.ApplyOn`: None, PublishedVersions) of a function and of each
    // version, published with it.
    r#"
    ALTER TABLE functions ADD COLUMN snap_start TEXT NOT NULL DEFAULT 'None';
    ALTER TABLE function_versions ADD COLUMN snap_start TEXT NOT NULL DEFAULT 'None';
    "#,
];
