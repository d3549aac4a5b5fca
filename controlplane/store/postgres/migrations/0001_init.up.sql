-- Keys of both kinds. Timestamps are unix microseconds in UTC; scopes,
-- metadata and allowed_cidrs are JSON text (TEXT, not JSONB, which would
-- reorder and respace them). NULL request_id and superseded_by mean "none".
--
-- The identifier columns use the "C" collation: key_id so that ORDER BY and
-- the keyset cursor (key_id > ?) follow byte order, as Go compares strings,
-- whatever the database's collation; all of them because byte comparison is
-- also the cheapest for their indexes.
CREATE TABLE api_keys (
    nid                    TEXT COLLATE "C" NOT NULL,
    kind                   SMALLINT NOT NULL,
    key_id                 TEXT COLLATE "C" NOT NULL,
    name                   TEXT     NOT NULL DEFAULT '',
    actor_id               TEXT COLLATE "C" NOT NULL DEFAULT '',
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
    request_id             TEXT COLLATE "C",
    token_prefix           TEXT     NOT NULL DEFAULT '',
    version                TEXT     NOT NULL DEFAULT '',
    secret_hash            BYTEA,
    superseded_by          TEXT,
    PRIMARY KEY (nid, kind, key_id)
);

-- Idempotent create: one key per (tenant, kind, request id). Keys without a
-- request id are not indexed.
CREATE UNIQUE INDEX api_keys_request_id ON api_keys (nid, kind, request_id)
    WHERE request_id IS NOT NULL;

-- List by owner, in keyset order.
CREATE INDEX api_keys_actor_id ON api_keys (nid, kind, actor_id, key_id);

-- The outbox. An identity never hands out a value twice, even after the
-- newest row is deleted or a transaction rolls back, so a tailer's cursor
-- stays valid; values are assigned at insert, so the store takes an advisory
-- lock before each insert to make their order the commit order.
CREATE TABLE events (
    seq    BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nid    TEXT     NOT NULL,
    kind   SMALLINT NOT NULL,
    key_id TEXT     NOT NULL,
    type   SMALLINT NOT NULL,
    time   BIGINT   NOT NULL
);
