package httpapi_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/controlplane/httpapi"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// tlsPKI is a client CA, the server certificate, a client certificate of
// each role and one of another CA.
type tlsPKI struct {
	ca      *tlstest.CA
	server  *tlstest.Leaf
	clients map[string]*tlstest.Leaf
}

func newTLSPKI(t *testing.T) *tlsPKI {
	t.Helper()
	ca, other := tlstest.NewCA(t, "talos-clients"), tlstest.NewCA(t, "evil")
	return &tlsPKI{ca: ca, server: ca.Server(t), clients: map[string]*tlstest.Leaf{
		"admin":    ca.Client(t, "root", "spiffe://cluster.local/ns/root/sa/admin"),
		"operator": ca.Client(t, "deployer", "spiffe://cluster.local/ns/ops/sa/deployer"),
		"verifier": ca.Issue(t, tlstest.Options{CommonName: "verifier", Organization: []string{"Talos"}, Client: true}),
		"sidecar":  ca.Issue(t, tlstest.Options{CommonName: "sc", DNS: []string{"eu1.sidecars.talos.test"}, Client: true}),
		"nobody":   ca.Client(t, "nobody", "spiffe://cluster.local/ns/dev/sa/x"),
		"wrong CA": other.Client(t, "root", "spiffe://cluster.local/ns/root/sa/admin"),
	}}
}

var identityRules = []grpcapi.IdentityRule{
	{URISAN: "spiffe://cluster.local/ns/root/sa/admin", Role: credential.RoleAdmin},
	{URISAN: "spiffe://cluster.local/ns/ops/sa/*", Role: credential.RoleOperator},
	{Subject: "CN=verifier,O=Talos", Role: credential.RoleVerifier},
	{DNSSAN: "*.sidecars.talos.test", Role: credential.RoleSidecar},
}

func mustAuth(t *testing.T, c grpcapi.AuthConfig) *grpcapi.Auth {
	t.Helper()
	a, err := grpcapi.NewAuth(c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// startHTTPS serves the real handler (gateway, keys service, SQLite) over
// TLS on a loopback port, asking for client certificates verified against
// the client CA.
func startHTTPS(t *testing.T, p *tlsPKI, opts httpapi.Options) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(newTestHandler(t, opts))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes of the wrong-CA client
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{p.server.TLSCertificate(t)},
		ClientCAs:    p.ca.Pool(),
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// httpsClient presents client (whatever CAs the server asks for, as a
// forger would), or no certificate when nil.
func httpsClient(t *testing.T, p *tlsPKI, client *tlstest.Leaf) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if client != nil {
		cert := client.TLSCertificate(t)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// httpCalls are the admin calls the TLS tests make: method, path, body.
var httpCalls = map[string][3]string{
	"list":   {"GET", "/v2alpha1/admin/issuedApiKeys", ""},
	"issue":  {"POST", "/v2alpha1/admin/issuedApiKeys", `{"name":"n","actor_id":"a"}`},
	"import": {"POST", "/v2alpha1/admin/importedApiKeys", `{"raw_key":"sk_live_imported_0123456789abcdef","name":"n","actor_id":"a"}`},
	"delete": {"DELETE", "/v2alpha1/admin/importedApiKeys/" + strings.Repeat("ab", 32), ""},
	"verify": {"POST", "/v2alpha1/admin/apiKeys:verify", `{"credential":"x"}`},
	"derive": {"POST", "/v2alpha1/admin/apiKeys:derive", `{"credential":"x"}`},
}

// do makes call on base with client and the extra headers (name, value
// pairs; "Host" sets the Host); it returns the status and body, or -1 when
// no response came.
func do(t *testing.T, client *http.Client, base, call string, header ...string) (int, []byte) {
	t.Helper()
	c := httpCalls[call]
	req, err := http.NewRequestWithContext(t.Context(), c[0], base+c[1], strings.NewReader(c[2]))
	if err != nil {
		t.Fatal(err)
	}
	if c[2] != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return -1, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// reachedHTTP reports whether the call got past the auth rule: any answer
// but the rule's own 401 and 403 (reasons UNAUTHORIZED, FORBIDDEN) and the
// Host check's 421; the method's own errors (derive's 401 for an unknown
// parent key, say) count as reached.
func reachedHTTP(code int, body []byte) bool {
	switch code {
	case -1, http.StatusMisdirectedRequest:
		return false
	case http.StatusUnauthorized:
		return !bytes.Contains(body, []byte(`"reason":"UNAUTHORIZED"`))
	case http.StatusForbidden:
		return !bytes.Contains(body, []byte(`"reason":"FORBIDDEN"`))
	}
	return true
}

// answered reports whether a call answered as wanted: 0 wants the method
// to answer, anything else that refusal of the auth rule (or -1: no
// response).
func answered(got int, body []byte, want int) bool {
	if want == 0 {
		return reachedHTTP(got, body)
	}
	return got == want && !reachedHTTP(got, body)
}

// TestHTTP_TLSRoles: through the real gateway over real TLS connections,
// each client certificate reaches what its role does.
func TestHTTP_TLSRoles(t *testing.T) {
	t.Parallel()
	p := newTLSPKI(t)
	base := startHTTPS(t, p, httpapi.Options{Auth: mustAuth(t, grpcapi.AuthConfig{Identities: identityRules})})
	const (
		reach = 0
		no    = http.StatusUnauthorized
		deny  = http.StatusForbidden
		down  = -1
	)
	want := map[string]map[string]int{
		"admin":    {"list": reach, "issue": reach, "import": reach, "delete": reach, "verify": reach, "derive": reach},
		"operator": {"list": reach, "issue": reach, "import": deny, "delete": deny, "verify": reach, "derive": reach},
		"verifier": {"list": deny, "issue": deny, "import": deny, "delete": deny, "verify": reach, "derive": reach},
		"sidecar":  {"list": deny, "issue": deny, "import": deny, "delete": deny, "verify": deny, "derive": deny},
		"nobody":   {"list": no, "issue": no, "delete": no, "verify": no},
		"none":     {"list": no, "issue": no, "delete": no, "verify": no},
		"wrong CA": {"list": down, "verify": down},
	}
	for who, calls := range want {
		client := httpsClient(t, p, p.clients[who])
		for call, code := range calls {
			got, body := do(t, client, base, call)
			if !answered(got, body, code) {
				t.Errorf("%s certificate, %s: %d %s, want %d (0: the method answers)", who, call, got, body, code)
			}
		}
	}
}

// TestHTTP_TokenAndCertificateAddUp: the roles of the bearer token and of
// the certificate add up on the HTTP API too.
func TestHTTP_TokenAndCertificateAddUp(t *testing.T) {
	t.Parallel()
	p := newTLSPKI(t)
	base := startHTTPS(t, p, httpapi.Options{Auth: mustAuth(t, grpcapi.AuthConfig{
		Tokens:     []grpcapi.Token{{Value: "operator-token", Role: credential.RoleOperator}},
		Identities: []grpcapi.IdentityRule{{DNSSAN: "*.importers.talos.test", Role: credential.RoleAdmin}},
	})})
	importer := p.ca.Issue(t, tlstest.Options{CommonName: "imp", DNS: []string{"batch.importers.talos.test"}, Client: true})
	// An admin certificate plus an operator token: admin.
	if got, body := do(t, httpsClient(t, p, importer), base, "import", "Authorization", "Bearer operator-token"); !reachedHTTP(got, body) {
		t.Errorf("admin cert + operator token, import: %d %s", got, body)
	}
	// The operator token alone: no import.
	if got, body := do(t, httpsClient(t, p, nil), base, "import", "Authorization", "Bearer operator-token"); reachedHTTP(got, body) {
		t.Errorf("operator token, import: %d, want 403", got)
	}
}

// TestHTTP_XFCC: the identity in X-Forwarded-Client-Cert counts only from a
// direct peer in the XFCC prefixes; it never comes from a header the
// gateway would turn into metadata, nor from a forwarded client address.
func TestHTTP_XFCC(t *testing.T) {
	t.Parallel()
	p := newTLSPKI(t)
	const adminXFCC = `By=spiffe://cluster.local/ns/talos/sa/cp;Hash=00;URI=spiffe://cluster.local/ns/root/sa/admin`
	const operatorXFCC = `By=spiffe://cluster.local/ns/talos/sa/cp;Hash=00;URI=spiffe://cluster.local/ns/ops/sa/deployer`
	trusted := startHTTPS(t, p, httpapi.Options{Auth: mustAuth(t, grpcapi.AuthConfig{Identities: identityRules,
		TrustXFCC: true, XFCCFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})})
	// The client address is taken from X-Forwarded-For here (for key IP
	// restrictions); the XFCC trust must not be.
	untrusted := startHTTPS(t, p, httpapi.Options{ClientIPSource: httpapi.SourceXForwardedFor, Auth: mustAuth(t, grpcapi.AuthConfig{
		Identities: identityRules, TrustXFCC: true, XFCCFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})})
	for _, tc := range []struct {
		name, base, client string
		header             []string
		issue, del         int // 0: the method answers
	}{
		{"trusted peer, operator forwarded", trusted, "", []string{"X-Forwarded-Client-Cert", operatorXFCC}, 0, 403},
		{"trusted peer, admin forwarded", trusted, "", []string{"X-Forwarded-Client-Cert", adminXFCC}, 0, 0},
		{"trusted peer, two lines, the last element counts", trusted, "",
			[]string{"X-Forwarded-Client-Cert", adminXFCC, "X-Forwarded-Client-Cert", operatorXFCC}, 0, 403},
		{"trusted peer, operator forwarded, own cert admin", trusted, "admin", []string{"X-Forwarded-Client-Cert", operatorXFCC}, 0, 403},
		{"trusted peer, nothing forwarded, own cert admin", trusted, "admin", nil, 401, 401},
		{"trusted peer, only as gateway metadata", trusted, "", []string{"Grpc-Metadata-X-Forwarded-Client-Cert", adminXFCC}, 401, 401},
		{"untrusted peer, forged admin", untrusted, "", []string{"X-Forwarded-Client-Cert", adminXFCC}, 401, 401},
		{"untrusted peer, forged admin, claims a trusted address", untrusted, "",
			[]string{"X-Forwarded-For", "10.1.2.3", "X-Real-IP", "10.1.2.3", "X-Forwarded-Client-Cert", adminXFCC}, 401, 401},
		{"untrusted peer, operator cert, forged admin", untrusted, "operator",
			[]string{"X-Forwarded-Client-Cert", adminXFCC, "Grpc-Metadata-X-Forwarded-Client-Cert", adminXFCC}, 0, 403},
	} {
		client := httpsClient(t, p, p.clients[tc.client])
		for call, want := range map[string]int{"issue": tc.issue, "delete": tc.del} {
			got, body := do(t, client, tc.base, call, tc.header...)
			if !answered(got, body, want) {
				t.Errorf("%s, %s: %d %s, want %d (0: the method answers)", tc.name, call, got, body, want)
			}
		}
	}
}

// TestHTTP_AuthEnvelopes: 401 and 403 over TLS carry the AIP-193 envelope,
// and say nothing of which check failed.
func TestHTTP_AuthEnvelopes(t *testing.T) {
	t.Parallel()
	p := newTLSPKI(t)
	base := startHTTPS(t, p, httpapi.Options{Auth: mustAuth(t, grpcapi.AuthConfig{Identities: identityRules})})
	for _, tc := range []struct {
		client, call   string
		code           int
		status, reason string
	}{
		{"", "issue", 401, "UNAUTHENTICATED", "UNAUTHORIZED"},
		{"nobody", "issue", 401, "UNAUTHENTICATED", "UNAUTHORIZED"},
		{"sidecar", "issue", 403, "PERMISSION_DENIED", "FORBIDDEN"},
		{"operator", "delete", 403, "PERMISSION_DENIED", "FORBIDDEN"},
		{"verifier", "issue", 403, "PERMISSION_DENIED", "FORBIDDEN"},
	} {
		got, body := do(t, httpsClient(t, p, p.clients[tc.client]), base, tc.call)
		var env struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Status  string `json:"status"`
				Details []struct {
					Type, Reason, Domain string
				} `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &env); err != nil || got != tc.code || env.Error.Code != tc.code || env.Error.Status != tc.status ||
			len(env.Error.Details) != 1 || env.Error.Details[0].Reason != tc.reason || env.Error.Details[0].Domain == "" {
			t.Errorf("%s on %s: %d %s, want %d %s/%s", tc.client, tc.call, got, body, tc.code, tc.status, tc.reason)
		}
		for _, word := range []string{"token", "certificate", "role", "sidecar", "operator", "verifier"} {
			if bytes.Contains(bytes.ToLower([]byte(env.Error.Message)), []byte(word)) {
				t.Errorf("%s on %s: message %q says which check failed", tc.client, tc.call, env.Error.Message)
			}
		}
	}
}

// TestHTTP_HostCheckWhileAdminOpen: the admin API is open (421 for foreign
// Hosts) only while no credential reaching it is configured; an identity
// rule of an admin role enforces it, and a sidecar identity does not.
func TestHTTP_HostCheckWhileAdminOpen(t *testing.T) {
	t.Parallel()
	p := newTLSPKI(t)
	sidecarOnly := startHTTPS(t, p, httpapi.Options{Auth: mustAuth(t, grpcapi.AuthConfig{
		Identities: []grpcapi.IdentityRule{{DNSSAN: "*.sidecars.talos.test", Role: credential.RoleSidecar}}})})
	verifierRule := startHTTPS(t, p, httpapi.Options{Auth: mustAuth(t, grpcapi.AuthConfig{
		Identities: []grpcapi.IdentityRule{{Subject: "CN=verifier,O=Talos", Role: credential.RoleVerifier}}})})
	for _, tc := range []struct {
		name, base, client, host string
		want                     int // 0: the method answers
	}{
		{"open, no cert, loopback Host", sidecarOnly, "", "localhost", 0},
		{"open, no cert, foreign Host", sidecarOnly, "", "evil.example", 421},
		{"open, sidecar cert", sidecarOnly, "sidecar", "localhost", 403},
		{"enforced by a verifier rule, no cert", verifierRule, "", "localhost", 401},
		{"enforced, verifier cert, foreign Host", verifierRule, "verifier", "evil.example", 0},
	} {
		call := "verify"
		got, body := do(t, httpsClient(t, p, p.clients[tc.client]), tc.base, call, "Host", tc.host)
		if !answered(got, body, tc.want) {
			t.Errorf("%s: %d %s, want %d (0: the method answers)", tc.name, got, body, tc.want)
		}
	}
}
