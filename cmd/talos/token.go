package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/talos-project/talos/pkg/token"
)

func newTokenCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Work with derived tokens offline"}
	var (
		expiresIn  time.Duration
		notBefore  string
		scopes     []string
		cidrs      []string
		conditions []string
	)
	att := &cobra.Command{
		Use:   "attenuate MACAROON|-",
		Short: "Narrow a macaroon's rights offline, without contacting the server",
		Long: `Adds first-party caveats to a derived macaroon. Anyone holding a macaroon can
narrow it (shorter life, fewer scopes, fewer networks, extra conditions) and hand
the result to a less trusted party; nobody can widen it. Talos verifies the
narrowed rights. Give - to read the macaroon from stdin.`,
		Example: `  talos token attenuate "$MACAROON" --expires-in 5m --scopes read --condition agent=build-42`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok := args[0]
			if tok == "-" {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("read macaroon from stdin: %w", err)
				}
				tok = strings.TrimSpace(line)
			}
			var cs []token.Caveat
			if expiresIn > 0 {
				cs = append(cs, token.Expires(time.Now().Add(expiresIn).Truncate(time.Second)))
			}
			if notBefore != "" {
				t, err := time.Parse(time.RFC3339, notBefore)
				if err != nil {
					return fmt.Errorf("--not-before: want RFC 3339, e.g. 2026-01-02T15:04:05Z")
				}
				cs = append(cs, token.NotBefore(t))
			}
			if len(scopes) > 0 {
				cs = append(cs, token.Scopes(scopes...))
			}
			if len(cidrs) > 0 {
				ps := make([]netip.Prefix, len(cidrs))
				for i, c := range cidrs {
					p, err := netip.ParsePrefix(c)
					if err != nil {
						return fmt.Errorf("--cidrs: %q is not a CIDR", c)
					}
					ps[i] = p
				}
				cs = append(cs, token.CIDRs(ps...))
			}
			for _, c := range conditions {
				k, v, ok := strings.Cut(c, "=")
				if !ok || k == "" {
					return fmt.Errorf("--condition: want key=value, got %q", c)
				}
				cs = append(cs, token.Condition(k, v))
			}
			if len(cs) == 0 {
				return fmt.Errorf("give at least one caveat (--expires-in, --not-before, --scopes, --cidrs, --condition)")
			}
			out, err := token.Attenuate(tok, cs...)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, out)
			return err
		},
	}
	att.Flags().DurationVar(&expiresIn, "expires-in", 0, "expire this long from now (only ever shortens)")
	att.Flags().StringVar(&notBefore, "not-before", "", "not valid before this RFC 3339 time")
	att.Flags().StringSliceVar(&scopes, "scopes", nil, "keep only these scopes")
	att.Flags().StringSliceVar(&cidrs, "cidrs", nil, "allow only clients in these CIDRs")
	att.Flags().StringArrayVar(&conditions, "condition", nil, "a key=value condition the verifier reports back (repeatable)")
	cmd.AddCommand(att)
	return cmd
}
