-- Reverses 0002: the release before it keeps no signing keys, so dropping them
-- loses only derived tokens, which stop verifying (0001_init has no down step:
-- it would drop every key).
DROP TABLE signing_keys;
