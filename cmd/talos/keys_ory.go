package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// markLocalErrors makes the unmarked errors of every command under keys
// usage errors (exit 2): the client marks what the server or the transport
// answered, and the verdicts mark themselves (errNotValid, errNotImported),
// so what is left was refused here, before a request: a bad flag value, a
// malformed key ID, an unreadable file.
func markLocalErrors(c *cobra.Command) {
	for _, s := range c.Commands() {
		if inner := s.RunE; inner != nil {
			s.RunE = func(cmd *cobra.Command, args []string) error {
				err := inner(cmd, args)
				if err != nil && !errors.As(err, new(*exitError)) {
					return withExit(exitUsage, err)
				}
				return err
			}
		}
		markLocalErrors(s)
	}
}

// forKind fixes the hidden --imported flag of a command under `keys issued`
// (false) or `keys imported` (true).
func forKind(c *cobra.Command, imported bool) *cobra.Command {
	f := c.Flags().Lookup("imported")
	if f == nil {
		return c
	}
	if imported {
		_ = f.Value.Set("true")
		f.DefValue = "true"
	}
	f.Hidden = true
	inner := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if f.Changed {
			return fmt.Errorf("--imported is implied by %q", cmd.Parent().CommandPath())
		}
		return inner(cmd, args)
	}
	return c
}

func withAliases(c *cobra.Command, aliases ...string) *cobra.Command {
	c.Aliases = append(c.Aliases, aliases...)
	return c
}

// newKeysIssuedCmd is Ory Talos's `keys issued …`: the same commands, on
// issued keys.
func newKeysIssuedCmd(e *env, o *keysOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issued",
		Short: "Issued keys, in Ory Talos's command form (create, get, list, update, rotate, revoke)",
	}
	cmd.AddCommand(
		withAliases(newKeysIssueCmd(e, o), "create"),
		forKind(newKeysGetCmd(e, o), false),
		forKind(newKeysListCmd(e, o), false),
		forKind(newKeysUpdateCmd(e, o), false),
		newKeysRotateCmd(e, o),
		forKind(newKeysRevokeCmd(e, o), false),
	)
	return cmd
}

// newKeysImportedCmd is Ory Talos's `keys imported …`: the same commands,
// on imported keys.
func newKeysImportedCmd(e *env, o *keysOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "imported",
		Short: "Imported keys, in Ory Talos's command form (create, get, list, update, revoke, delete, batch-import)",
	}
	cmd.AddCommand(
		withAliases(newKeysImportCmd(e, o), "create"),
		forKind(newKeysGetCmd(e, o), true),
		forKind(newKeysListCmd(e, o), true),
		forKind(newKeysUpdateCmd(e, o), true),
		forKind(newKeysRevokeCmd(e, o), true),
		newKeysDeleteCmd(e, o),
		newKeysBatchImportCmd(e, o),
	)
	return cmd
}

func newKeysDeriveTokenCmd(e *env, o *keysOptions) *cobra.Command {
	var algorithm, ttl, claims string
	var scopes, audiences []string
	cmd := &cobra.Command{
		Use:   "derive-token CREDENTIAL",
		Short: "Derive a short-lived JWT or macaroon from an API key and print it (once)",
		Long: `Derive a short-lived token (a JWT, or a macaroon) from an issued or imported
API key, with at most the key's rights. Give "-" to read the key from stdin
rather than the command line.`,
		Example: `  printf '%s\n' "$API_KEY" | talos keys derive-token - --algorithm jwt --ttl 15m --scopes read`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			alg, err := parseEnum[pb.TokenAlgorithm]("--algorithm", algorithm, "TOKEN_ALGORITHM_", pb.TokenAlgorithm_value, "jwt, macaroon")
			if err != nil {
				return err
			}
			if err := checkDuration("--ttl", ttl); err != nil {
				return err
			}
			cc, err := parseMetadata(claims)
			if err != nil {
				return fmt.Errorf("--claims: %w", err)
			}
			cred, err := oneCredential(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			req := &pb.DeriveTokenRequest{Credential: cred, Algorithm: alg, Ttl: ttl, Scopes: cleanScopes(scopes), CustomClaims: cc, Audiences: audiences}
			var resp pb.DeriveTokenResponse
			if err := c.call(cmd.Context(), http.MethodPost, pathDerive, nil, req, &resp); err != nil {
				return err
			}
			return p.print(&resp, func(w io.Writer) {
				t := resp.GetToken()
				fmt.Fprintf(w, "EXPIRES\t%s\n", expires(t.GetExpireTime()))
				fmt.Fprintf(w, "SCOPES\t%s\n", joinCells(t.GetScopes()))
				if len(t.GetAudiences()) > 0 {
					fmt.Fprintf(w, "AUDIENCES\t%s\n", joinCells(t.GetAudiences()))
				}
				fmt.Fprintln(w)
				fmt.Fprintln(w, t.GetToken())
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&algorithm, "algorithm", "jwt", "jwt or macaroon")
	fl.StringVar(&ttl, "ttl", "", "lifetime, e.g. 15m (default: the server's)")
	fl.StringSliceVar(&scopes, "scopes", nil, "narrow the token to these of the key's scopes")
	fl.StringVar(&claims, "claims", "", `custom claims as a JSON object, e.g. '{"tenant":"acme"}'`)
	fl.StringSliceVar(&audiences, "audience", nil, "bind the token to these audiences (comma-separated)")
	return cmd
}
