-- Keys of both kinds. Timestamps are unix microseconds in UTC; scopes,
-- metadata and allowed_cidrs are JSON text. NULL request_id and
-- superseded_by mean "none", so that the unique index ignores them.
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
    secret_hash            BLOB,
    superseded_by          TEXT,
    PRIMARY KEY (nid, kind, key_id)
);

-- Idempotent create: one key per (tenant, kind, request id).
CREATE UNIQUE INDEX api_keys_request_id ON api_keys (nid, kind, request_id);

-- List by owner, in keyset order.
CREATE INDEX api_keys_actor_id ON api_keys (nid, kind, actor_id, key_id);

-- The outbox. AUTOINCREMENT never reuses a seq, even after the newest row
-- is deleted, so a tailer's cursor stays valid.
CREATE TABLE events (
    seq    INTEGER  PRIMARY KEY AUTOINCREMENT,
    nid    TEXT     NOT NULL,
    kind   SMALLINT NOT NULL,
    key_id TEXT     NOT NULL,
    type   SMALLINT NOT NULL,
    time   BIGINT   NOT NULL
);
