package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	"github.com/talos-project/talos/pkg/token"
)

// route is where a credential goes after the CPU-only pre-pass.
type route struct {
	typ  credential.CredentialType
	kind credential.Kind
	ids  []credential.KeyID // candidate IDs to look up (imported keys may have several)
	p    apikey.Parsed
	err  error // a pre-lookup failure; no lookup happens
}

// Verify verifies one credential (see credential.Verifier). The credential
// must be non-empty and at most MaxCredentialBytes, else ErrInvalidArgument;
// every failure before the lookup (bad checksum, unknown prefix, bad v1 HMAC,
// a v1 timestamp out of range) reads as ErrNotFound so that nobody can probe
// which part was wrong.
func (s *Service) Verify(ctx context.Context, p credential.Presented) (credential.Result, error) {
	return s.verify(ctx, p, s.reads)
}

// verify is Verify reading from r: the replica for verify traffic, the
// primary where a write follows (self-revoke).
func (s *Service) verify(ctx context.Context, p credential.Presented, r VerifyReader) (credential.Result, error) {
	if err := checkCredential(p.Credential); err != nil {
		return credential.Result{}, err
	}
	rt := s.route(p)
	if rt.err != nil {
		return credential.Result{Type: rt.typ}, rt.err
	}
	if rt.typ == credential.TypeJWT || rt.typ == credential.TypeMacaroon {
		return s.verifyDerived(ctx, rt.typ, p)
	}
	var (
		k   credential.Key
		err error
	)
	if len(rt.ids) == 1 {
		k, err = r.GetKey(ctx, p.Tenant, rt.kind, rt.ids[0])
	} else {
		k, err = firstOf(ctx, r, p.Tenant, rt.kind, rt.ids)
	}
	if err != nil {
		if errors.Is(err, credential.ErrNotFound) {
			s.missCompare(&rt)
		}
		return credential.Result{Type: rt.typ}, err
	}
	return s.check(&k, &rt, p)
}

// missCompare does, for a v2 credential whose key ID is not stored, the
// secret comparison a stored ID would get (against a dummy hash), so that the
// service's own work does not tell a known key ID with a wrong secret from an
// unknown one. (The store still materialises a row for a hit and none for a
// miss; see docs/security.md.)
func (s *Service) missCompare(r *route) {
	if r.kind != credential.KindIssued || r.p.Version != string(FormatV2) {
		return
	}
	s.secrets.MatchSecret(r.ids[0], r.p.Secret, s.dummyHash, s.now())
	if s.onDummyCompare != nil {
		s.onDummyCompare()
	}
}

func checkCredential(c string) error {
	if c == "" {
		return &credential.Error{Kind: credential.ErrInvalidArgument, Reason: "CREDENTIAL_REQUIRED", Message: "credential is required"}
	}
	if len(c) > MaxCredentialBytes {
		return invalidf("credential must be at most %d bytes", MaxCredentialBytes)
	}
	return nil
}

func firstOf(ctx context.Context, r VerifyReader, tenant credential.Tenant, kind credential.Kind, ids []credential.KeyID) (credential.Key, error) {
	ks, err := r.GetKeys(ctx, tenant, kind, ids)
	if err != nil {
		return credential.Key{}, err
	}
	for _, id := range ids {
		for i := range ks {
			if ks[i].ID == id {
				return ks[i], nil
			}
		}
	}
	return credential.Key{}, credential.ErrNotFound
}

// route runs the CPU-only checks: shape, checksum, prefix, v1 HMAC and
// timestamp, in Ory Talos's order (JWT, macaroon, issued, imported).
func (s *Service) route(p credential.Presented) route {
	c := p.Credential
	if token.LooksJWT(c) {
		return route{typ: credential.TypeJWT}
	}
	if token.LooksMacaroon(c, s.derivedOpts.MacaroonPrefixes) {
		return route{typ: credential.TypeMacaroon}
	}
	parsed, err := apikey.Parse(c)
	if err != nil {
		if apikey.LooksIssued(c) {
			// Issued-key shape with a bad checksum: reject without a lookup.
			return route{typ: credential.TypeIssued, err: credential.ErrNotFound}
		}
		return route{typ: credential.TypeImported, kind: credential.KindImported, ids: s.importedIDs(p.Tenant, c)}
	}
	r := route{typ: credential.TypeIssued, kind: credential.KindIssued, p: parsed, ids: []credential.KeyID{parsed.KeyID}}
	if _, ok := s.prefixes[parsed.Prefix]; !ok {
		r.err = credential.ErrNotFound
		return r
	}
	if parsed.Version == string(FormatV1) {
		now := s.now()
		if !s.secrets.CheckV1(c, now) {
			r.err = credential.ErrNotFound
			return r
		}
		age := now.Sub(parsed.Created)
		if age > s.opts.MaxTTL+s.opts.ClockSkew || age < -s.opts.ClockSkew {
			r.err = credential.ErrNotFound
		}
	}
	return r
}

func (s *Service) importedIDs(tenant credential.Tenant, raw string) []credential.KeyID {
	if s.opts.KeyedImportHash {
		return s.secrets.ImportedIDsKeyed(tenant, raw, s.now())
	}
	return []credential.KeyID{apikey.ImportedID(tenant, raw)}
}

// check verifies possession (issued keys) and then the key's state, expiry and
// IP restriction, in that order: revoked wins over expired.
func (s *Service) check(k *credential.Key, r *route, p credential.Presented) (credential.Result, error) {
	if r.kind == credential.KindIssued {
		ok := k.Version == r.p.Version && k.Prefix == r.p.Prefix
		if r.p.Version == string(FormatV2) {
			// Compare even when the version or prefix already differs, and
			// against the dummy when the row has no v2 hash, so that every
			// wrong v2 credential costs one comparison.
			stored := k.SecretHash
			if len(stored) != len(s.dummyHash) {
				stored = s.dummyHash
				ok = false
			}
			ok = s.secrets.MatchSecret(k.ID, r.p.Secret, stored, s.now()) && ok
		}
		if !ok {
			return credential.Result{Type: r.typ}, credential.ErrNotFound
		}
	}
	res := credential.ResultOf(k, r.typ, s.opts.Issuer)
	now := s.now()
	switch k.EffectiveState(now) {
	case credential.StateRevoked:
		return res, credential.ErrRevoked
	case credential.StateExpired:
		res.Status = credential.StateExpired
		return res, credential.ErrExpired
	}
	if !p.DeferIPCheck && !k.AllowsIP(p.ClientIP) {
		return res, errIPNotAllowed
	}
	s.used.note(k, now)
	return res, nil
}

var errIPNotAllowed = credential.ErrIPNotAllowed

// BatchVerify verifies up to MaxBatchVerify credentials with one store query
// per key kind, answering in request order. An invalid item never fails the
// whole batch; only an empty or oversized batch (ErrInvalidArgument) or a
// failed store query (ErrUnavailable) does.
func (s *Service) BatchVerify(ctx context.Context, ps []credential.Presented) ([]credential.Verdict, error) {
	if len(ps) == 0 {
		return nil, invalidf("requests must not be empty")
	}
	if len(ps) > MaxBatchVerify {
		return nil, invalidf("at most %d credentials per batch", MaxBatchVerify)
	}
	out := make([]credential.Verdict, len(ps))
	routes := make([]route, len(ps))
	want := map[credential.Kind][]credential.KeyID{}
	tenant := ps[0].Tenant
	for i, p := range ps {
		if p.Tenant != tenant {
			return nil, invalidf("a batch must not mix tenants")
		}
		if err := checkCredential(p.Credential); err != nil {
			routes[i].err = err
			continue
		}
		routes[i] = s.route(p)
		if routes[i].err == nil && routes[i].kind != 0 {
			want[routes[i].kind] = append(want[routes[i].kind], routes[i].ids...)
		}
	}
	found := map[credential.Kind]map[credential.KeyID]*credential.Key{}
	for kind, ids := range want {
		ks, err := s.reads.GetKeys(ctx, tenant, kind, ids)
		if err != nil {
			return nil, err
		}
		m := make(map[credential.KeyID]*credential.Key, len(ks))
		for i := range ks {
			m[ks[i].ID] = &ks[i]
		}
		found[kind] = m
	}
	for i := range ps {
		r := &routes[i]
		switch {
		case r.err != nil:
			out[i] = credential.Verdict{Result: credential.Result{Type: r.typ}, Err: r.err}
		case r.typ == credential.TypeJWT || r.typ == credential.TypeMacaroon:
			res, err := s.verifyDerived(ctx, r.typ, ps[i])
			out[i] = credential.Verdict{Result: res, Err: err}
		default:
			var k *credential.Key
			for _, id := range r.ids {
				if k = found[r.kind][id]; k != nil {
					break
				}
			}
			if k == nil {
				s.missCompare(r)
				out[i] = credential.Verdict{Result: credential.Result{Type: r.typ}, Err: credential.ErrNotFound}
				continue
			}
			res, err := s.check(k, r, ps[i])
			out[i] = credential.Verdict{Result: res, Err: err}
		}
	}
	return out, nil
}

// SelfRevoke revokes the key whose credential is presented: possession is the
// proof. Any authentication failure is ErrNotFound (no oracle); a key already
// revoked succeeds again (idempotent); derived tokens cannot be revoked
// (ErrInvalidArgument); PRIVILEGE_WITHDRAWN is an admin-only reason.
//
// With Deps.RevokeLimiter set, failed attempts (ErrNotFound) are throttled per
// client address (ratelimit.AddrKey: IPv6 by /64) under
// Options.SelfRevokeThrottle. Each attempt is charged before the credential is
// looked at and refunded unless it failed, so concurrent guesses cannot
// overrun the budget and only failures count. An address out of budget gets
// ErrRateLimited with RetryAfter even for a correct credential: answering it
// would leave the oracle open.
func (s *Service) SelfRevoke(ctx context.Context, p credential.Presented, reason credential.RevocationReason) (err error) {
	if err := checkCredential(p.Credential); err != nil {
		return err
	}
	if reason == credential.ReasonPrivilegeWithdrawn {
		return invalidf("reason REVOCATION_REASON_PRIVILEGE_WITHDRAWN is reserved for administrators")
	}
	if reason > credential.ReasonPrivilegeWithdrawn {
		return invalidf("unknown revocation reason")
	}
	r := s.route(p)
	if r.typ == credential.TypeJWT || r.typ == credential.TypeMacaroon {
		return &credential.Error{Kind: credential.ErrInvalidArgument, Reason: "DERIVED_TOKEN_NOT_REVOCABLE", Message: "derived tokens cannot be revoked; revoke the parent key"}
	}
	if s.revokeLimiter != nil {
		release, cerr := s.chargeRevokeAttempt(ctx, p.ClientIP)
		if cerr != nil {
			return cerr
		}
		defer func() { release(err) }() // err: SelfRevoke's result
	}
	if r.err != nil {
		return selfRevokeNotFound
	}
	res, err := s.verify(ctx, p, s.store)
	switch {
	case errors.Is(err, credential.ErrRevoked):
		return nil
	case err == nil, errors.Is(err, credential.ErrExpired), errors.Is(err, credential.ErrForbidden):
		// Possession is proven; an expired key or one presented from a
		// disallowed address may still be revoked by its holder.
	case errors.Is(err, credential.ErrNotFound):
		return selfRevokeNotFound
	default:
		return err
	}
	return s.revoke(ctx, p.Tenant, r.kind, res.KeyID, reason, "", true)
}

var selfRevokeNotFound = &credential.Error{Kind: credential.ErrNotFound, Reason: "API_KEY_NOT_FOUND", Message: "API key not found"}

// chargeRevokeAttempt charges one failed self-revoke to addr's budget, or
// refuses with ErrRateLimited when none is left. The returned release refunds
// the charge unless the attempt's error is ErrNotFound (a failed guess).
func (s *Service) chargeRevokeAttempt(ctx context.Context, addr netip.Addr) (release func(error), err error) {
	key := selfRevokeKeyPrefix + ratelimit.AddrKey(addr)
	pol := s.opts.SelfRevokeThrottle
	d, err := s.revokeLimiter.Allow(ctx, key, pol, 1)
	if err != nil {
		// Fail closed: without the throttle the oracle would be open.
		return nil, fmt.Errorf("self-revoke throttle: %w: %w", credential.ErrUnavailable, err)
	}
	if !d.Allowed {
		return nil, &credential.Error{Kind: credential.ErrRateLimited, Reason: "TOO_MANY_REQUESTS",
			Message: "Too many failed self-revoke attempts from this address; retry later.", RetryAfter: d.RetryAfter}
	}
	// An IPv6 /64 also draws on its /48's budget, networkThrottleFactor
	// times the address's: rotating through the /64s of one site buys that
	// much and no more.
	netKey, netPol := "", pol
	if n := ratelimit.NetworkKey(addr); n != "" {
		netKey, netPol.Quota = selfRevokeKeyPrefix+n, pol.Quota*networkThrottleFactor
		nd, err := s.revokeLimiter.Allow(ctx, netKey, netPol, 1)
		if err == nil && !nd.Allowed {
			err = &credential.Error{Kind: credential.ErrRateLimited, Reason: "TOO_MANY_REQUESTS",
				Message: "Too many failed self-revoke attempts from this network; retry later.", RetryAfter: nd.RetryAfter}
		} else if err != nil {
			err = fmt.Errorf("self-revoke throttle: %w: %w", credential.ErrUnavailable, err)
		}
		if err != nil {
			if _, rerr := s.revokeLimiter.Allow(context.WithoutCancel(ctx), key, pol, -1); rerr != nil {
				s.log.LogAttrs(ctx, slog.LevelWarn, "self-revoke throttle: refund failed", slog.String("error", rerr.Error()))
			}
			return nil, err
		}
	}
	return func(err error) {
		if errors.Is(err, credential.ErrNotFound) {
			if d.Remaining == 0 {
				s.log.LogAttrs(ctx, slog.LevelWarn, "self-revoke throttle engaged: failed attempts exhausted the budget of a client address",
					slog.String("client", ratelimit.AddrKey(addr)), slog.Int64("burst", pol.Quota), slog.Duration("interval", pol.Window/time.Duration(pol.Quota)))
			}
			return
		}
		if _, rerr := s.revokeLimiter.Allow(context.WithoutCancel(ctx), key, pol, -1); rerr != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "self-revoke throttle: refund failed", slog.String("error", rerr.Error()))
		}
		if netKey != "" {
			if _, rerr := s.revokeLimiter.Allow(context.WithoutCancel(ctx), netKey, netPol, -1); rerr != nil {
				s.log.LogAttrs(ctx, slog.LevelWarn, "self-revoke throttle: refund failed", slog.String("error", rerr.Error()))
			}
		}
	}, nil
}

const selfRevokeKeyPrefix = "talos/self-revoke/"

// networkThrottleFactor is how many addresses' budgets an IPv6 /48 gets.
const networkThrottleFactor = 16
