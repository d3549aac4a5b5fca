package token_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwk"
	jwxjwt "github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/talos-project/talos/pkg/token"
)

// TestInterop_JWX proves that a JWKS consumer this project did not write
// (lestrrat-go/jwx, the library Ory Talos itself uses) fetches the published
// key set over HTTP and verifies derived tokens with it, for every algorithm,
// and rejects a token signed by another key under a published kid.
func TestInterop_JWX(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			retired := signingKey(t, token.EdDSA)
			if alg == token.EdDSA {
				retired = signingKey(t, token.ES256)
			}
			retired.NotAfter = now.Add(time.Hour)
			s := mustSigner(t, []token.SigningKey{retired, signingKey(t, alg)}, "")
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/.well-known/jwks.json" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				if err := json.NewEncoder(w).Encode(s.PublicJWKS(now)); err != nil {
					t.Error(err)
				}
			}))
			t.Cleanup(srv.Close)

			set, err := jwk.Fetch(t.Context(), srv.URL+"/.well-known/jwks.json", jwk.WithHTTPClient(srv.Client()))
			if err != nil {
				t.Fatalf("jwk.Fetch: %v", err)
			}
			if set.Len() != 2 {
				t.Errorf("jwx sees %d keys, want 2", set.Len())
			}
			parse := func(tok string) (jwxjwt.Token, error) {
				return jwxjwt.Parse([]byte(tok),
					jwxjwt.WithKeySet(set),
					jwxjwt.WithClock(jwxjwt.ClockFunc(func() time.Time { return now })),
					jwxjwt.WithIssuer(issuer),
				)
			}

			got, err := parse(mustSign(t, s, claims()))
			if err != nil {
				t.Fatalf("jwx rejects our %s token: %v", alg, err)
			}
			sub, _ := got.Subject()
			var nid, team string
			var scp []any
			if err := got.Get("nid", &nid); err != nil {
				t.Fatal(err)
			}
			if err := got.Get("team", &team); err != nil {
				t.Fatal(err)
			}
			if err := got.Get("scp", &scp); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]any{string(keyID), string(tenant), "platform", []any{"keys:read", "keys:write", "billing:read"}}, []any{sub, nid, team, scp}); diff != "" {
				t.Errorf("claims seen by jwx (-want +got):\n%s", diff)
			}

			forged := signRaw(t, jwt.SigningMethodEdDSA, edKeyOther, map[string]any{"alg": "EdDSA", "kid": s.CurrentKID(), "typ": "JWT"}, payload())
			if _, err := parse(forged); err == nil {
				t.Error("jwx accepted a token signed by another key")
			}
		})
	}
}
