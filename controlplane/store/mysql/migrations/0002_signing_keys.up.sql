-- Derived-token signing keys, sealed by the keys service under a subkey of
-- the HMAC secret. One row per (tenant, generation): replicas that start at
-- once race to insert generation 1, and the loser reads the winner's key.
-- Idempotent, like every MySQL migration (DDL commits implicitly).
CREATE TABLE IF NOT EXISTS signing_keys (
    nid         VARBINARY(255) NOT NULL,
    generation  BIGINT         NOT NULL,
    kid         VARBINARY(255) NOT NULL,
    algorithm   VARCHAR(32)    NOT NULL,
    sealed      MEDIUMBLOB     NOT NULL,
    create_time BIGINT         NOT NULL,
    not_after   BIGINT,
    PRIMARY KEY (nid, generation),
    UNIQUE KEY signing_keys_kid (nid, kid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;
