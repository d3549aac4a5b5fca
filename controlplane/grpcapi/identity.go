package grpcapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/talos-project/talos/pkg/credential"
)

// XFCCHeader is the header a mesh proxy (Envoy) forwards the client
// certificate of its downstream connection in.
const XFCCHeader = "x-forwarded-client-cert"

// Caller is what a request presents to Check. Its transport fills it from
// the connection and the request itself, never from anything the caller
// could set for another field: on gRPC from the stream's peer and metadata
// (grpcCaller), on the HTTP API from the *http.Request, before the gateway
// turns headers into metadata.
type Caller struct {
	// Authorization is the first Authorization value.
	Authorization string
	// TLS is the connection state, nil on a plaintext connection. Only its
	// verified chains count: a certificate that did not verify against the
	// client CA (PeerCertificates alone) proves nothing.
	TLS *tls.ConnectionState
	// Peer is the address of the direct TCP peer, never one a header
	// claims. XFCC is trusted only from a peer in the configured prefixes.
	Peer netip.Addr
	// XFCC holds the x-forwarded-client-cert values, in order.
	XFCC []string
}

// grpcCaller gathers the Caller of a gRPC stream from its peer (address and
// TLS state of the connection) and metadata.
func grpcCaller(ctx context.Context, md metadata.MD) Caller {
	c := Caller{Authorization: authorization(md), XFCC: md.Get(XFCCHeader)}
	if p, ok := peer.FromContext(ctx); ok {
		c.Peer = peerAddr(p)
		switch ai := p.AuthInfo.(type) {
		case credentials.TLSInfo:
			c.TLS = &ai.State
		case *credentials.TLSInfo:
			if ai != nil {
				c.TLS = &ai.State
			}
		}
	}
	return c
}

// peerAddr is the address of a gRPC peer, unmapped; the zero Addr when it
// has none.
func peerAddr(p *peer.Peer) netip.Addr {
	if p == nil || p.Addr == nil {
		return netip.Addr{}
	}
	if ta, ok := p.Addr.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return credential.ParseAddr(p.Addr.String())
}

// identity is what a certificate says of its holder, as the rules see it.
type identity struct {
	subject  string
	uris     []string
	dnsNames []string
}

// certIdentity is the identity of the leaf of the first verified chain, or
// false when the connection verified none. Only the parts some rule matches
// (kinds, a set of 1<<identityKind) are rendered.
func certIdentity(cs *tls.ConnectionState, kinds uint8) (identity, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 || cs.VerifiedChains[0][0] == nil {
		return identity{}, false
	}
	return leafIdentity(cs.VerifiedChains[0][0], kinds), true
}

func leafIdentity(c *x509.Certificate, kinds uint8) identity {
	var id identity
	if kinds&(1<<kindSubject) != 0 {
		id.subject = c.Subject.String()
	}
	if kinds&(1<<kindDNS) != 0 {
		id.dnsNames = c.DNSNames
	}
	if kinds&(1<<kindURI) != 0 {
		for _, u := range c.URIs {
			if u != nil {
				id.uris = append(id.uris, u.String())
			}
		}
	}
	return id
}

// identityKind is the part of a certificate an identity rule matches.
type identityKind uint8

const (
	kindSubject identityKind = iota + 1
	kindURI
	kindDNS
)

type identityRule struct {
	kind    identityKind
	pattern string
	roles   roleSet
}

func newIdentityRule(r IdentityRule) (identityRule, error) {
	var rule identityRule
	set := 0
	for _, f := range []struct {
		kind    identityKind
		name    string
		pattern string
	}{{kindSubject, "subject", r.Subject}, {kindURI, "URI SAN", r.URISAN}, {kindDNS, "DNS SAN", r.DNSSAN}} {
		if f.pattern == "" {
			continue
		}
		set++
		if err := credential.ValidIdentityPattern(f.pattern); err != nil {
			return rule, fmt.Errorf("%s pattern: %w", f.name, err)
		}
		rule.kind, rule.pattern = f.kind, f.pattern
	}
	if set != 1 {
		return rule, errors.New("exactly one of subject, URI SAN and DNS SAN must be set")
	}
	if rule.roles = roleBit(r.Role); rule.roles == 0 {
		return rule, fmt.Errorf("invalid role %v", r.Role)
	}
	return rule, nil
}

func (r identityRule) matches(id identity) bool {
	switch r.kind {
	case kindSubject:
		return credential.MatchIdentity(r.pattern, id.subject)
	case kindURI:
		return matchAny(r.pattern, id.uris)
	case kindDNS:
		return matchAny(r.pattern, id.dnsNames)
	}
	return false
}

func matchAny(pattern string, values []string) bool {
	for _, v := range values {
		if credential.MatchIdentity(pattern, v) {
			return true
		}
	}
	return false
}

// identityRoles returns the roles of every identity rule c's certificate
// identity matches. From a peer in the XFCC prefixes, that identity is the
// one its x-forwarded-client-cert header forwards (the last element, the
// proxy's own), or none when the header is absent or malformed: the peer's
// own certificate is the proxy's, not the caller's. From any other peer it
// is the leaf of the connection's first verified chain, and the header is
// ignored.
func (a *Auth) identityRoles(c Caller) roleSet {
	if len(a.identities) == 0 {
		return 0
	}
	var (
		id identity
		ok bool
	)
	if len(a.xfccFrom) > 0 && credential.IPAllowed(a.xfccFrom, c.Peer) {
		id, ok = xfccIdentity(c.XFCC)
	} else {
		id, ok = certIdentity(c.TLS, a.identityKinds)
	}
	if !ok {
		return 0
	}
	var have roleSet
	for _, r := range a.identities {
		if r.matches(id) {
			have |= r.roles
		}
	}
	return have
}
