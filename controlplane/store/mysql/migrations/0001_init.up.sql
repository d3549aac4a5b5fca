-- The MySQL form of SQLite's 0001_init. MySQL commits DDL implicitly, so this
-- file is idempotent: each table is created with its indexes in one
-- statement, IF NOT EXISTS, and a run that failed halfway completes when run
-- again.
--
-- Identifiers are VARBINARY: byte order, case-sensitive, and trailing spaces
-- significant (utf8mb4_bin pads, so "r" and "r " would be one request ID).
-- Timestamps are unix microseconds in UTC; scopes, metadata and
-- allowed_cidrs are JSON text, kept verbatim (the JSON type would reformat
-- it). NULL request_id and superseded_by mean "none"; a unique index allows
-- any number of NULLs. Index widths stay under InnoDB's 3072 bytes.
CREATE TABLE IF NOT EXISTS api_keys (
    nid                    VARBINARY(255)  NOT NULL,
    kind                   SMALLINT        NOT NULL,
    key_id                 VARBINARY(255)  NOT NULL,
    name                   VARCHAR(1024)   NOT NULL DEFAULT '',
    actor_id               VARBINARY(1024) NOT NULL DEFAULT '',
    scopes                 MEDIUMTEXT      NOT NULL,
    metadata               MEDIUMTEXT      NOT NULL,
    status                 SMALLINT        NOT NULL,
    visibility             SMALLINT        NOT NULL,
    rate_limit_quota       BIGINT,
    rate_limit_window_ms   BIGINT,
    rate_limit_unit        VARCHAR(255),
    allowed_cidrs          MEDIUMTEXT      NOT NULL,
    revocation_reason      SMALLINT        NOT NULL DEFAULT 0,
    revocation_description TEXT            NOT NULL,
    create_time            BIGINT          NOT NULL,
    update_time            BIGINT          NOT NULL,
    expire_time            BIGINT,
    last_used_time         BIGINT,
    request_id             VARBINARY(255),
    token_prefix           VARCHAR(255)    NOT NULL DEFAULT '',
    version                VARCHAR(255)    NOT NULL DEFAULT '',
    secret_hash            VARBINARY(512),
    superseded_by          VARBINARY(255),
    PRIMARY KEY (nid, kind, key_id),
    -- Idempotent create: one key per (tenant, kind, request id).
    UNIQUE KEY api_keys_request_id (nid, kind, request_id),
    -- List by owner, in keyset order.
    KEY api_keys_actor_id (nid, kind, actor_id, key_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

-- The outbox. InnoDB keeps the AUTO_INCREMENT counter across restarts
-- (MySQL 8, MariaDB 10.2.4+), so a seq is never reused.
CREATE TABLE IF NOT EXISTS events (
    seq    BIGINT         NOT NULL AUTO_INCREMENT,
    nid    VARBINARY(255) NOT NULL,
    kind   SMALLINT       NOT NULL,
    key_id VARBINARY(255) NOT NULL,
    type   SMALLINT       NOT NULL,
    time   BIGINT         NOT NULL,
    PRIMARY KEY (seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

-- One row, locked FOR UPDATE before every event insert until commit, so that
-- seq order (assigned at insert) is commit order and a tailer's cursor never
-- passes an event that commits later.
CREATE TABLE IF NOT EXISTS events_lock (
    id TINYINT NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;

INSERT IGNORE INTO events_lock (id) VALUES (1);
