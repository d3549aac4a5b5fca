package token_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// A holder narrows a macaroon before handing it to a sub-agent: fewer scopes,
// a shorter life, one network, one audience, and a condition the service
// enforces. No root key and no call to Talos are needed; only Talos (which
// holds the root key) can verify the result.
func ExampleAttenuate() {
	// Talos's side: derive a macaroon from a key.
	root := token.MacaroonRootKey([]byte("the secrets.hmac.current value, 32+ bytes"))
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	minted, err := token.MintMacaroon(root, "mc", token.Claims{
		Subject:  "0b7e1c7a-3f0e-4d4a-9d43-2f1c2b3a4d5e",
		Issuer:   "https://talos.example.com",
		Tenant:   "00000000-0000-0000-0000-000000000000",
		IssuedAt: issued,
		Expiry:   issued.Add(time.Hour),
		Scopes:   []string{"keys:read", "keys:write"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The holder's side: attenuate offline.
	narrowed, err := token.Attenuate(minted,
		token.Scopes("keys:read"),
		token.Expires(issued.Add(15*time.Minute)),
		token.CIDRs(netip.MustParsePrefix("10.1.0.0/16")),
		token.Audiences("https://reports.example.com"),
		token.Condition("method", "GET"),
	)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Talos's side again: verify with every active root key and prefix.
	// The policy (issuers, skew) comes from configuration and is evaluated
	// at the instant of the request.
	policy, err := token.NewPolicy("https://talos.example.com", nil, 5*time.Minute)
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := token.VerifyMacaroon(narrowed, [][]byte{root}, []string{"mc"}, policy.Options(issued.Add(time.Minute), credential.Presented{
		Tenant:            "00000000-0000-0000-0000-000000000000",
		ClientIP:          netip.MustParseAddr("10.1.2.3"),
		ExpectedAudiences: []string{"https://reports.example.com"},
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Scopes, c.Expiry.Format(time.RFC3339), c.AllowedCIDRs, c.Audiences, c.Conditions)
	// Output: [keys:read] 2026-03-01T12:15:00Z [10.1.0.0/16] [https://reports.example.com] map[method:GET]
}
