package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// Paths of the v2alpha1 HTTP/JSON API (see pkg/api/talos/v2alpha1/gateway.yaml).
const (
	pathIssued       = "/v2alpha1/admin/issuedApiKeys"
	pathImported     = "/v2alpha1/admin/importedApiKeys"
	pathBatchImport  = "/v2alpha1/admin/importedApiKeys:batchCreate"
	pathVerify       = "/v2alpha1/admin/apiKeys:verify"
	pathBatchVerify  = "/v2alpha1/admin/apiKeys:batchVerify"
	pathSelfRevoke   = "/v2alpha1/apiKeys:selfRevoke"
	pathDerive       = "/v2alpha1/admin/apiKeys:derive"
	defaultEndpoint  = "http://localhost:4420"
	envEndpoint      = "TALOS_ENDPOINT"
	envAdminToken    = "TALOS_ADMIN_TOKEN"
	maxBatchImport   = 1000
	batchVerifyChunk = 100 // the server's limit per batchVerify request
)

// keysOptions are the persistent flags of `talos keys`.
type keysOptions struct {
	endpoint string
	format   string
	quiet    bool
	noCache  bool // verify, batch-verify: --no-cache
	timeout  time.Duration
	token    string
}

// open returns the client and printer a subcommand needs. Flags win over the
// environment (TALOS_ENDPOINT, TALOS_ADMIN_TOKEN), which wins over defaults.
func (o *keysOptions) open(cmd *cobra.Command, e *env) (*adminClient, keysPrinter, error) {
	p, err := newKeysPrinter(o.format, o.quiet, e.stdout, e.stderr)
	if err != nil {
		return nil, p, withExit(exitUsage, err)
	}
	endpoint, token := o.endpoint, o.token
	if !cmd.Flags().Changed("endpoint") {
		if v := keysEnv(e.vars, envEndpoint); v != "" {
			endpoint = v
		}
	}
	if !cmd.Flags().Changed("token") {
		token = keysEnv(e.vars, envAdminToken)
	}
	c, err := newAdminClient(endpoint, token, o.timeout)
	return c, p, withExit(exitUsage, err)
}

// keysEnv returns the last value of key in vars (KEY=VALUE pairs).
func keysEnv(vars []string, key string) string {
	v := ""
	for _, kv := range vars {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func newKeysCmd(e *env) *cobra.Command {
	o := &keysOptions{}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage API keys through the admin API",
		Long: `Manage API keys through the Talos HTTP/JSON API.

Issued keys are minted by Talos; imported keys are existing credentials
(e.g. from another system) that Talos stores hashed. Commands act on issued
keys unless --imported is given. Secrets are printed only by issue and
rotate, once. Credentials may be given as "-" to read them from stdin, which
keeps them out of shell history and process listings.

Ory Talos's command forms work too: "keys issued list" is "keys list",
"keys imported get ID" is "keys get --imported ID", "create" is issue or
import.`,
	}
	f := cmd.PersistentFlags()
	f.StringVarP(&o.endpoint, "endpoint", "e", defaultEndpoint, "base URL of the Talos API (env "+envEndpoint+")")
	f.StringVarP(&o.format, "format", "o", "table", "output format: table, json, json-pretty, yaml or jsonpath=EXPR")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print only IDs (and a new secret or token), one per line")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of each HTTP request")
	f.StringVar(&o.token, "token", "", "bearer token for the admin API (env "+envAdminToken+", preferred: flags show in process listings)")
	cmd.AddCommand(
		newKeysIssueCmd(e, o),
		newKeysGetCmd(e, o),
		newKeysListCmd(e, o),
		newKeysUpdateCmd(e, o),
		newKeysRotateCmd(e, o),
		newKeysRevokeCmd(e, o),
		newKeysImportCmd(e, o),
		newKeysBatchImportCmd(e, o),
		newKeysDeleteCmd(e, o),
		newKeysVerifyCmd(e, o),
		newKeysBatchVerifyCmd(e, o),
		newKeysSelfRevokeCmd(e, o),
		newKeysDeriveTokenCmd(e, o),
		newKeysIssuedCmd(e, o),
		newKeysImportedCmd(e, o),
	)
	markLocalErrors(cmd)
	return cmd
}

// keyPath is the resource path of one key; the ID has been checked by
// checkKeyID, so it needs no escaping.
func keyPath(imported bool, id string) string {
	if imported {
		return pathImported + "/" + id
	}
	return pathIssued + "/" + id
}

func kindWord(imported bool) string {
	if imported {
		return "Imported key"
	}
	return "Key"
}

func newKeysIssueCmd(e *env, o *keysOptions) *cobra.Command {
	var a keyAttrFlags
	var actor, ttl, requestID string
	cmd := &cobra.Command{
		Use:   "issue [name]",
		Short: "Issue an API key and print its secret (once)",
		Example: `  talos keys issue ci-deploy --actor team-payments --scopes read,write --ttl 90d
  talos keys issue --name ci --actor alice --rate-limit-quota 100 --rate-limit-window 1m --format json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.resolveName(args); err != nil {
				return err
			}
			if err := checkDuration("--ttl", ttl); err != nil {
				return err
			}
			attrs, err := a.parse()
			if err != nil {
				return err
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			req := &pb.IssueApiKeyRequest{
				Name: a.name, ActorId: actor, Scopes: cleanScopes(a.scopes), Ttl: ttl,
				Metadata: attrs.metadata, RateLimitPolicy: attrs.rate, IpRestriction: attrs.ip,
				Visibility: attrs.visibility, RequestId: requestID,
			}
			var resp pb.IssueApiKeyResponse
			if err := c.call(cmd.Context(), http.MethodPost, pathIssued, nil, req, &resp); err != nil {
				return err
			}
			if resp.GetSecret() != "" {
				p.warnSecret()
			}
			return p.print(&resp, func(w io.Writer) {
				keyTable(w, resp.GetIssuedApiKey())
				if resp.GetSecret() == "" {
					fmt.Fprintln(w, "\nNo secret: this request ID was used before, and the secret is shown only to the first request.")
					return
				}
				printSecret(w, resp.GetSecret())
			})
		},
	}
	a.register(cmd, true)
	fl := cmd.Flags()
	fl.StringVar(&actor, "actor", "", "ID of the actor (user, service) that owns the key (required)")
	fl.StringVar(&ttl, "ttl", "", "lifetime, e.g. 24h, 90d, 1y (default: the server's default_ttl)")
	fl.StringVar(&requestID, "request-id", "", "idempotency key (at most 36 characters): a retry with the same ID returns the same key")
	_ = cmd.MarkFlagRequired("actor")
	return cmd
}

func newKeysGetCmd(e *env, o *keysOptions) *cobra.Command {
	var imported bool
	cmd := &cobra.Command{
		Use:   "get KEY_ID",
		Short: "Show one key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkKeyID(args[0]); err != nil {
				return err
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			if imported {
				var k pb.ImportedApiKey
				if err := c.call(cmd.Context(), http.MethodGet, keyPath(true, args[0]), nil, nil, &k); err != nil {
					return err
				}
				return p.print(&k, func(w io.Writer) { keyDetail(w, &k) })
			}
			var k pb.IssuedApiKey
			if err := c.call(cmd.Context(), http.MethodGet, keyPath(false, args[0]), nil, nil, &k); err != nil {
				return err
			}
			return p.print(&k, func(w io.Writer) { keyDetail(w, &k) })
		},
	}
	cmd.Flags().BoolVar(&imported, "imported", false, "the key is an imported key")
	return cmd
}

func newKeysListCmd(e *env, o *keysOptions) *cobra.Command {
	var imported, all bool
	var actor, status, pageToken string
	var pageSize int32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List keys, optionally by actor and status",
		Example: `  talos keys list --actor alice --status active
  talos keys list --imported --page-size 100 --page-token "$NEXT"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := parseStatus(status)
			if err != nil {
				return err
			}
			if pageSize < 0 {
				return errors.New("--page-size must not be negative")
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			q := url.Values{}
			if pageSize > 0 {
				q.Set("page_size", strconv.Itoa(int(pageSize)))
			}
			if pageToken != "" {
				q.Set("page_token", pageToken)
			}
			if filter := listFilter(actor, st); filter != "" {
				q.Set("filter", filter)
			}
			next := ""
			if imported {
				var resp pb.ListImportedApiKeysResponse
				next, err = listPages(cmd, c, pathImported, q, all, &resp, func(page *pb.ListImportedApiKeysResponse) string {
					resp.ImportedApiKeys = append(resp.ImportedApiKeys, page.GetImportedApiKeys()...)
					return page.GetNextPageToken()
				})
				if err != nil {
					return err
				}
				resp.NextPageToken = next
				err = p.print(&resp, func(w io.Writer) { keyTable(w, resp.GetImportedApiKeys()...) })
			} else {
				var resp pb.ListIssuedApiKeysResponse
				next, err = listPages(cmd, c, pathIssued, q, all, &resp, func(page *pb.ListIssuedApiKeysResponse) string {
					resp.IssuedApiKeys = append(resp.IssuedApiKeys, page.GetIssuedApiKeys()...)
					return page.GetNextPageToken()
				})
				if err != nil {
					return err
				}
				resp.NextPageToken = next
				err = p.print(&resp, func(w io.Writer) { keyTable(w, resp.GetIssuedApiKeys()...) })
			}
			if err == nil && next != "" && !p.json {
				fmt.Fprintf(e.stderr, "More keys: add --page-token %s\n", next)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&imported, "imported", false, "list imported keys instead of issued ones")
	fl.StringVar(&actor, "actor", "", "only keys of this actor")
	fl.StringVar(&status, "status", "", "only keys in this status: active, revoked or expired")
	fl.Int32Var(&pageSize, "page-size", 0, "keys per page, at most 1000 (default: the server's, 50)")
	fl.StringVar(&pageToken, "page-token", "", "next_page_token of the previous page")
	fl.BoolVar(&all, "all", false, "follow next_page_token and list every page")
	return cmd
}

// maxListPages bounds --all: 10,000 pages of up to 1000 keys.
const maxListPages = 10000

// listPages fetches the page at q into a fresh message and hands it to add,
// which merges it into the result and returns its next_page_token; with all
// it follows the tokens to the last page. It returns the token after the
// last page fetched ("" at the end).
func listPages[M any, PM interface {
	*M
	proto.Message
}](cmd *cobra.Command, c *adminClient, path string, q url.Values, all bool, _ PM, add func(PM) string) (string, error) {
	seen := map[string]bool{}
	for n := 0; ; n++ {
		page := PM(new(M))
		if err := c.call(cmd.Context(), http.MethodGet, path, q, nil, page); err != nil {
			return "", err
		}
		next := add(page)
		if !all || next == "" {
			return next, nil
		}
		if seen[next] || n+1 >= maxListPages {
			return "", withExit(exitServer, errors.New("talos: the server's page tokens do not end (a token repeated or too many pages)"))
		}
		seen[next] = true
		q.Set("page_token", next)
	}
}

func newKeysUpdateCmd(e *env, o *keysOptions) *cobra.Command {
	var a keyAttrFlags
	var imported bool
	cmd := &cobra.Command{
		Use:   "update KEY_ID",
		Short: "Change the attributes given as flags (and only those)",
		Long: `Change the attributes given as flags, and only those: the request's
update_mask names exactly the flags given. An empty value clears an attribute:
--allowed-cidrs "" lifts the IP restriction, --scopes "" removes all scopes,
--metadata "" removes the metadata, --rate-limit-quota 0 removes the rate
limit.`,
		Example: `  talos keys update 7c9e6679-7425-40de-944b-e07fc1f90ae7 --name ci-deploy --scopes read
  talos keys update 7c9e6679-7425-40de-944b-e07fc1f90ae7 --allowed-cidrs ""`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkKeyID(args[0]); err != nil {
				return err
			}
			mask, attrs, err := a.update()
			if err != nil {
				return err
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			q := url.Values{"update_mask": {strings.Join(mask.GetPaths(), ",")}}
			scopes := cleanScopes(a.scopes)
			if imported {
				body := &pb.ImportedApiKey{Name: a.name, Scopes: scopes, Metadata: attrs.metadata, RateLimitPolicy: attrs.rate, IpRestriction: attrs.ip}
				var k pb.ImportedApiKey
				if err := c.call(cmd.Context(), http.MethodPatch, keyPath(true, args[0]), q, body, &k); err != nil {
					return err
				}
				return p.print(&k, func(w io.Writer) { keyTable(w, &k) })
			}
			body := &pb.IssuedApiKey{Name: a.name, Scopes: scopes, Metadata: attrs.metadata, RateLimitPolicy: attrs.rate, IpRestriction: attrs.ip}
			var k pb.IssuedApiKey
			if err := c.call(cmd.Context(), http.MethodPatch, keyPath(false, args[0]), q, body, &k); err != nil {
				return err
			}
			return p.print(&k, func(w io.Writer) { keyTable(w, &k) })
		},
	}
	a.register(cmd, false)
	cmd.Flags().BoolVar(&imported, "imported", false, "the key is an imported key")
	return cmd
}

func newKeysRotateCmd(e *env, o *keysOptions) *cobra.Command {
	var a keyAttrFlags
	var grace string
	cmd := &cobra.Command{
		Use:   "rotate KEY_ID",
		Short: "Replace an issued key with a new one and print the new secret (once)",
		Long: `Replace an issued key with a new one that inherits its attributes (and its
expiry), except those given as flags, and print the new secret once. The old
key is revoked at once, or after --grace-period, during which both work.`,
		Example: `  talos keys rotate 7c9e6679-7425-40de-944b-e07fc1f90ae7 --grace-period 1h`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkKeyID(args[0]); err != nil {
				return err
			}
			if err := checkDuration("--grace-period", grace); err != nil {
				return err
			}
			req, err := a.rotate()
			if err != nil {
				return err
			}
			req.GracePeriod = grace
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			var resp pb.RotateIssuedApiKeyResponse
			if err := c.call(cmd.Context(), http.MethodPost, keyPath(false, args[0])+":rotate", nil, req, &resp); err != nil {
				return err
			}
			p.warnSecret()
			return p.print(&resp, func(w io.Writer) {
				keyTable(w, resp.GetIssuedApiKey(), resp.GetOldIssuedApiKey())
				printSecret(w, resp.GetSecret())
			})
		},
	}
	a.register(cmd, true)
	cmd.Flags().StringVar(&grace, "grace-period", "", "how long the old key keeps working, e.g. 1h (default: revoked at once)")
	return cmd
}

func newKeysRevokeCmd(e *env, o *keysOptions) *cobra.Command {
	var imported bool
	var reason, description string
	cmd := &cobra.Command{
		Use:     "revoke KEY_ID",
		Short:   "Revoke a key",
		Example: `  talos keys revoke 7c9e6679-7425-40de-944b-e07fc1f90ae7 --reason key_compromise`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkKeyID(args[0]); err != nil {
				return err
			}
			r, err := parseReason(reason)
			if err != nil {
				return err
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			// The two revoke bodies have the same fields; key_id is in the path.
			req := &pb.AdminRevokeIssuedApiKeyRequest{Reason: r, Description: description}
			if err := c.call(cmd.Context(), http.MethodPost, keyPath(imported, args[0])+":revoke", nil, req, nil); err != nil {
				return err
			}
			return p.print(&emptypb.Empty{}, func(w io.Writer) {
				fmt.Fprintf(w, "%s %s revoked.\n", kindWord(imported), args[0])
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&imported, "imported", false, "the key is an imported key")
	fl.StringVar(&reason, "reason", "", reasonUsage)
	fl.StringVar(&description, "description", "", "free text, allowed only with --reason privilege_withdrawn")
	// Ory Talos's CLI calls it --reason-text.
	fl.StringVar(&description, "reason-text", "", "alias of --description")
	_ = fl.MarkHidden("reason-text")
	cmd.MarkFlagsMutuallyExclusive("description", "reason-text")
	return cmd
}

func newKeysDeleteCmd(e *env, o *keysOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete KEY_ID",
		Short: "Delete an imported key for good",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkKeyID(args[0]); err != nil {
				return err
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			if err := c.call(cmd.Context(), http.MethodDelete, keyPath(true, args[0]), nil, nil, nil); err != nil {
				return err
			}
			return p.print(&emptypb.Empty{}, func(w io.Writer) {
				fmt.Fprintf(w, "Imported key %s deleted.\n", args[0])
			})
		},
	}
}
