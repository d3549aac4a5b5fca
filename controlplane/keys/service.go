package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	"github.com/talos-project/talos/pkg/token"
)

// Limits that keep one request from costing unbounded work or storage.
const (
	MaxCredentialBytes = credential.MaxCredentialBytes // credential and raw_key, as in the Ory SDK
	MaxMetadataBytes   = 64 << 10                      // serialized metadata, as in the Ory SDK
	MaxBatchVerify     = 100                           // apiKeys:batchVerify items
	MaxBatchImport     = 1000                          // importedApiKeys:batchCreate items
	MaxRequestIDLen    = 36                            // AIP-155 request_id
	MaxNameLen         = 256                           // key name
	MaxScopes          = 256                           // scopes per key
	MaxScopeLen        = 512                           // bytes per scope
	MaxCIDRs           = 256                           // CIDRs per key
	MinTTL             = time.Second
	MaxTTLCeiling      = 315360000 * time.Second // ~10 years, Talos's upper bound
	defaultPageSize    = 50
	maxPageSize        = 1000
)

// Format names an issued-key credential format.
type Format string

const (
	FormatV2 Format = "v2" // per-key random secret, keyed hash at rest (default)
	FormatV1 Format = "v1" // Ory Talos's format, for drop-in migrations
)

// Options are the plain values the service needs from configuration.
type Options struct {
	// Issuer is the iss of derived tokens; required.
	Issuer string
	// Format is the format of newly issued keys; both are always verified.
	Format Format
	// Prefix and PublicPrefix are the prefixes new secret and public keys get;
	// the retired lists are still accepted when verifying.
	Prefix                string
	PublicPrefix          string
	RetiredPrefixes       []string
	PublicRetiredPrefixes []string
	// DefaultTTL applies when a request gives none; zero means never expire.
	DefaultTTL time.Duration
	// MaxTTL caps requested TTLs and, for v1 keys, the age of the timestamp
	// embedded in the key (as Ory Talos does).
	MaxTTL time.Duration
	// ClockSkew is the leeway on time checks (derived tokens, v1 key
	// timestamps), at most token.MaxClockSkew.
	ClockSkew time.Duration
	// KeyedImportHash hashes imported keys with a subkey of the HMAC secret
	// instead of Talos's unkeyed SHA-512/256.
	KeyedImportHash bool
	// LastUsed tunes last-used tracking; the zero value uses the defaults.
	LastUsed LastUsedOptions
	// Derived configures derived tokens (JWTs and macaroons).
	Derived DerivedOptions
	// Imported is the minimum strength of imported keys; the zero value
	// applies the defaults.
	Imported ImportPolicy
	// SelfRevokeThrottle is the budget of failed self-revokes per client
	// address (Quota failures at once, then one per Window/Quota), enforced
	// when Deps.RevokeLimiter is set; the zero value is
	// DefaultSelfRevokeThrottle.
	SelfRevokeThrottle credential.RatePolicy
	// RateLimit configures the enforcement of keys' rate-limit policies on
	// VerifyPublic and BatchVerifyPublic, with Deps.Limiter.
	RateLimit RateLimitOptions
}

// DefaultSelfRevokeThrottle allows 10 failed self-revokes per client address
// at once, then one every 6 seconds: a 4-digit key space takes ~16 hours to
// search from one address.
var DefaultSelfRevokeThrottle = credential.RatePolicy{Quota: 10, Window: time.Minute, Unit: "failures"}

// VerifyReader is what verification reads: the store itself or a read
// replica of it. *sqlstore.Store implements it.
type VerifyReader interface {
	GetKey(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) (credential.Key, error)
	GetKeys(ctx context.Context, tenant credential.Tenant, kind credential.Kind, ids []credential.KeyID) ([]credential.Key, error)
}

// Deps are the collaborators of a Service.
type Deps struct {
	Store store.Store
	// Replica, when set, serves the reads of Verify, BatchVerify and the
	// parent check of Derive (db.read_replica_dsn); everything else reads
	// and writes Store.
	Replica VerifyReader
	Secrets *apikey.SecretSet
	Logger  *slog.Logger
	// RevokeLimiter, when set, throttles failed self-revokes per client
	// address (Options.SelfRevokeThrottle); nil does not throttle.
	RevokeLimiter ratelimit.Limiter
	// Limiter, when set, counts keys' rate-limit policies on the public
	// verify API (Options.RateLimit); nil counts nothing.
	Limiter ratelimit.Limiter
	// OnRateLimit, when set, observes every Limiter call.
	OnRateLimit RateObserver
	// Now and Rand default to time.Now and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
}

// Service implements the key use cases. Create it with New.
type Service struct {
	opts     Options
	store    store.Store
	reads    VerifyReader // Deps.Replica, or store
	secrets  *apikey.SecretSet
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader
	prefixes map[string]credential.Visibility // every prefix accepted on verify
	pager    *pager
	used     *lastUsed

	revokeLimiter ratelimit.Limiter
	limiter       ratelimit.Limiter // keys' policies; nil: none counted
	rlOpts        RateLimitOptions
	onRate        RateObserver
	// dummyHash is what a v2 secret is compared with when its key ID is not
	// stored, so that a miss costs the comparison a hit does.
	dummyHash []byte
	// onDummyCompare, set by tests only, runs on every dummy comparison.
	onDummyCompare func()

	derivedOpts DerivedOptions
	signing     *signingKeys
	policy      *token.Policy // issuers and skew of derived tokens
}

var (
	_ credential.Verifier      = (*Service)(nil)
	_ credential.BatchVerifier = (*Service)(nil)
)

// New validates opts and returns a Service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Secrets == nil {
		return nil, errors.New("keys: store and secrets are required")
	}
	if opts.Format == "" {
		opts.Format = FormatV2
	}
	if opts.Format != FormatV1 && opts.Format != FormatV2 {
		return nil, errors.New("keys: unknown key format " + string(opts.Format))
	}
	if opts.Prefix == "" || !apikey.ValidPrefix(opts.Prefix) {
		return nil, errors.New("keys: invalid key prefix")
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = 8760 * time.Hour
	}
	policy, err := token.NewPolicy(opts.Issuer, opts.Derived.RetiredIssuers, opts.ClockSkew)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	s := &Service{
		opts:     opts,
		store:    deps.Store,
		reads:    deps.Store,
		secrets:  deps.Secrets,
		log:      deps.Logger,
		now:      deps.Now,
		rand:     deps.Rand,
		prefixes: map[string]credential.Visibility{opts.Prefix: credential.VisibilitySecret},
		pager:    newPager(deps.Secrets),
		used:     newLastUsed(opts.LastUsed),

		revokeLimiter: deps.RevokeLimiter,
		limiter:       deps.Limiter,
		rlOpts:        opts.RateLimit,
		onRate:        deps.OnRateLimit,

		derivedOpts: opts.Derived,
		policy:      policy,
	}
	if s.opts.SelfRevokeThrottle == (credential.RatePolicy{}) {
		s.opts.SelfRevokeThrottle = DefaultSelfRevokeThrottle
	}
	if err := ratelimit.Check(s.opts.SelfRevokeThrottle, 1); err != nil {
		return nil, errors.New("keys: invalid self-revoke throttle")
	}
	s.opts.Imported = s.opts.Imported.withDefaults()
	if s.derivedOpts.DefaultTTL <= 0 {
		s.derivedOpts.DefaultTTL = time.Hour
	}
	if len(s.derivedOpts.MacaroonPrefixes) == 0 {
		s.derivedOpts.MacaroonPrefixes = []string{"mc"}
	}
	s.signing = &signingKeys{s: s, configured: opts.Derived.SigningKeys, currentKID: opts.Derived.CurrentKID}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if deps.Replica != nil {
		s.reads = deps.Replica
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	var dummy [32]byte
	_, _ = rand.Read(dummy[:]) // never fails (crypto/rand)
	s.dummyHash = s.secrets.HashSecret("00000000-0000-4000-8000-000000000000", dummy[:])
	for _, p := range opts.RetiredPrefixes {
		s.prefixes[p] = credential.VisibilitySecret
	}
	if opts.PublicPrefix != "" {
		s.prefixes[opts.PublicPrefix] = credential.VisibilityPublic
	}
	for _, p := range opts.PublicRetiredPrefixes {
		s.prefixes[p] = credential.VisibilityPublic
	}
	return s, nil
}

// Issuer is the configured issuer, reported in verify responses.
func (s *Service) Issuer() string { return s.opts.Issuer }

// Ping checks that the store answers, for readiness probes.
func (s *Service) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

func (s *Service) nowUTC() time.Time { return s.now().UTC().Truncate(time.Microsecond) }
