package keys_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

func TestNew(t *testing.T) {
	t.Parallel()
	st := newTestStore(t)
	secrets := mustSecretSet(t, 's')
	tests := []struct {
		name    string
		opts    keys.Options
		deps    keys.Deps
		wantErr bool
	}{
		{"defaults", keys.Options{Issuer: testIssuer, Prefix: "talos"}, keys.Deps{Store: st, Secrets: secrets}, false},
		{"v1 format", keys.Options{Issuer: testIssuer, Prefix: "talos", Format: keys.FormatV1}, keys.Deps{Store: st, Secrets: secrets}, false},
		{"no issuer", keys.Options{Prefix: "talos"}, keys.Deps{Store: st, Secrets: secrets}, true},
		{"clock skew over the bound", keys.Options{Issuer: testIssuer, Prefix: "talos", ClockSkew: time.Hour}, keys.Deps{Store: st, Secrets: secrets}, true},
		{"no store", keys.Options{Prefix: "talos"}, keys.Deps{Secrets: secrets}, true},
		{"no secrets", keys.Options{Prefix: "talos"}, keys.Deps{Store: st}, true},
		{"unknown format", keys.Options{Prefix: "talos", Format: "v3"}, keys.Deps{Store: st, Secrets: secrets}, true},
		{"no prefix", keys.Options{}, keys.Deps{Store: st, Secrets: secrets}, true},
		{"invalid prefix", keys.Options{Prefix: "ta-los"}, keys.Deps{Store: st, Secrets: secrets}, true},
		{"prefix too long", keys.Options{Prefix: strings.Repeat("a", 17)}, keys.Deps{Store: st, Secrets: secrets}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := keys.New(tt.opts, tt.deps)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("New error = %v, want error %t", err, tt.wantErr)
			}
		})
	}
}

func TestService_Issue(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := keys.IssueInput{
		Attributes: keys.Attributes{
			Name:         "deploy bot",
			Scopes:       []string{"deploy:write"},
			Metadata:     json.RawMessage(`{ "team" : "infra",  "tier": 1 }`),
			RatePolicy:   &credential.RatePolicy{Quota: 100, Window: 90 * time.Second},
			AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")},
		},
		ActorID:   "svc-deploy",
		TTL:       24 * time.Hour,
		RequestID: "req-1",
	}
	k, secret := ts.mustIssue(t, tenantA, in)

	want := credential.Key{
		Tenant:       tenantA,
		Kind:         credential.KindIssued,
		ID:           k.ID,
		Name:         "deploy bot",
		ActorID:      "svc-deploy",
		Scopes:       []string{"deploy:write"},
		Metadata:     json.RawMessage(`{"team":"infra","tier":1}`),
		Status:       credential.StateActive,
		Visibility:   credential.VisibilitySecret,
		RatePolicy:   &credential.RatePolicy{Quota: 100, Window: 90 * time.Second, Unit: "requests"},
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		CreateTime:   epoch,
		UpdateTime:   epoch,
		ExpireTime:   epoch.Add(24 * time.Hour),
		RequestID:    "req-1",
		Prefix:       testPrefix,
		Version:      "v2",
		SecretHash:   k.SecretHash,
	}
	if diff := cmp.Diff(want, k, cmpOpts); diff != "" {
		t.Errorf("Issue key mismatch (-want +got):\n%s", diff)
	}
	if len(k.SecretHash) != 32 {
		t.Errorf("len(SecretHash) = %d, want 32", len(k.SecretHash))
	}
	p, err := apikey.Parse(secret)
	if err != nil {
		t.Fatalf("Parse(issued secret): %v", err)
	}
	if p.KeyID != k.ID || p.Prefix != testPrefix || p.Version != "v2" {
		t.Errorf("secret parses as %v, want v2 key %s with prefix %s", p, k.ID, testPrefix)
	}
	if want := ts.secrets.HashSecret(k.ID, p.Secret); !bytes.Equal(k.SecretHash, want) {
		t.Error("SecretHash is not the keyed hash of the issued secret")
	}

	got, err := ts.svc.Get(t.Context(), tenantA, credential.KindIssued, k.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(k, got, cmpOpts); diff != "" {
		t.Errorf("Get differs from the issued key (-issued +got):\n%s", diff)
	}
}

func TestService_Issue_TTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		defaultTTL time.Duration
		ttl        time.Duration
		want       time.Time
	}{
		{"no ttl and no default never expires", 0, 0, time.Time{}},
		{"default ttl applies", 48 * time.Hour, 0, epoch.Add(48 * time.Hour)},
		{"explicit ttl wins over default", 48 * time.Hour, time.Hour, epoch.Add(time.Hour)},
		{"minimum ttl", 0, time.Second, epoch.Add(time.Second)},
		{"maximum ttl", 0, 8760 * time.Hour, epoch.Add(8760 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestService(t, withOptions(func(o *keys.Options) { o.DefaultTTL = tt.defaultTTL }))
			in := issueInput("alice")
			in.TTL = tt.ttl
			k, _ := ts.mustIssue(t, tenantA, in)
			if !k.ExpireTime.Equal(tt.want) {
				t.Errorf("ExpireTime = %v, want %v", k.ExpireTime, tt.want)
			}
		})
	}
}

func TestService_Issue_InvalidArgument(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*keys.IssueInput)
	}{
		{"no name", func(in *keys.IssueInput) { in.Name = "" }},
		{"name too long", func(in *keys.IssueInput) { in.Name = strings.Repeat("n", keys.MaxNameLen+1) }},
		{"name not utf-8", func(in *keys.IssueInput) { in.Name = "bad\xff" }},
		{"no actor", func(in *keys.IssueInput) { in.ActorID = "" }},
		{"actor too long", func(in *keys.IssueInput) { in.ActorID = strings.Repeat("a", keys.MaxNameLen+1) }},
		{"empty scope", func(in *keys.IssueInput) { in.Scopes = []string{"ok", ""} }},
		{"scope too long", func(in *keys.IssueInput) { in.Scopes = []string{strings.Repeat("s", keys.MaxScopeLen+1)} }},
		{"too many scopes", func(in *keys.IssueInput) {
			in.Scopes = make([]string, keys.MaxScopes+1)
			for i := range in.Scopes {
				in.Scopes[i] = "s"
			}
		}},
		{"metadata is an array", func(in *keys.IssueInput) { in.Metadata = json.RawMessage(`[1,2]`) }},
		{"metadata is a string", func(in *keys.IssueInput) { in.Metadata = json.RawMessage(`"x"`) }},
		{"metadata is null", func(in *keys.IssueInput) { in.Metadata = json.RawMessage(`null`) }},
		{"metadata is not json", func(in *keys.IssueInput) { in.Metadata = json.RawMessage(`{"a":`) }},
		{"metadata is two objects", func(in *keys.IssueInput) { in.Metadata = json.RawMessage(`{} {}`) }},
		{"metadata over 64 KiB", func(in *keys.IssueInput) { in.Metadata = metadataOfSize(keys.MaxMetadataBytes + 1) }},
		{"negative ttl", func(in *keys.IssueInput) { in.TTL = -time.Hour }},
		{"ttl under a second", func(in *keys.IssueInput) { in.TTL = 500 * time.Millisecond }},
		{"ttl over max_ttl", func(in *keys.IssueInput) { in.TTL = 8760*time.Hour + time.Second }},
		{"request id too long", func(in *keys.IssueInput) { in.RequestID = strings.Repeat("r", keys.MaxRequestIDLen+1) }},
		{"rate quota zero", func(in *keys.IssueInput) { in.RatePolicy = &credential.RatePolicy{Window: time.Minute} }},
		{"rate window under a second", func(in *keys.IssueInput) {
			in.RatePolicy = &credential.RatePolicy{Quota: 1, Window: time.Millisecond}
		}},
		{"invalid cidr", func(in *keys.IssueInput) { in.AllowedCIDRs = []netip.Prefix{{}} }},
		{"too many cidrs", func(in *keys.IssueInput) {
			in.AllowedCIDRs = make([]netip.Prefix, keys.MaxCIDRs+1)
			for i := range in.AllowedCIDRs {
				in.AllowedCIDRs[i] = netip.MustParsePrefix("10.0.0.0/8")
			}
		}},
	}
	ts := newTestService(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := issueInput("alice")
			tt.edit(&in)
			k, secret, err := ts.svc.Issue(t.Context(), tenantA, in)
			checkErr(t, "Issue", err, credential.ErrInvalidArgument)
			if k.ID != "" || secret != "" {
				t.Errorf("Issue returned key %q and a secret with an error", k.ID)
			}
		})
	}
}

func TestService_Issue_PublicNeedsPublicPrefix(t *testing.T) {
	t.Parallel()
	ts := newTestService(t, withOptions(func(o *keys.Options) { o.PublicPrefix = "" }))
	in := issueInput("alice")
	in.Visibility = credential.VisibilityPublic
	_, _, err := ts.svc.Issue(t.Context(), tenantA, in)
	checkErr(t, "Issue public", err, credential.ErrInvalidArgument)
}

func TestService_Issue_Metadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   json.RawMessage
		want json.RawMessage
	}{
		{"nil stays nil", nil, nil},
		{"empty object is nil", json.RawMessage(` { } `), nil},
		{"compacted", json.RawMessage("{\n  \"a\": [1, 2],\n  \"b\": {\"c\": null}\n}"), json.RawMessage(`{"a":[1,2],"b":{"c":null}}`)},
		{"exactly 64 KiB", metadataOfSize(keys.MaxMetadataBytes), metadataOfSize(keys.MaxMetadataBytes)},
	}
	ts := newTestService(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := issueInput("alice")
			in.Metadata = tt.in
			k, secret := ts.mustIssue(t, tenantA, in)
			if string(k.Metadata) != string(tt.want) {
				t.Errorf("Issue Metadata = %.80q, want %.80q", k.Metadata, tt.want)
			}
			res, err := ts.verify(t, tenantA, secret)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if string(res.Metadata) != string(tt.want) {
				t.Errorf("Verify Metadata = %.80q, want %.80q", res.Metadata, tt.want)
			}
		})
	}
}

func TestService_Issue_Idempotent(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := issueInput("alice")
	in.RequestID = "5b4d7a0e-idem"
	first, secret := ts.mustIssue(t, tenantA, in)

	again, secret2, err := ts.svc.Issue(t.Context(), tenantA, in)
	if err != nil {
		t.Fatalf("second Issue: %v", err)
	}
	if again.ID != first.ID {
		t.Errorf("second Issue key ID = %s, want %s", again.ID, first.ID)
	}
	if secret2 != "" {
		t.Error("second Issue returned a secret; only the first may")
	}
	if got := ts.mustVerify(t, tenantA, secret); got != first.ID {
		t.Errorf("first secret verifies as %s, want %s", got, first.ID)
	}

	// The request ID is scoped to the tenant.
	other, _ := ts.mustIssue(t, tenantB, in)
	if other.ID == first.ID {
		t.Error("the same request ID in another tenant returned the first tenant's key")
	}
	// A different request ID is a different key.
	in.RequestID = "5b4d7a0e-other"
	third, _ := ts.mustIssue(t, tenantA, in)
	if third.ID == first.ID {
		t.Error("a new request ID returned the old key")
	}
}

func TestService_Issue_IdempotentConcurrent(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	const n = 8
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		ids     [n]credential.KeyID
		secrets [n]string
		errs    [n]error
	)
	for i := range n {
		wg.Go(func() {
			in := issueInput("alice")
			in.RequestID = "concurrent-request"
			<-start
			k, s, err := ts.svc.Issue(t.Context(), tenantA, in)
			ids[i], secrets[i], errs[i] = k.ID, s, err
		})
	}
	close(start)
	wg.Wait()

	withSecret := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Issue %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("Issue %d returned key %s, want %s", i, ids[i], ids[0])
		}
		if secrets[i] != "" {
			withSecret++
		}
	}
	if withSecret != 1 {
		t.Errorf("%d calls returned a secret, want exactly 1", withSecret)
	}
	list, _, err := ts.svc.List(t.Context(), tenantA, credential.KindIssued, keys.ListInput{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 {
		t.Errorf("List returned %d keys, want 1", len(list))
	}
}

// TestService_Issue_DoesNotModifyInput: the caller owns the slices and
// pointers of its input; Issue must not write to them (several requests may
// share a template, concurrently).
func TestService_Issue_DoesNotModifyInput(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")}
	policy := &credential.RatePolicy{Quota: 10, Window: 1500 * time.Millisecond}
	in := issueInput("alice")
	in.AllowedCIDRs, in.RatePolicy = cidrs, policy

	k, _ := ts.mustIssue(t, tenantA, in)

	if want := netip.MustParsePrefix("10.0.0.0/8"); len(k.AllowedCIDRs) != 1 || k.AllowedCIDRs[0] != want {
		t.Errorf("stored AllowedCIDRs = %v, want [%v]", k.AllowedCIDRs, want)
	}
	if got, want := cidrs[0], netip.MustParsePrefix("10.1.2.3/8"); got != want {
		t.Errorf("caller's AllowedCIDRs[0] = %v after Issue, want it unchanged (%v)", got, want)
	}
	if diff := cmp.Diff(credential.RatePolicy{Quota: 10, Window: 1500 * time.Millisecond}, *policy); diff != "" {
		t.Errorf("caller's RatePolicy changed by Issue (-want +got):\n%s", diff)
	}
}

// metadataOfSize returns a compact JSON object of exactly n bytes (n >= 8).
func metadataOfSize(n int) json.RawMessage {
	const open, closing = `{"k":"`, `"}`
	return json.RawMessage(open + strings.Repeat("x", n-len(open)-len(closing)) + closing)
}
