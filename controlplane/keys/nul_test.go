package keys_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/credential"
)

// TestService_NULRefusedOnEveryBackend is finding 8d of issue 11: a NUL in
// any text field of issue, import, update or rotate was stored by SQLite and
// MySQL but refused by PostgreSQL. Now the service refuses it before the
// store, with the same INVALID_ARGUMENT on every backend, and writes nothing.
func TestService_NULRefusedOnEveryBackend(t *testing.T) {
	type op func(t *testing.T, ts *testService, issued credential.Key) error
	issue := func(f func(*keys.IssueInput)) op {
		return func(t *testing.T, ts *testService, _ credential.Key) error {
			in := issueInput("alice")
			f(&in)
			_, _, err := ts.svc.Issue(t.Context(), tenantA, in)
			return err
		}
	}
	imp := func(raw string, f func(*keys.IssueInput)) op {
		return func(t *testing.T, ts *testService, _ credential.Key) error {
			in := issueInput("alice")
			f(&in)
			_, err := ts.svc.Import(t.Context(), tenantA, keys.ImportInput{IssueInput: in, RawKey: raw})
			return err
		}
	}
	update := func(p keys.Patch) op {
		return func(t *testing.T, ts *testService, k credential.Key) error {
			_, err := ts.svc.Update(t.Context(), tenantA, credential.KindIssued, k.ID, p)
			return err
		}
	}
	rotate := func(p keys.Patch) op {
		return func(t *testing.T, ts *testService, k credential.Key) error {
			_, _, _, err := ts.svc.Rotate(t.Context(), tenantA, k.ID, keys.RotateInput{Patch: p})
			return err
		}
	}
	const strong = "sk_live_51HxYzAbCdEfGhIjKlMnOpQr"
	nulMeta := json.RawMessage(`{"plan":"pro\u0000"}`)
	nulMetaKey := json.RawMessage(`{"a":{"b\u0000":1}}`)
	nulMetaArr := json.RawMessage(`{"a":[1,"\u0000"]}`)
	cases := []struct {
		name string
		run  op
	}{
		{"issue name", issue(func(in *keys.IssueInput) { in.Name = "a\x00b" })},
		{"issue actor_id", issue(func(in *keys.IssueInput) { in.ActorID = "alice\x00" })},
		{"issue scope", issue(func(in *keys.IssueInput) { in.Scopes = []string{"read", "\x00write"} })},
		{"issue metadata value", issue(func(in *keys.IssueInput) { in.Metadata = nulMeta })},
		{"issue metadata key", issue(func(in *keys.IssueInput) { in.Metadata = nulMetaKey })},
		{"issue metadata array", issue(func(in *keys.IssueInput) { in.Metadata = nulMetaArr })},
		{"issue request_id", issue(func(in *keys.IssueInput) { in.RequestID = "req\x00" })},
		{"issue rate unit", issue(func(in *keys.IssueInput) {
			in.RatePolicy = &credential.RatePolicy{Quota: 1, Window: 60e9, Unit: "req\x00"}
		})},
		{"import name", imp(strong, func(in *keys.IssueInput) { in.Name = "\x00" })},
		{"import scope", imp(strong, func(in *keys.IssueInput) { in.Scopes = []string{"a\x00"} })},
		{"import metadata", imp(strong, func(in *keys.IssueInput) { in.Metadata = nulMeta })},
		{"import raw_key", imp(strong+"\x00x", func(*keys.IssueInput) {})},
		{"update name", update(keys.Patch{Set: keys.FieldName, Attributes: keys.Attributes{Name: "x\x00"}})},
		{"update scopes", update(keys.Patch{Set: keys.FieldScopes, Attributes: keys.Attributes{Scopes: []string{"\x00"}}})},
		{"update metadata", update(keys.Patch{Set: keys.FieldMetadata, Attributes: keys.Attributes{Metadata: nulMeta}})},
		{"rotate name", rotate(keys.Patch{Set: keys.FieldName, Attributes: keys.Attributes{Name: "x\x00"}})},
		{"rotate metadata", rotate(keys.Patch{Set: keys.FieldMetadata, Attributes: keys.Attributes{Metadata: nulMetaKey}})},
	}
	backends := benchBackends(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range backends {
			if !yield(n) {
				return
			}
		}
	})
	if len(names) < 3 {
		t.Logf("backends: %v (set TALOS_TEST_POSTGRES_DSN and TALOS_TEST_MYSQL_DSN for all three)", names)
	}
	answers := map[string]map[string]string{} // case -> backend -> answer
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			ts := newTestService(t, withStore(backends[name](t)))
			issued, _ := ts.mustIssue(t, tenantA, issueInput("alice"))
			seq := ts.lastSeq(t)
			for _, c := range cases {
				err := c.run(t, ts, issued)
				checkErr(t, c.name, err, credential.ErrInvalidArgument)
				if err != nil && !strings.Contains(err.Error(), "NUL") {
					t.Errorf("%s: %v, want the NUL refusal", c.name, err)
				}
				if answers[c.name] == nil {
					answers[c.name] = map[string]string{}
				}
				answers[c.name][name] = fmt.Sprint(credential.KindOf(err), ": ", err)
			}
			if evs := ts.eventsSince(t, seq); len(evs) != 0 {
				t.Errorf("refused requests wrote %d events", len(evs))
			}
			got, err := ts.svc.Get(t.Context(), tenantA, credential.KindIssued, issued.ID)
			if err != nil || got.Name != issued.Name {
				t.Errorf("key after refused updates: %+v, %v", got, err)
			}
		})
	}
	for c, byBackend := range answers {
		for _, n := range names {
			if byBackend[n] != byBackend[names[0]] {
				t.Errorf("%s: %s answers %q, %s answers %q", c, names[0], byBackend[names[0]], n, byBackend[n])
			}
		}
	}
}
