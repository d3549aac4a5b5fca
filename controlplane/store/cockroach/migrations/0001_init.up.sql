-- CockroachDB's version of PostgreSQL's 0001_init (see the postgres
-- package); the other migrations are PostgreSQL's. It differs in two ways:
--
--  - no COLLATE "C": CockroachDB compares STRING by bytes already, and does
--    not accept "C" as a column collation;
--  - the events_lock row: CockroachDB's advisory locks were no-ops until its
--    latest releases, so the store updates this row before appending an
--    event instead (Dialect.LockEvents).
--    The update's write intent holds every other event-appending
--    transaction until this one commits or aborts, which makes events.seq
--    order the commit order, as the advisory lock does on PostgreSQL.
CREATE TABLE api_keys (
    nid                    TEXT     NOT NULL,
    kind                   SMALLINT NOT NULL,
    key_id                 TEXT     NOT NULL,
    name                   TEXT     NOT NULL DEFAULT '',
    actor_id               TEXT     NOT NULL DEFAULT '',
    scopes                 TEXT     NOT NULL DEFAULT '[]',
    metadata               TEXT     NOT NULL DEFAULT '{}',
    status                 SMALLINT NOT NULL,
    visibility             SMALLINT NOT NULL,
    rate_limit_quota       BIGINT,
    rate_limit_window_ms   BIGINT,
    rate_limit_unit        TEXT,
    allowed_cidrs          TEXT     NOT NULL DEFAULT '[]',
    revocation_reason      SMALLINT NOT NULL DEFAULT 0,
    revocation_description TEXT     NOT NULL DEFAULT '',
    create_time            BIGINT   NOT NULL,
    update_time            BIGINT   NOT NULL,
    expire_time            BIGINT,
    last_used_time         BIGINT,
    request_id             TEXT,
    token_prefix           TEXT     NOT NULL DEFAULT '',
    version                TEXT     NOT NULL DEFAULT '',
    secret_hash            BYTEA,
    superseded_by          TEXT,
    PRIMARY KEY (nid, kind, key_id)
);

CREATE UNIQUE INDEX api_keys_request_id ON api_keys (nid, kind, request_id)
    WHERE request_id IS NOT NULL;

CREATE INDEX api_keys_actor_id ON api_keys (nid, kind, actor_id, key_id);

CREATE TABLE events (
    seq    BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nid    TEXT     NOT NULL,
    kind   SMALLINT NOT NULL,
    key_id TEXT     NOT NULL,
    type   SMALLINT NOT NULL,
    time   BIGINT   NOT NULL
);

CREATE TABLE events_lock (
    id SMALLINT PRIMARY KEY,
    n  BIGINT   NOT NULL
);

INSERT INTO events_lock (id, n) VALUES (1, 0);
