-- Derived-token signing keys, sealed by the keys service under a subkey of
-- the HMAC secret. One row per (tenant, generation): replicas that start at
-- once race to insert generation 1, and the loser reads the winner's key.
CREATE TABLE signing_keys (
    nid         TEXT    NOT NULL,
    generation  BIGINT  NOT NULL,
    kid         TEXT    NOT NULL,
    algorithm   TEXT    NOT NULL,
    sealed      BYTEA   NOT NULL,
    create_time BIGINT  NOT NULL,
    not_after   BIGINT,
    PRIMARY KEY (nid, generation)
);

CREATE UNIQUE INDEX signing_keys_kid ON signing_keys (nid, kid);
