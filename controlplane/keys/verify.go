package keys

import (
	"context"
	"errors"

	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
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
		return credential.Result{Type: rt.typ}, err
	}
	return s.check(&k, &rt, p)
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
		if k.Version != r.p.Version || k.Prefix != r.p.Prefix {
			return credential.Result{Type: r.typ}, credential.ErrNotFound
		}
		if r.p.Version == string(FormatV2) && !s.secrets.MatchSecret(k.ID, r.p.Secret, k.SecretHash, s.now()) {
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
func (s *Service) SelfRevoke(ctx context.Context, p credential.Presented, reason credential.RevocationReason) error {
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
