package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// Algorithm selects the kind of derived token.
type Algorithm uint8

const (
	AlgorithmJWT Algorithm = iota + 1
	AlgorithmMacaroon
)

// MaxCustomClaimsBytes bounds the serialized custom claims of a derived token.
const MaxCustomClaimsBytes = 4 << 10

// DerivedOptions configure derived tokens.
type DerivedOptions struct {
	// DefaultTTL applies when a derive request gives none (Ory Talos: 1h).
	DefaultTTL time.Duration
	// SigningKeys are the configured JWT signing keys and CurrentKID the one
	// that signs; with none, keys are generated and kept in the store.
	SigningKeys []token.SigningKey
	CurrentKID  string
	// MacaroonPrefix is the prefix of new macaroons; every prefix in
	// MacaroonPrefixes (current first) is accepted.
	MacaroonPrefixes []string
	// RetiredIssuers are still accepted in the iss of derived tokens, each
	// until its ExpiresAt (evaluated at every verification).
	RetiredIssuers []token.RetiredIssuer
}

// DeriveInput is a request to derive a short-lived token from an API key.
type DeriveInput struct {
	Presented credential.Presented
	Algorithm Algorithm
	// TTL zero means DerivedOptions.DefaultTTL.
	TTL          time.Duration
	Scopes       []string
	CustomClaims map[string]any
	Audiences    []string
}

// Derived is a minted token.
type Derived struct {
	Token      string
	ExpireTime time.Time
	Scopes     []string
	Audiences  []string
	// Claims is the parent's metadata merged with the accepted custom
	// claims (diagnostic, as in Ory Talos).
	Claims map[string]any
}

// Derive mints a JWT or a macaroon from an active issued or imported key.
// The parent must verify (else ErrUnauthenticated; revoked: ErrForbidden;
// expired: ErrFailedPrecondition); requested scopes must be a subset of the
// parent's (ErrForbidden); the TTL must not exceed MaxTTL nor the parent's
// remaining life (ErrInvalidArgument). Reserved custom claims are dropped.
func (s *Service) Derive(ctx context.Context, in DeriveInput) (Derived, error) {
	if err := checkCredential(in.Presented.Credential); err != nil {
		return Derived{}, err
	}
	if r := s.route(in.Presented); r.typ == credential.TypeJWT || r.typ == credential.TypeMacaroon {
		return Derived{}, credential.Errorf(credential.ErrInvalidArgument, "INVALID_TOKEN_TYPE", "a derived token cannot be the parent of another; present an API key")
	}
	parent, err := s.Verify(ctx, in.Presented)
	switch {
	case err == nil:
	case errors.Is(err, credential.ErrRevoked):
		return Derived{}, credential.Errorf(credential.ErrPermissionDenied, "FORBIDDEN", "key is revoked")
	case errors.Is(err, credential.ErrExpired):
		return Derived{}, credential.Errorf(credential.ErrFailedPrecondition, "FAILED_PRECONDITION", "key is expired")
	case errors.Is(err, credential.ErrUnavailable), errors.Is(err, credential.ErrDeadlineExceeded), errors.Is(err, credential.ErrInvalidArgument):
		return Derived{}, err
	default:
		return Derived{}, credential.Errorf(credential.ErrUnauthenticated, "PARENT_KEY_INVALID", "the parent credential is not valid")
	}
	now := s.nowUTC()
	ttl := in.TTL
	if ttl == 0 {
		ttl = s.derivedOpts.DefaultTTL
	}
	switch {
	case ttl < time.Second:
		return Derived{}, invalidf("ttl must be at least 1s")
	case ttl > s.opts.MaxTTL:
		return Derived{}, invalidf("ttl exceeds the maximum of %s", s.opts.MaxTTL)
	case !parent.ExpireTime.IsZero() && now.Add(ttl).After(parent.ExpireTime):
		return Derived{}, invalidf("ttl exceeds the remaining lifetime of the parent key")
	}
	scopes := in.Scopes
	if len(scopes) == 0 {
		scopes = parent.Scopes
	}
	for _, sc := range scopes {
		if !slices.Contains(parent.Scopes, sc) {
			return Derived{}, credential.Errorf(credential.ErrPermissionDenied, "FORBIDDEN", fmt.Sprintf("scope %q is not granted to the parent key", sc))
		}
	}
	// The token package's rule, which also drops names that fold to a
	// reserved one (Scp, EXP), so the diagnostic claims show what the token
	// really carries.
	custom := maps.Clone(in.CustomClaims)
	maps.DeleteFunc(custom, func(k string, _ any) bool { return token.ReservedClaim(k) })
	if b, err := json.Marshal(custom); err != nil || len(b) > MaxCustomClaimsBytes {
		return Derived{}, invalidf("custom_claims must be at most %d bytes of JSON", MaxCustomClaimsBytes)
	}
	for _, a := range in.Audiences {
		if err := checkText("audiences", a, MaxNameLen); err != nil || a == "" {
			return Derived{}, invalidf("audiences must be non-empty strings of at most %d bytes", MaxNameLen)
		}
	}
	c := token.Claims{
		ID: uuid.NewString(), Subject: parent.KeyID, Issuer: s.opts.Issuer, Audiences: in.Audiences,
		IssuedAt: now, NotBefore: now, Expiry: now.Add(ttl).Truncate(time.Second),
		ActorID: parent.ActorID, Scopes: scopes, Metadata: parent.Metadata, Tenant: parent.Tenant,
		AllowedCIDRs: parent.AllowedCIDRs, Visibility: parent.Visibility, Custom: custom,
	}
	var tok string
	switch in.Algorithm {
	case AlgorithmMacaroon:
		tok, err = token.MintMacaroon(s.secrets.Derive(macaroonLabel), s.derivedOpts.MacaroonPrefixes[0], c)
	case AlgorithmJWT, 0:
		var sg *token.Signer
		if sg, err = s.signing.get(ctx); err == nil {
			tok, err = sg.SignJWT(c)
		}
	default:
		return Derived{}, invalidf("unknown algorithm")
	}
	if err != nil {
		if credential.KindOf(err) != nil {
			return Derived{}, err
		}
		return Derived{}, fmt.Errorf("derive token: %w", err)
	}
	claims := map[string]any{}
	if len(parent.Metadata) > 0 {
		_ = json.Unmarshal(parent.Metadata, &claims)
	}
	for k, v := range custom {
		if _, taken := claims[k]; !taken {
			claims[k] = v
		}
	}
	return Derived{Token: tok, ExpireTime: c.Expiry, Scopes: scopes, Audiences: in.Audiences, Claims: claims}, nil
}

const macaroonLabel = "talos/macaroon/v1/root-key"

// verifyDerived verifies a JWT or macaroon statelessly: no store read.
func (s *Service) verifyDerived(ctx context.Context, typ credential.CredentialType, p credential.Presented) (credential.Result, error) {
	now := s.now()
	o := s.policy.Options(now, p)
	var (
		c   token.Claims
		err error
	)
	if typ == credential.TypeMacaroon {
		c, err = token.VerifyMacaroon(p.Credential, s.secrets.DeriveAll(macaroonLabel, now), s.derivedOpts.MacaroonPrefixes, o)
	} else {
		var sg *token.Signer
		if sg, err = s.signing.get(ctx); err != nil {
			return credential.Result{Type: typ}, err
		}
		c, err = token.VerifyJWT(p.Credential, sg.KeySet(now), o)
		if errors.Is(err, token.ErrUnknownKID) {
			// Perhaps another replica rotated: reload once and retry.
			s.signing.refresh(ctx)
			if sg2, gerr := s.signing.get(ctx); gerr == nil && sg2 != sg {
				c, err = token.VerifyJWT(p.Credential, sg2.KeySet(now), o)
			}
		}
	}
	return c.Result(typ), err
}

// TokenPolicy returns the policy derived tokens are verified under: the
// issuer, the retired issuers with their expiry, and the clock skew. Sidecars
// fetch it (talos.sidecar.v1.Verifier/GetTokenPolicy) so that they accept
// exactly what this service accepts.
func (s *Service) TokenPolicy() *token.Policy { return s.policy }

// JWKS returns the public signing keys in RFC 7517 form ({"keys": [...]}),
// retired keys included until their tokens have expired.
func (s *Service) JWKS(ctx context.Context) (map[string]any, error) {
	sg, err := s.signing.get(ctx)
	if err != nil {
		return nil, err
	}
	return sg.PublicJWKS(s.now()), nil
}
