package credential

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"time"
)

// Presented is what a caller presents for verification: the raw credential plus
// the facts of the request. It redacts the credential when logged.
type Presented struct {
	Tenant     Tenant
	Credential string
	// ClientIP is the address the request came from, as chosen by the
	// configured client-IP source; the zero Addr means unknown.
	ClientIP netip.Addr
	// ExpectedAudiences lists the audiences the caller accepts for derived
	// tokens; API keys carry no audience.
	ExpectedAudiences []string
	// NoCache skips cache reads; NoStore also skips cache writes.
	NoCache bool
	NoStore bool
	// DeferIPCheck leaves the client-IP restriction to the caller, who
	// checks Result.AllowedCIDRs itself: the sidecar, whose cached verdict
	// must hold for every client address. ClientIP is then ignored.
	DeferIPCheck bool
}

// LogValue implements slog.LogValuer: the credential never reaches a log.
func (p Presented) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("tenant", string(p.Tenant)),
		slog.String("credential", "[redacted]"),
		slog.String("client_ip", p.ClientIP.String()),
	)
}

// CredentialType says which route a credential took.
type CredentialType uint8

const (
	TypeUnknown CredentialType = iota
	TypeIssued
	TypeImported
	TypeJWT
	TypeMacaroon
)

func (t CredentialType) String() string {
	switch t {
	case TypeIssued:
		return "issued"
	case TypeImported:
		return "imported"
	case TypeJWT:
		return "derived_jwt"
	case TypeMacaroon:
		return "derived_macaroon"
	}
	return "unknown"
}

// Result is the outcome of a verification: the resolved key's public
// attributes. It is filled as far as verification got, so a revoked key still
// reports its ID.
type Result struct {
	Type         CredentialType
	Tenant       Tenant
	KeyID        KeyID
	ActorID      string
	Scopes       []string
	Metadata     json.RawMessage
	Status       State
	Visibility   Visibility
	ExpireTime   time.Time
	RatePolicy   *RatePolicy
	AllowedCIDRs []netip.Prefix
	Audiences    []string
	Issuer       string
	// Conditions are the free "key = value" caveats of an attenuated
	// macaroon, reported for the caller to enforce.
	Conditions map[string]string
}

// ResultOf returns the public attributes of k as a Result.
func ResultOf(k *Key, t CredentialType, issuer string) Result {
	return Result{
		Type:         t,
		Tenant:       k.Tenant,
		KeyID:        k.ID,
		ActorID:      k.ActorID,
		Scopes:       k.Scopes,
		Metadata:     k.Metadata,
		Status:       k.Status,
		Visibility:   k.Visibility,
		ExpireTime:   k.ExpireTime,
		RatePolicy:   k.RatePolicy,
		AllowedCIDRs: k.AllowedCIDRs,
		Issuer:       issuer,
	}
}

// Verifier verifies one presented credential. A nil error means the credential
// is valid. Otherwise the error wraps one sentinel: ErrNotFound, ErrExpired,
// ErrRevoked, ErrForbidden, ErrRateLimited or ErrMalformed for an invalid
// credential, ErrUnavailable or ErrDeadlineExceeded when verification could
// not run (callers must fail closed). The Result is filled as far as
// verification got, even on error.
type Verifier interface {
	Verify(ctx context.Context, p Presented) (Result, error)
}

// Verdict is one item of a batch verification.
type Verdict struct {
	Result Result
	Err    error
}

// BatchVerifier is an optional capability of a Verifier: verify many
// credentials at once, answering in request order.
type BatchVerifier interface {
	BatchVerify(ctx context.Context, ps []Presented) ([]Verdict, error)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, p Presented) (Result, error)

func (f VerifierFunc) Verify(ctx context.Context, p Presented) (Result, error) { return f(ctx, p) }
