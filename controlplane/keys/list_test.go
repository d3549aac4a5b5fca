package keys_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/credential"
)

// listAll pages through a list with the given page size and returns the
// pages' key IDs.
func listAll(t *testing.T, ts *testService, tenant credential.Tenant, kind credential.Kind, filter string, size int) [][]credential.KeyID {
	t.Helper()
	var pages [][]credential.KeyID
	token := ""
	for {
		ks, next, err := ts.svc.List(t.Context(), tenant, kind, keys.ListInput{PageSize: size, PageToken: token, Filter: filter})
		if err != nil {
			t.Fatalf("List(filter %q, page %d): %v", filter, len(pages)+1, err)
		}
		ids := make([]credential.KeyID, len(ks))
		for i, k := range ks {
			ids[i] = k.ID
		}
		pages = append(pages, ids)
		if next == "" {
			return pages
		}
		if len(pages) > 1000 {
			t.Fatal("List never ends")
		}
		token = next
	}
}

func TestService_List_Pagination(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	want := make([]credential.KeyID, 0, 120)
	for range 120 {
		k, _ := ts.mustIssue(t, tenantA, issueInput("alice"))
		want = append(want, k.ID)
	}
	slices.Sort(want)
	ts.mustImport(t, tenantA, "sk_live_not_an_issued_key", issueInput("alice"))
	ts.mustIssue(t, tenantB, issueInput("alice"))

	tests := []struct {
		size      int
		wantSizes []int
	}{
		{50, []int{50, 50, 20}},
		{0, []int{50, 50, 20}}, // the default
		{-3, []int{50, 50, 20}},
		{120, []int{120}},
		{7, append(slices.Repeat([]int{7}, 17), 1)},
		{5000, []int{120}}, // clamped to 1000
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("page size %d", tt.size), func(t *testing.T) {
			t.Parallel()
			pages := listAll(t, ts, tenantA, credential.KindIssued, "", tt.size)
			var sizes []int
			var got []credential.KeyID
			for _, p := range pages {
				sizes = append(sizes, len(p))
				got = append(got, p...)
			}
			if diff := cmp.Diff(tt.wantSizes, sizes); diff != "" {
				t.Errorf("page sizes (-want +got):\n%s", diff)
			}
			// In key ID order, each key once.
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("listed keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestService_List_Filter(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	type state int
	const (
		active state = iota
		revoked
		expired
	)
	byActorState := map[string]map[state][]credential.KeyID{}
	add := func(actor string, s state, id credential.KeyID) {
		if byActorState[actor] == nil {
			byActorState[actor] = map[state][]credential.KeyID{}
		}
		byActorState[actor][s] = append(byActorState[actor][s], id)
	}
	// 40 keys over 2 actors and 3 states, interleaved in key order.
	for i := range 40 {
		actor := []string{"alice", "bob"}[i%2]
		in := issueInput(actor)
		s := state(i % 3)
		if s == expired {
			in.TTL = time.Minute
		}
		k, _ := ts.mustIssue(t, tenantA, in)
		if s == revoked {
			ts.mustRevoke(t, tenantA, credential.KindIssued, k.ID)
		}
		add(actor, s, k.ID)
	}
	// Revoked and expired: revoked wins.
	in := issueInput("alice")
	in.TTL = time.Minute
	k, _ := ts.mustIssue(t, tenantA, in)
	ts.mustRevoke(t, tenantA, credential.KindIssued, k.ID)
	add("alice", revoked, k.ID)
	ts.clock.Advance(time.Hour)

	collect := func(actors []string, states []state) []credential.KeyID {
		var out []credential.KeyID
		for _, a := range actors {
			for _, s := range states {
				out = append(out, byActorState[a][s]...)
			}
		}
		slices.Sort(out)
		return out
	}
	both := []string{"alice", "bob"}
	all := []state{active, revoked, expired}
	tests := []struct {
		filter string
		want   []credential.KeyID
	}{
		{``, collect(both, all)},
		{`actor_id="alice"`, collect([]string{"alice"}, all)},
		{`actor_id = "bob"`, collect([]string{"bob"}, all)},
		{`actor_id="nobody"`, nil},
		{`status=KEY_STATUS_ACTIVE`, collect(both, []state{active})},
		{`status=KEY_STATUS_REVOKED`, collect(both, []state{revoked})},
		{`status=KEY_STATUS_EXPIRED`, collect(both, []state{expired})},
		{`actor_id="alice" AND status=KEY_STATUS_REVOKED`, collect([]string{"alice"}, []state{revoked})},
		{`status=KEY_STATUS_EXPIRED AND actor_id="bob"`, collect([]string{"bob"}, []state{expired})},
		{`actor_id="bob" AND status="KEY_STATUS_ACTIVE"`, collect([]string{"bob"}, []state{active})},
	}
	for _, tt := range tests {
		for _, size := range []int{2, 1000} {
			t.Run(fmt.Sprintf("%s/page size %d", tt.filter, size), func(t *testing.T) {
				t.Parallel()
				var got []credential.KeyID
				for _, p := range listAll(t, ts, tenantA, credential.KindIssued, tt.filter, size) {
					if len(p) > size {
						t.Errorf("page of %d keys, want at most %d", len(p), size)
					}
					got = append(got, p...)
				}
				if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
					t.Errorf("listed keys (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestService_List_PageToken(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	for i := range 5 {
		ts.mustIssue(t, tenantA, issueInput("alice"))
		ts.mustIssue(t, tenantB, issueInput("alice"))
		ts.mustImport(t, tenantA, fmt.Sprintf("sk_live_pg_%d_Xq7vR2mK", i), issueInput("alice"))
	}
	const filter = `actor_id="alice"`
	_, token, err := ts.svc.List(t.Context(), tenantA, credential.KindIssued, keys.ListInput{PageSize: 2, Filter: filter})
	if err != nil || token == "" {
		t.Fatalf("List: token %q, %v", token, err)
	}
	tampered := []byte(token)
	tampered[len(tampered)/2] = substitute(tampered[len(tampered)/2])
	forged := newTestService(t, withSecrets(mustSecretSet(t, 'f')))
	forged.mustIssue(t, tenantA, issueInput("alice"))
	forged.mustIssue(t, tenantA, issueInput("alice"))
	_, forgedToken, err := forged.svc.List(t.Context(), tenantA, credential.KindIssued, keys.ListInput{PageSize: 1, Filter: filter})
	if err != nil || forgedToken == "" {
		t.Fatalf("List under another secret: token %q, %v", forgedToken, err)
	}

	tests := []struct {
		name    string
		tenant  credential.Tenant
		kind    credential.Kind
		in      keys.ListInput
		wantErr error
	}{
		{"same request", tenantA, credential.KindIssued, keys.ListInput{PageSize: 2, PageToken: token, Filter: filter}, nil},
		{"another page size is fine", tenantA, credential.KindIssued, keys.ListInput{PageSize: 9, PageToken: token, Filter: filter}, nil},
		{"tampered", tenantA, credential.KindIssued, keys.ListInput{PageToken: string(tampered), Filter: filter}, credential.ErrInvalidArgument},
		{"truncated", tenantA, credential.KindIssued, keys.ListInput{PageToken: token[:len(token)-4], Filter: filter}, credential.ErrInvalidArgument},
		{"garbage", tenantA, credential.KindIssued, keys.ListInput{PageToken: "not a token", Filter: filter}, credential.ErrInvalidArgument},
		{"too long", tenantA, credential.KindIssued, keys.ListInput{PageToken: strings.Repeat("A", 5000), Filter: filter}, credential.ErrInvalidArgument},
		{"sealed under another secret", tenantA, credential.KindIssued, keys.ListInput{PageToken: forgedToken, Filter: filter}, credential.ErrInvalidArgument},
		{"different filter", tenantA, credential.KindIssued, keys.ListInput{PageToken: token, Filter: `actor_id="bob"`}, credential.ErrInvalidArgument},
		{"filter dropped", tenantA, credential.KindIssued, keys.ListInput{PageToken: token}, credential.ErrInvalidArgument},
		{"another tenant", tenantB, credential.KindIssued, keys.ListInput{PageToken: token, Filter: filter}, credential.ErrInvalidArgument},
		{"another kind", tenantA, credential.KindImported, keys.ListInput{PageToken: token, Filter: filter}, credential.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ts.svc.List(t.Context(), tt.tenant, tt.kind, tt.in)
			checkErr(t, "List", err, tt.wantErr)
		})
	}
}

func TestService_List_BadFilter(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	for _, filter := range badFilters {
		t.Run(filter, func(t *testing.T) {
			t.Parallel()
			_, _, err := ts.svc.List(t.Context(), tenantA, credential.KindIssued, keys.ListInput{Filter: filter})
			checkErr(t, "List", err, credential.ErrInvalidArgument)
		})
	}
}

var badFilters = []string{
	`foo="bar"`,                    // unknown field
	`name="x"`,                     // unknown field
	`actor_id="a" OR actor_id="b"`, // OR
	`status=KEY_STATUS_ACTIVE OR status=KEY_STATUS_REVOKED`,
	`actor_id="a" AND actor_id="b"`, // duplicate field
	`status=KEY_STATUS_ACTIVE AND status=KEY_STATUS_ACTIVE`,
	`actor_id="a" AND `, // empty clause
	`actor_id="a" AND  AND status=KEY_STATUS_ACTIVE`,
	` AND actor_id="a"`,
	`AND`,
	`=`,
	`actor_id`,       // no value
	`actor_id=a`,     // unquoted
	`actor_id=""`,    // empty value
	`actor_id="a`,    // unterminated
	`actor_id="a"b"`, // stray quote
	`actor_id="a" status=KEY_STATUS_ACTIVE`,
	`status=ACTIVE`, // unknown status
	`status=KEY_STATUS_UNSPECIFIED`,
	`status=key_status_active`,
	`actor_id="` + strings.Repeat("a", 1100) + `"`, // too long
}

func TestParseFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want keys.Filter
	}{
		{``, keys.Filter{}},
		{`   `, keys.Filter{}},
		{`actor_id="alice"`, keys.Filter{ActorID: "alice"}},
		{`  actor_id = "alice"  `, keys.Filter{ActorID: "alice"}},
		{`actor_id="a b AND c"`, keys.Filter{ActorID: "a b AND c"}},
		{`actor_id="say \"hi\""`, keys.Filter{ActorID: `say "hi"`}},
		{`actor_id="back\\slash" AND status=KEY_STATUS_ACTIVE`, keys.Filter{ActorID: `back\slash`, Status: credential.StateActive}},
		{`actor_id="x OR y"`, keys.Filter{ActorID: "x OR y"}},
		{`status=KEY_STATUS_ACTIVE`, keys.Filter{Status: credential.StateActive}},
		{`status=KEY_STATUS_REVOKED`, keys.Filter{Status: credential.StateRevoked}},
		{`status="KEY_STATUS_EXPIRED"`, keys.Filter{Status: credential.StateExpired}},
		{`status=KEY_STATUS_REVOKED AND actor_id="u-1"`, keys.Filter{ActorID: "u-1", Status: credential.StateRevoked}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := keys.ParseFilter(tt.in)
			if err != nil {
				t.Fatalf("ParseFilter: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseFilter (-want +got):\n%s", diff)
			}
		})
	}
	for _, in := range badFilters {
		t.Run("bad/"+in, func(t *testing.T) {
			t.Parallel()
			_, err := keys.ParseFilter(in)
			checkErr(t, "ParseFilter", err, credential.ErrInvalidArgument)
		})
	}
}

// FuzzParseFilter: ParseFilter never panics, fails only with
// ErrInvalidArgument, and what it accepts survives a round trip through its
// canonical spelling.
func FuzzParseFilter(f *testing.F) {
	for _, s := range badFilters {
		f.Add(s)
	}
	for _, s := range []string{
		``, `actor_id="alice"`, `actor_id="a\"b" AND status=KEY_STATUS_ACTIVE`, `status="KEY_STATUS_EXPIRED"`,
		`actor_id="\\" AND status=KEY_STATUS_REVOKED`, `actor_id="x AND y"`, `actor_id="\`, `"`, `actor_id=" AND "`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := keys.ParseFilter(s)
		if err != nil {
			if !errors.Is(err, credential.ErrInvalidArgument) {
				t.Fatalf("ParseFilter(%q) error %v does not wrap ErrInvalidArgument", s, err)
			}
			return
		}
		if got.Status > credential.StateExpired {
			t.Fatalf("ParseFilter(%q) status = %d", s, got.Status)
		}
		canon := canonicalFilter(got)
		if len(canon) > 1024 {
			return
		}
		again, err := keys.ParseFilter(canon)
		if err != nil {
			t.Fatalf("ParseFilter(%q) = %+v, but its canonical form %q fails: %v", s, got, canon, err)
		}
		if again != got {
			t.Fatalf("round trip of %q through %q = %+v, want %+v", s, canon, again, got)
		}
	})
}

func canonicalFilter(f keys.Filter) string {
	var clauses []string
	if f.ActorID != "" {
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
		clauses = append(clauses, `actor_id="`+r.Replace(f.ActorID)+`"`)
	}
	switch f.Status {
	case credential.StateActive:
		clauses = append(clauses, "status=KEY_STATUS_ACTIVE")
	case credential.StateRevoked:
		clauses = append(clauses, "status=KEY_STATUS_REVOKED")
	case credential.StateExpired:
		clauses = append(clauses, "status=KEY_STATUS_EXPIRED")
	}
	return strings.Join(clauses, " AND ")
}
