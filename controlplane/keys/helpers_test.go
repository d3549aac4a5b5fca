package keys_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit/memory"
)

// epoch is where every test clock starts. It has no sub-microsecond part, so
// times read back from the store compare equal to times computed from it.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	tenantA credential.Tenant = credential.DefaultTenant
	tenantB credential.Tenant = "6f1c2b0e-8a4d-4e2f-9b1a-3c5d7e9f0a12"

	testIssuer       = "https://talos.example"
	testPrefix       = "talos"
	testPublicPrefix = "pk_talos"
)

// cmpOpts compare domain values: netip.Prefix by value, nil and empty alike.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

// ignoreSeq compares events without their store-assigned sequence numbers.
var ignoreSeq = cmpopts.IgnoreFields(credential.Event{}, "Seq")

// testClock is the injected clock: it stands still until advanced.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: epoch} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testService is a Service over a real SQLite store, with the clock, store
// and secrets it was built with.
type testService struct {
	svc     *keys.Service
	store   store.Store
	clock   *testClock
	secrets *apikey.SecretSet
}

type testConfig struct {
	opts  keys.Options
	deps  keys.Deps
	clock *testClock
}

type testOption func(*testConfig)

// withOptions edits the keys.Options of the service.
func withOptions(f func(*keys.Options)) testOption {
	return func(c *testConfig) { f(&c.opts) }
}

// withStore builds the service over st (owned by another testService)
// instead of a new database.
func withStore(st store.Store) testOption { return func(c *testConfig) { c.deps.Store = st } }

func withClock(clk *testClock) testOption { return func(c *testConfig) { c.clock = clk } }

func withSecrets(s *apikey.SecretSet) testOption { return func(c *testConfig) { c.deps.Secrets = s } }

// newTestService returns a Service over a new SQLite database in t.TempDir(),
// with a v2 format, the prefixes testPrefix and testPublicPrefix, no default
// TTL, a 32-byte HMAC secret and a clock standing at epoch.
func newTestService(t testing.TB, opts ...testOption) *testService {
	t.Helper()
	cfg := testConfig{opts: keys.Options{
		Issuer:       testIssuer,
		Prefix:       testPrefix,
		PublicPrefix: testPublicPrefix,
	}}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.deps.Store == nil {
		cfg.deps.Store = newTestStore(t)
	}
	if cfg.deps.Secrets == nil {
		cfg.deps.Secrets = mustSecretSet(t, 's')
	}
	if cfg.clock == nil {
		cfg.clock = newTestClock()
	}
	cfg.deps.Now = cfg.clock.Now
	svc, err := keys.New(cfg.opts, cfg.deps)
	if err != nil {
		t.Fatalf("keys.New: %v", err)
	}
	return &testService{svc: svc, store: cfg.deps.Store, clock: cfg.clock, secrets: cfg.deps.Secrets}
}

// newTestStore opens a migrated SQLite store in t.TempDir(), closed when t ends.
func newTestStore(t testing.TB) store.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "talos.db")
	st, err := sqlite.Open(t.Context(), "sqlite://"+path, sqlite.Options{AutoMigrate: true})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return st
}

// mustSecretSet returns a set whose current secret is 32 bytes of fill.
func mustSecretSet(t testing.TB, fill byte, retired ...apikey.Secret) *apikey.SecretSet {
	t.Helper()
	s, err := apikey.NewSecretSet(bytes.Repeat([]byte{fill}, 32), retired...)
	if err != nil {
		t.Fatalf("NewSecretSet: %v", err)
	}
	return s
}

// issueInput is a valid request with a name, an actor and two scopes.
func issueInput(actor string) keys.IssueInput {
	return keys.IssueInput{
		Attributes: keys.Attributes{Name: "test key", Scopes: []string{"keys:read", "keys:write"}},
		ActorID:    actor,
	}
}

func (ts *testService) mustIssue(t testing.TB, tenant credential.Tenant, in keys.IssueInput) (credential.Key, string) {
	t.Helper()
	k, secret, err := ts.svc.Issue(t.Context(), tenant, in)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if secret == "" {
		t.Fatalf("Issue returned no secret for key %s", k.ID)
	}
	return k, secret
}

func (ts *testService) mustImport(t testing.TB, tenant credential.Tenant, raw string, in keys.IssueInput) credential.Key {
	t.Helper()
	k, err := ts.svc.Import(t.Context(), tenant, keys.ImportInput{IssueInput: in, RawKey: raw})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	return k
}

func (ts *testService) mustRevoke(t testing.TB, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) {
	t.Helper()
	if err := ts.svc.Revoke(t.Context(), tenant, kind, id, credential.ReasonKeyCompromise, ""); err != nil {
		t.Fatalf("Revoke(%s): %v", id, err)
	}
}

func (ts *testService) verify(t testing.TB, tenant credential.Tenant, cred string) (credential.Result, error) {
	t.Helper()
	return ts.svc.Verify(t.Context(), credential.Presented{Tenant: tenant, Credential: cred})
}

// mustVerify fails t unless cred is valid, and returns its key ID.
func (ts *testService) mustVerify(t testing.TB, tenant credential.Tenant, cred string) credential.KeyID {
	t.Helper()
	res, err := ts.verify(t, tenant, cred)
	if err != nil {
		t.Fatalf("Verify: %v, want valid", err)
	}
	return res.KeyID
}

// lastSeq is the sequence number of the newest outbox event, 0 when none.
func (ts *testService) lastSeq(t testing.TB) int64 {
	t.Helper()
	evs := ts.eventsSince(t, 0)
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

func (ts *testService) eventsSince(t testing.TB, seq int64) []credential.Event {
	t.Helper()
	evs, err := ts.store.EventsSince(t.Context(), seq, 10000)
	if err != nil {
		t.Fatalf("EventsSince: %v", err)
	}
	return evs
}

// checkErr reports whether err wraps want (nil: no error), failing t if not.
func checkErr(t testing.TB, what string, err, want error) bool {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
		return false
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: error = %v (kind %v), want one wrapping %v", what, err, credential.KindOf(err), want)
		return false
	}
	return true
}

// sameIDOtherSecret returns a well-formed v2 credential with cred's prefix and
// key ID but another random secret: it passes every CPU-only check and fails
// only the stored hash comparison.
func sameIDOtherSecret(t testing.TB, cred string) string {
	t.Helper()
	p, err := apikey.Parse(cred)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	id, err := uuid.Parse(string(p.KeyID))
	if err != nil {
		t.Fatalf("uuid.Parse: %v", err)
	}
	iss, err := apikey.NewV2(p.Prefix, io.MultiReader(bytes.NewReader(id[:]), rand.Reader))
	if err != nil {
		t.Fatalf("NewV2: %v", err)
	}
	if iss.KeyID != p.KeyID || iss.Token == cred {
		t.Fatalf("forged key ID %s, want %s and a different token", iss.KeyID, p.KeyID)
	}
	return iss.Token
}

// withRevokeLimiter throttles failed self-revokes with an in-memory limiter
// on the service's clock.
func withRevokeLimiter() testOption {
	return func(c *testConfig) {
		if c.clock == nil {
			c.clock = newTestClock()
		}
		c.deps.RevokeLimiter = memory.New(memory.Options{MaxKeys: 1000, Now: c.clock.Now})
	}
}

// withWeakImports accepts imported keys of any strength.
func withWeakImports() testOption {
	return withOptions(func(o *keys.Options) { o.Imported.AllowWeak = true })
}
