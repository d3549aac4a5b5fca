package sqlstore

import (
	"strings"

	"github.com/talos-project/talos/controlplane/store"
)

// The shared SQL, written with ? placeholders and rebound per Dialect. It must
// stay portable: no RETURNING, no upserts, no database-specific functions.
const (
	selectKey = `SELECT ` + keyColumns + ` FROM api_keys WHERE nid = ? AND kind = ? AND key_id = ?`

	selectKeyByRequestID = `SELECT key_id, ` + keyColumns +
		` FROM api_keys WHERE nid = ? AND kind = ? AND request_id = ?`

	insertKey = `INSERT INTO api_keys (nid, kind, key_id, ` + keyColumns + `) VALUES (` +
		`?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	// updateKey leaves the identity, create_time and request_id alone, and
	// last_used_time too: TouchLastUsed owns it, and an update built from an
	// earlier read must not move it back.
	updateKey = `UPDATE api_keys SET name = ?, actor_id = ?, scopes = ?, metadata = ?, ` +
		`status = ?, visibility = ?, rate_limit_quota = ?, rate_limit_window_ms = ?, ` +
		`rate_limit_unit = ?, allowed_cidrs = ?, revocation_reason = ?, ` +
		`revocation_description = ?, update_time = ?, expire_time = ?, ` +
		`token_prefix = ?, version = ?, secret_hash = ?, superseded_by = ? ` +
		`WHERE nid = ? AND kind = ? AND key_id = ?`

	deleteKey = `DELETE FROM api_keys WHERE nid = ? AND kind = ? AND key_id = ?`

	insertEvent = `INSERT INTO events (nid, kind, key_id, type, time) VALUES (?, ?, ?, ?, ?)`

	selectEvents = `SELECT seq, nid, kind, key_id, type, time FROM events WHERE seq > ? ORDER BY seq LIMIT ?`
)

// maxIDs caps the IDs bound in one IN list, far below every database's
// parameter limit (SQLite 32766, PostgreSQL and MySQL 65535).
const maxIDs = 1000

// queries are the shared statements, rebound for one Dialect.
type queries struct {
	getKey, getKeyForUpdate, getKeyByRequestID string
	insertKey, updateKey, deleteKey            string
	insertEvent, selectEvents                  string
	// list is indexed by listVariant.
	list [4]string
}

func newQueries(d Dialect) queries {
	q := queries{
		getKey:            d.rebind(selectKey),
		getKeyForUpdate:   d.rebind(selectKey + d.LockRow),
		getKeyByRequestID: d.rebind(selectKeyByRequestID),
		insertKey:         d.rebind(insertKey),
		updateKey:         d.rebind(updateKey),
		deleteKey:         d.rebind(deleteKey),
		insertEvent:       d.rebind(insertEvent),
		selectEvents:      d.rebind(selectEvents),
	}
	for v := range q.list {
		q.list[v] = d.rebind(listQuery(v&listByActor != 0, v&listByStatus != 0))
	}
	return q
}

const (
	listByActor  = 1 << 0
	listByStatus = 1 << 1
)

// listVariant is the index into queries.list for f.
func listVariant(f store.Filter) int {
	v := 0
	if f.ActorID != "" {
		v |= listByActor
	}
	if f.Status != 0 {
		v |= listByStatus
	}
	return v
}

// listQuery is keyset pagination: the (nid, kind, key_id) primary key or the
// (nid, kind, actor_id, key_id) index serves it without OFFSET or COUNT.
func listQuery(byActor, byStatus bool) string {
	var b strings.Builder
	b.WriteString(`SELECT key_id, ` + keyColumns + ` FROM api_keys WHERE nid = ? AND kind = ?`)
	if byActor {
		b.WriteString(` AND actor_id = ?`)
	}
	if byStatus {
		b.WriteString(` AND status = ?`)
	}
	b.WriteString(` AND key_id > ? ORDER BY key_id LIMIT ?`)
	return b.String()
}

// inList returns "?, ?, …" with n placeholders.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
