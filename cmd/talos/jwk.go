package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/talos-project/talos/pkg/config"
	"github.com/talos-project/talos/pkg/token"
)

// signingKeysFromConfig reads credentials.derived_tokens.jwt.signing_keys.urls:
// JWK sets with private keys, inline (base64://) or in a file (file://).
func signingKeysFromConfig(cfg config.Config) ([]token.SigningKey, error) {
	var out []token.SigningKey
	for i, u := range cfg.Credentials.DerivedTokens.JWT.SigningKeys.URLs {
		v := u.Value()
		var data []byte
		var err error
		switch {
		case strings.HasPrefix(v, "base64://"):
			enc := strings.TrimPrefix(v, "base64://")
			if data, err = base64.StdEncoding.DecodeString(enc); err != nil {
				data, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "="))
			}
		case strings.HasPrefix(v, "file://"):
			data, err = os.ReadFile(strings.TrimPrefix(v, "file://"))
		default:
			err = errors.New("unsupported scheme")
		}
		if err != nil {
			// Never echo the value: it holds private keys.
			return nil, fmt.Errorf("credentials.derived_tokens.jwt.signing_keys.urls[%d]: cannot read the key set", i)
		}
		keys, err := token.ParseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("credentials.derived_tokens.jwt.signing_keys.urls[%d]: %w", i, err)
		}
		out = append(out, keys...)
	}
	return out, nil
}

func newJWKCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "jwk", Short: "Create, fetch and rotate the JSON Web Keys that sign derived JWTs"}

	var kid string
	var publicOnly bool
	gen := &cobra.Command{
		Use:       "generate eddsa|rsa|ecdsa",
		Short:     "Print a new private signing key as a JWK set (for signing_keys.urls)",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"eddsa", "rsa", "ecdsa"},
		RunE: func(_ *cobra.Command, args []string) error {
			alg, ok := map[string]string{"eddsa": "EdDSA", "rsa": "RS256", "ecdsa": "ES256"}[strings.ToLower(args[0])]
			if !ok {
				return fmt.Errorf("unknown key type %q: want eddsa, rsa or ecdsa", args[0])
			}
			k, err := token.GenerateKey(alg, nil)
			if err != nil {
				return err
			}
			if kid != "" {
				k.ID = kid
			}
			b, err := token.MarshalJWKS([]token.SigningKey{k}, !publicOnly)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, string(b))
			return err
		},
	}
	gen.Flags().StringVar(&kid, "kid", "", "key ID (default: the RFC 7638 thumbprint)")
	gen.Flags().BoolVar(&publicOnly, "public-only", false, "print only the public key")

	var endpoint string
	get := &cobra.Command{
		Use:   "get",
		Short: "Fetch the public key set a server publishes (/.well-known/jwks.json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(endpoint, "/")+"/.well-known/jwks.json", nil)
			if err != nil {
				return err
			}
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				return withExit(exitServer, fmt.Errorf("talos: %w\nIs Talos running and reachable there? Set --endpoint or TALOS_ENDPOINT.", err))
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if err != nil {
				return withExit(exitServer, err)
			}
			if resp.StatusCode != http.StatusOK {
				code := exitNegative
				if resp.StatusCode >= 500 {
					code = exitServer
				}
				return withExit(code, fmt.Errorf("talos: GET jwks.json answered HTTP %d", resp.StatusCode))
			}
			_, err = fmt.Fprintln(e.stdout, strings.TrimSpace(string(body)))
			return err
		},
	}
	get.Flags().StringVarP(&endpoint, "endpoint", "e", envOr(e, "TALOS_ENDPOINT", "http://localhost:4420"), "server URL")

	var files []string
	var alg string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new generated signing key current; old keys stay published until their tokens expire",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(e, files)
			if err != nil {
				return err
			}
			p, err := buildPlane(cmd.Context(), cfg, log, false)
			if err != nil {
				return err
			}
			defer p.close()
			kid, err := p.keys.RotateSigningKey(cmd.Context(), alg)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "New signing key %s is current. Restarted or refreshing replicas pick it up.\n", kid)
			return err
		},
	}
	rotate.Flags().StringSliceVarP(&files, "config", "c", nil, "config file (YAML or JSON)")
	rotate.Flags().StringVar(&alg, "algorithm", "EdDSA", "EdDSA, RS256 or ES256")

	cmd.AddCommand(gen, get, rotate)
	return cmd
}

func envOr(e *env, name, def string) string {
	for _, kv := range e.vars {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name && v != "" {
			return v
		}
	}
	return def
}
