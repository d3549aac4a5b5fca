package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// errNotValid reports a verification verdict of "not valid". verify and
// batch-verify return it after printing the verdict, so that the exit status
// answers "is this credential valid?" in scripts.
var errNotValid = errors.New("not valid")

func newKeysVerifyCmd(e *env, o *keysOptions) *cobra.Command {
	var audiences []string
	cmd := &cobra.Command{
		Use:   "verify CREDENTIAL",
		Short: "Verify a credential; exit status 0 only if it is valid",
		Long: `Verify a credential (an issued or imported API key, or a derived token) and
print the verdict. The exit status is 0 only if the credential is valid. Give
"-" to read the credential from stdin rather than the command line.`,
		Example: `  printf '%s\n' "$API_KEY" | talos keys verify -`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cred, err := oneCredential(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			c.noCache = o.noCache
			req := &pb.VerifyApiKeyRequest{Credential: cred, ExpectedAudiences: audiences}
			var resp pb.VerifyApiKeyResponse
			if err := c.call(cmd.Context(), http.MethodPost, pathVerify, nil, req, &resp); err != nil {
				return err
			}
			if err := p.print(&resp, func(w io.Writer) { verdictDetail(w, &resp) }); err != nil {
				return err
			}
			if !resp.GetIsValid() {
				return withExit(exitNegative, fmt.Errorf("talos: the credential is %w (%s)", errNotValid, resp.GetErrorCode()))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&audiences, "audience", nil, "audiences accepted for audience-bound derived tokens (comma-separated)")
	cmd.Flags().BoolVar(&o.noCache, "no-cache", false, "ask for a fresh lookup (sends Cache-Control: no-cache; see docs/cli.md)")
	return cmd
}

func newKeysBatchVerifyCmd(e *env, o *keysOptions) *cobra.Command {
	var audiences []string
	cmd := &cobra.Command{
		Use:   "batch-verify CREDENTIAL...",
		Short: "Verify several credentials; exit status 0 only if all are valid",
		Long: `Verify several credentials and print one verdict per credential, numbered in
argument order (credentials are never printed). The exit status is 0 only if
all are valid. "-" reads credentials from stdin, one per line. More than 100
credentials are sent in several requests.`,
		Example: `  talos keys batch-verify - < credentials.txt`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			creds, err := credentialArgs(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if len(creds) == 0 {
				return errors.New("no credentials to verify")
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			c.noCache = o.noCache
			all := &pb.BatchVerifyApiKeysResponse{}
			for start := 0; start < len(creds); start += batchVerifyChunk {
				chunk := creds[start:min(start+batchVerifyChunk, len(creds))]
				req := &pb.BatchVerifyApiKeysRequest{Requests: make([]*pb.VerifyApiKeyRequest, len(chunk))}
				for i, cred := range chunk {
					req.Requests[i] = &pb.VerifyApiKeyRequest{Credential: cred, ExpectedAudiences: audiences}
				}
				var resp pb.BatchVerifyApiKeysResponse
				if err := c.call(cmd.Context(), http.MethodPost, pathBatchVerify, nil, req, &resp); err != nil {
					return err
				}
				if len(resp.GetResults()) != len(chunk) {
					return fmt.Errorf("talos: batch verify answered %d results for %d credentials", len(resp.GetResults()), len(chunk))
				}
				all.Results = append(all.Results, resp.GetResults()...)
			}
			invalid := 0
			for _, r := range all.GetResults() {
				if !r.GetIsValid() {
					invalid++
				}
			}
			if err := p.print(all, func(w io.Writer) { verdictTable(w, all.GetResults()) }); err != nil {
				return err
			}
			if invalid > 0 {
				return withExit(exitNegative, fmt.Errorf("talos: %d of %d credentials are %w", invalid, len(creds), errNotValid))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&audiences, "audience", nil, "audiences accepted for audience-bound derived tokens (comma-separated)")
	cmd.Flags().BoolVar(&o.noCache, "no-cache", false, "ask for a fresh lookup (sends Cache-Control: no-cache; see docs/cli.md)")
	return cmd
}

func verdictTable(w io.Writer, results []*pb.VerifyApiKeyResponse) {
	fmt.Fprintln(w, "#\tVALID\tKEY ID\tACTOR\tSCOPES\tERROR")
	for i, r := range results {
		errText := "-"
		if !r.GetIsValid() {
			errText = verdictError(r)
		}
		fmt.Fprintf(w, "%d\t%t\t%s\t%s\t%s\t%s\n", i+1, r.GetIsValid(), cell(r.GetKeyId()), cell(r.GetActorId()), joinCells(r.GetScopes()), errText)
	}
}

func newKeysSelfRevokeCmd(e *env, o *keysOptions) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "self-revoke CREDENTIAL",
		Short: "Revoke a key by presenting it (the public, possession-based endpoint)",
		Long: `Revoke an issued or imported key by presenting the key itself, through the
public self-service endpoint. No admin token is sent. Give "-" to read the
credential from stdin.`,
		Example: `  printf '%s\n' "$LEAKED_KEY" | talos keys self-revoke - --reason key_compromise -e https://api.example.com`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseReason(reason)
			if err != nil {
				return err
			}
			cred, err := oneCredential(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			// Possession is the authorization; the admin token is not the
			// public surface's business.
			public := *c
			public.token = ""
			public.public = true
			req := &pb.SelfRevokeApiKeyRequest{Credential: cred, Reason: r}
			var resp pb.SelfRevokeApiKeyResponse
			if err := public.call(cmd.Context(), http.MethodPost, pathSelfRevoke, nil, req, &resp); err != nil {
				return err
			}
			return p.print(&resp, func(w io.Writer) { fmt.Fprintln(w, "Key revoked.") })
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", reasonUsage)
	return cmd
}
