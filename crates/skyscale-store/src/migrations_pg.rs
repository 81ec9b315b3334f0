//! The PostgreSQL schema: the same tables, columns, constraints and indexes as SQLite's
//! [`crate::migrations::MIGRATIONS`], entry for entry (entry N here reaches the schema of
//! entry N there), in PostgreSQL's types: `BIGINT` for `INTEGER`, `BYTEA` for `BLOB`,
//! `DOUBLE PRECISION` for `REAL`, and text compared byte by byte (`COLLATE "C"`, as SQLite's
//! `BINARY`) so that orderings and `>` cursors agree with SQLite whatever the database's
//! locale. The only column SQLite has implicitly is spelled out: `invocations.seq` orders
//! records as inserted, as SQLite's `rowid` does ([`crate::sql::Dialect::row_order`]).
//!
//! Never edit a released entry: add one here and one in `migrations.rs`, together.

pub const MIGRATIONS_PG: &[&str] = &[
    // 1: functions and API keys.
    r#"
    CREATE TABLE functions (
        name        TEXT COLLATE "C" PRIMARY KEY,
        runtime     TEXT COLLATE "C" NOT NULL,
        handler     TEXT COLLATE "C" NOT NULL,
        memory_mb   BIGINT NOT NULL,
        timeout_s   BIGINT NOT NULL,
        environment TEXT COLLATE "C" NOT NULL,          -- JSON object of strings
        description TEXT COLLATE "C" NOT NULL,
        code_sha256 TEXT COLLATE "C",                   -- hex; NULL until code is deployed
        code_size   BIGINT,
        revision    BIGINT NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        updated_at  TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE api_keys (
        id            TEXT COLLATE "C" PRIMARY KEY,
        secret_sha256 TEXT COLLATE "C" NOT NULL,        -- hex SHA-256 of the secret, never the secret
        role          TEXT COLLATE "C" NOT NULL,
        description   TEXT COLLATE "C" NOT NULL,
        created_at    TEXT COLLATE "C" NOT NULL,
        revoked_at    TEXT COLLATE "C"
    );
    "#,
    // 2: per-function reserved concurrency (NULL = no reservation, 0 = disabled).
    r#"
    ALTER TABLE functions ADD COLUMN reserved_concurrency BIGINT;
    "#,
    // 3: each key's secret sealed (AEAD) with the server key, for SigV4; NULL for keys
    // created before, which can then only authenticate with a bearer token.
    r#"
    ALTER TABLE api_keys ADD COLUMN secret_sealed BYTEA;
    "#,
    // 4: tags on functions (TagResource), gone with their function.
    r#"
    CREATE TABLE function_tags (
        function TEXT COLLATE "C" NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        key      TEXT COLLATE "C" NOT NULL,
        value    TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (function, key)
    );
    "#,
    // 5: published versions: immutable snapshots of a function's code and configuration.
    // `last_version` is the highest number ever given, so a deleted version's number is
    // never reused.
    r#"
    ALTER TABLE functions ADD COLUMN last_version BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE function_versions (
        function    TEXT COLLATE "C" NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        version     BIGINT NOT NULL,
        runtime     TEXT COLLATE "C" NOT NULL,
        handler     TEXT COLLATE "C" NOT NULL,
        memory_mb   BIGINT NOT NULL,
        timeout_s   BIGINT NOT NULL,
        environment TEXT COLLATE "C" NOT NULL,
        description TEXT COLLATE "C" NOT NULL,
        code_sha256 TEXT COLLATE "C" NOT NULL,
        code_size   BIGINT NOT NULL,
        revision    BIGINT NOT NULL,       -- the function's revision when published
        created_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (function, version)
    );
    "#,
    // 6: aliases: a name for a published version, optionally routing a share of the
    // invocations (`extra_weight`, 0..=1) to one other published version.
    r#"
    CREATE TABLE function_aliases (
        function      TEXT COLLATE "C" NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name          TEXT COLLATE "C" NOT NULL,
        version       BIGINT NOT NULL,
        description   TEXT COLLATE "C" NOT NULL,
        extra_version BIGINT,
        extra_weight  DOUBLE PRECISION,
        revision      BIGINT NOT NULL,
        created_at    TEXT COLLATE "C" NOT NULL,
        updated_at    TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (function, name)
    );
    "#,
    // 7: an alias may point at $LATEST (version NULL).
    r#"
    ALTER TABLE function_aliases ALTER COLUMN version DROP NOT NULL;
    "#,
    // 8: function URLs: an HTTP endpoint for $LATEST or an alias.
    r#"
    CREATE TABLE function_urls (
        function    TEXT COLLATE "C" NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier   TEXT COLLATE "C" NOT NULL,          -- '$LATEST' or an alias name
        url_id      TEXT COLLATE "C" NOT NULL UNIQUE,   -- random; the event's apiId
        auth_type   TEXT COLLATE "C" NOT NULL,          -- 'NONE' or 'AWS_IAM'
        cors        TEXT COLLATE "C",                   -- JSON of the CORS settings; NULL = none
        invoke_mode TEXT COLLATE "C" NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        updated_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (function, qualifier)
    );
    "#,
    // 9: access control: the function patterns a key is limited to (JSON array; NULL =
    // every function), and the audit log of management actions.
    r#"
    ALTER TABLE api_keys ADD COLUMN functions TEXT COLLATE "C";
    CREATE TABLE audit_log (
        id      BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        time    TEXT COLLATE "C" NOT NULL,
        key_id  TEXT COLLATE "C",                       -- NULL: no key was involved
        action  TEXT COLLATE "C" NOT NULL,              -- e.g. 'function.deploy', 'key.revoke'
        target  TEXT COLLATE "C" NOT NULL,              -- the function or key the action was about
        outcome TEXT COLLATE "C" NOT NULL,              -- 'ok', 'refused' or an error code
        detail  TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX audit_log_time ON audit_log (time);
    "#,
    // 10: sandbox settings of a function and of its versions: outbound network (0/1) and
    // the size of /tmp (MiB; Lambda's EphemeralStorage).
    r#"
    ALTER TABLE functions ADD COLUMN network BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE functions ADD COLUMN ephemeral_mb BIGINT NOT NULL DEFAULT 512;
    ALTER TABLE function_versions ADD COLUMN network BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE function_versions ADD COLUMN ephemeral_mb BIGINT NOT NULL DEFAULT 512;
    "#,
    // 11: invocation records and their logs. Times are epoch milliseconds (range queries),
    // durations microseconds. Neither references `functions`: both outlive a deleted
    // function until retention removes them. A log row's id orders the logs as written.
    r#"
    CREATE TABLE invocations (
        seq                BIGINT GENERATED ALWAYS AS IDENTITY, -- insertion order (SQLite's rowid)
        request_id         TEXT COLLATE "C" PRIMARY KEY,
        function           TEXT COLLATE "C" NOT NULL,
        version            TEXT COLLATE "C" NOT NULL,   -- '$LATEST' or a version number
        caller             TEXT COLLATE "C",            -- key id; NULL for a public function URL
        trigger            TEXT COLLATE "C" NOT NULL,   -- 'sync', 'event' or 'url'
        started_at         BIGINT NOT NULL,
        ended_at           BIGINT NOT NULL,
        status             TEXT COLLATE "C" NOT NULL,   -- 'success', 'function_error', 'timeout', ...
        error_type         TEXT COLLATE "C",
        cold_start         BIGINT NOT NULL,
        queue_wait_us      BIGINT NOT NULL,
        init_duration_us   BIGINT,
        duration_us        BIGINT NOT NULL,
        max_memory_used_mb BIGINT NOT NULL,
        memory_size_mb     BIGINT NOT NULL,
        response_bytes     BIGINT NOT NULL
    );
    CREATE INDEX invocations_function_started ON invocations (function, started_at);
    CREATE INDEX invocations_started ON invocations (started_at);
    CREATE TABLE invocation_logs (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        request_id TEXT COLLATE "C" NOT NULL UNIQUE,
        function   TEXT COLLATE "C" NOT NULL,
        started_at BIGINT NOT NULL,
        bytes      BIGINT NOT NULL,
        text       TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX invocation_logs_function ON invocation_logs (function, id);
    CREATE INDEX invocation_logs_started ON invocation_logs (started_at);
    "#,
    // 12: resource-based policy statements (Lambda's AddPermission): who may invoke a
    // function (or one alias or version of it: `qualifier`, '' for the function itself).
    // The conditions are kept as given; the core decides which mean something.
    r#"
    CREATE TABLE function_policies (
        function         TEXT COLLATE "C" NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier        TEXT COLLATE "C" NOT NULL,
        statement_id     TEXT COLLATE "C" NOT NULL,
        action           TEXT COLLATE "C" NOT NULL,
        principal        TEXT COLLATE "C" NOT NULL,
        source_arn       TEXT COLLATE "C",
        source_account   TEXT COLLATE "C",
        principal_org_id TEXT COLLATE "C",
        url_auth_type    TEXT COLLATE "C",
        created_at       TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (function, qualifier, statement_id)
    );
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
        id          TEXT COLLATE "C" PRIMARY KEY,        -- time-ordered UUID
        function    TEXT COLLATE "C" NOT NULL,
        qualifier   TEXT COLLATE "C",                    -- NULL: unqualified ($LATEST)
        payload     BYTEA NOT NULL,
        caller      TEXT COLLATE "C",                    -- the key that enqueued it
        state       TEXT COLLATE "C" NOT NULL,           -- 'queued' or 'dead'
        accepted_at BIGINT NOT NULL,
        attempts    BIGINT NOT NULL,        -- attempts that ran (and failed)
        throttles   BIGINT NOT NULL,        -- throttled tries since the last attempt
        next_at     BIGINT NOT NULL,        -- not claimed before this
        lease_owner TEXT COLLATE "C",
        lease_until BIGINT,
        last_error  TEXT COLLATE "C",
        dead_reason TEXT COLLATE "C",
        dead_at     BIGINT,
        record      TEXT COLLATE "C"                     -- a dead letter's invocation record (JSON)
    );
    CREATE INDEX events_due ON events (next_at) WHERE state = 'queued';
    CREATE INDEX events_function ON events (function, state, accepted_at);
    CREATE TABLE event_idempotency (
        function   TEXT COLLATE "C" NOT NULL,
        key        TEXT COLLATE "C" NOT NULL,
        event_id   TEXT COLLATE "C" NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (function, key)
    );
    CREATE INDEX event_idempotency_expires ON event_idempotency (expires_at);
    CREATE TABLE event_invoke_configs (
        function      TEXT COLLATE "C" NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier     TEXT COLLATE "C" NOT NULL,         -- '$LATEST', a version number or an alias
        max_retries   BIGINT,               -- NULL: the default
        max_age_s     BIGINT,               -- NULL: the default
        on_success    TEXT COLLATE "C",                  -- destination ARN
        on_failure    TEXT COLLATE "C",
        last_modified BIGINT NOT NULL,      -- epoch ms
        PRIMARY KEY (function, qualifier)
    );
    ALTER TABLE invocations ADD COLUMN event_id TEXT COLLATE "C";
    ALTER TABLE invocations ADD COLUMN attempt BIGINT;
    "#,
    // 14: schedules (schedules.rs): a function invoked asynchronously at the slots of an
    // expression. `through` is the fire bookkeeping (every slot at or before it is dealt
    // with), moved in the same transaction that enqueues a fire's event.
    r#"
    CREATE TABLE schedules (
        id         TEXT COLLATE "C" PRIMARY KEY,        -- UUID, named by fires' idempotency keys
        name       TEXT COLLATE "C" NOT NULL UNIQUE,
        function   TEXT COLLATE "C" NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier  TEXT COLLATE "C",                    -- NULL: unqualified ($LATEST)
        expression TEXT COLLATE "C" NOT NULL,           -- cron(...), rate(...) or at(...)
        timezone   TEXT COLLATE "C" NOT NULL,           -- IANA name
        payload    BYTEA,                    -- NULL: the Scheduled Event document
        state      TEXT COLLATE "C" NOT NULL,           -- 'enabled' or 'paused'
        missed     TEXT COLLATE "C" NOT NULL,           -- 'run-once' or 'skip'
        anchor     BIGINT NOT NULL,        -- epoch ms; rate slots count from here
        through    BIGINT,                 -- epoch ms; slots up to here are dealt with
        last_fired BIGINT,                 -- epoch ms; the slot of the last fire
        caller     TEXT COLLATE "C",                    -- the key fires run as
        revision   BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX schedules_function ON schedules (function);
    "#,
    // 15: code packages in the database (see migrations.rs).
    r#"
    CREATE TABLE code_packages (
        sha256    TEXT COLLATE "C" PRIMARY KEY,
        zip       BYTEA NOT NULL,
        size      BIGINT NOT NULL,
        stored_at BIGINT NOT NULL
    );
    "#,
    // 16: cluster membership (cluster.rs), as in SQLite's 16. The generation is an
    // identity column: strictly increasing, never reused.
    r#"
    CREATE TABLE worker_generations (
        generation BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        address    TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE workers (
        address     TEXT COLLATE "C" PRIMARY KEY,
        name        TEXT COLLATE "C" NOT NULL,
        capacity    BIGINT NOT NULL,
        generation  BIGINT NOT NULL UNIQUE,
        lease_until BIGINT NOT NULL,
        started_at  BIGINT NOT NULL,
        renewed_at  BIGINT NOT NULL,
        status      TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE api_nodes (
        id         TEXT COLLATE "C" PRIMARY KEY,
        name       TEXT COLLATE "C" NOT NULL,
        address    TEXT COLLATE "C" NOT NULL,
        started_at BIGINT NOT NULL,
        last_seen  BIGINT NOT NULL
    );
    "#,
    // 17: a reserved function's home worker (cluster.rs), as in SQLite's 17.
    r#"
    CREATE TABLE function_homes (
        function   TEXT COLLATE "C" PRIMARY KEY,
        address    TEXT COLLATE "C" NOT NULL,
        generation BIGINT NOT NULL
    );
    "#,
    // 18: the cache epoch (changes.rs), as in SQLite's 18; the same trigger notifies
    // `skyscale_cache` (delivered at commit), a hint for the nodes that listen.
    r#"
    CREATE TABLE cache_epoch (
        id    BIGINT PRIMARY KEY CHECK (id = 1),
        epoch BIGINT NOT NULL
    );
    INSERT INTO cache_epoch (id, epoch) VALUES (1, 0);
    CREATE FUNCTION skyscale_cache_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE e BIGINT;
    BEGIN
        UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch INTO e;
        PERFORM pg_notify('skyscale_cache', e::text);
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER functions_epoch AFTER INSERT OR UPDATE OR DELETE ON functions
        FOR EACH ROW EXECUTE FUNCTION skyscale_cache_changed();
    CREATE TRIGGER function_versions_epoch AFTER INSERT OR UPDATE OR DELETE ON function_versions
        FOR EACH ROW EXECUTE FUNCTION skyscale_cache_changed();
    CREATE TRIGGER function_aliases_epoch AFTER INSERT OR UPDATE OR DELETE ON function_aliases
        FOR EACH ROW EXECUTE FUNCTION skyscale_cache_changed();
    CREATE TRIGGER function_urls_epoch AFTER INSERT OR UPDATE OR DELETE ON function_urls
        FOR EACH ROW EXECUTE FUNCTION skyscale_cache_changed();
    CREATE TRIGGER function_policies_epoch AFTER INSERT OR UPDATE OR DELETE ON function_policies
        FOR EACH ROW EXECUTE FUNCTION skyscale_cache_changed();
    CREATE TRIGGER api_keys_epoch AFTER INSERT OR UPDATE OR DELETE ON api_keys
        FOR EACH ROW EXECUTE FUNCTION skyscale_cache_changed();
    "#,
    // 19: layers (layers.rs), as in SQLite's 19.
    r#"
    CREATE TABLE layers (
        name         TEXT COLLATE "C" PRIMARY KEY,
        last_version BIGINT NOT NULL
    );
    CREATE TABLE layer_versions (
        layer         TEXT COLLATE "C" NOT NULL,
        version       BIGINT NOT NULL,
        description   TEXT COLLATE "C" NOT NULL,
        license       TEXT COLLATE "C",
        runtimes      TEXT COLLATE "C" NOT NULL,
        code_sha256   TEXT COLLATE "C" NOT NULL,
        code_size     BIGINT NOT NULL,
        unzipped_size BIGINT NOT NULL,
        created_at    TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (layer, version)
    );
    ALTER TABLE functions ADD COLUMN layers TEXT COLLATE "C" NOT NULL DEFAULT '[]';
    ALTER TABLE function_versions ADD COLUMN layers TEXT COLLATE "C" NOT NULL DEFAULT '[]';
    "#,
    // 20: how the sandbox that ran an invocation was initialised (`InitType`: on-demand,
    // provisioned-concurrency, snap-start).
    r#"
    ALTER TABLE invocations ADD COLUMN init_type TEXT COLLATE "C" NOT NULL DEFAULT 'on-demand';
    "#,
    // 21: provisioned concurrency (provisioned.rs), as in SQLite's 21.
    r#"
    CREATE TABLE provisioned_concurrency (
        function    TEXT COLLATE "C" NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier   TEXT COLLATE "C" NOT NULL,
        requested   BIGINT NOT NULL,
        updated_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (function, qualifier)
    );
    "#,
    // 22: SnapStart (`SnapStart.ApplyOn`: None, PublishedVersions) of a function and of each
    // version, published with it.
    r#"
    ALTER TABLE functions ADD COLUMN snap_start TEXT COLLATE "C" NOT NULL DEFAULT 'None';
    ALTER TABLE function_versions ADD COLUMN snap_start TEXT COLLATE "C" NOT NULL DEFAULT 'None';
    "#,
];
