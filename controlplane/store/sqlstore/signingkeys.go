package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

// ListSigningKeys implements store.Store.
func (s *Store) ListSigningKeys(ctx context.Context, tenant credential.Tenant) ([]store.SigningKey, error) {
	const op = "list signing keys"
	if s.closed.Load() {
		return nil, closedError(op, "")
	}
	rows, err := s.db.QueryContext(ctx, s.dialect.rebind(`SELECT generation, kid, algorithm, sealed, create_time, not_after
FROM signing_keys WHERE nid = ? ORDER BY generation`), string(tenant))
	if err != nil {
		return nil, s.fail(ctx, err, op, "")
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		k := store.SigningKey{Tenant: tenant}
		var created int64
		var notAfter sql.NullInt64
		if err := rows.Scan(&k.Generation, &k.ID, &k.Algorithm, &k.Sealed, &created, &notAfter); err != nil {
			return nil, s.fail(ctx, err, op, "")
		}
		k.CreateTime = fromMicros(created)
		if notAfter.Valid {
			k.NotAfter = fromMicros(notAfter.Int64)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, err, op, "")
	}
	return out, nil
}

// CreateSigningKey implements store.Tx.
func (t *tx) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	const op = "create signing key"
	_, err := t.tx.ExecContext(ctx, t.s.dialect.rebind(`INSERT INTO signing_keys
(nid, generation, kid, algorithm, sealed, create_time, not_after) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		string(k.Tenant), k.Generation, k.ID, k.Algorithm, k.Sealed, toMicros(k.CreateTime), nullMicros(k.NotAfter))
	if err != nil {
		return t.s.fail(ctx, err, op, credential.KeyID(k.ID))
	}
	return nil
}

// RetireSigningKey implements store.Tx.
func (t *tx) RetireSigningKey(ctx context.Context, tenant credential.Tenant, generation int64, notAfter time.Time) error {
	return t.execOne(ctx, "retire signing key", "", t.s.dialect.rebind(`UPDATE signing_keys SET not_after = ? WHERE nid = ? AND generation = ?`),
		toMicros(notAfter), string(tenant), generation)
}
