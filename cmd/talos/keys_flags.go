package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
)

// keyAttrFlags are the key attributes that issue, import, update and rotate
// share. Which of them a request carries depends on the command: see
// changed.
type keyAttrFlags struct {
	name       string
	scopes     []string
	metadata   string
	quota      int64
	window     string
	cidrs      []string
	visibility string
	flags      *pflag.FlagSet
}

const defaultWindow = "60s"

func (a *keyAttrFlags) register(cmd *cobra.Command, withVisibility bool) {
	f := cmd.Flags()
	f.StringVar(&a.name, "name", "", "human-readable name of the key")
	f.StringSliceVar(&a.scopes, "scopes", nil, "comma-separated scopes")
	f.StringVar(&a.metadata, "metadata", "", `metadata as a JSON object, e.g. '{"team":"billing"}'`)
	f.Int64Var(&a.quota, "rate-limit-quota", 0, "requests allowed per window (0: no rate limit)")
	f.StringVar(&a.window, "rate-limit-window", defaultWindow, "rate-limit window (Go duration, or d, w, mo, y units)")
	f.StringSliceVar(&a.cidrs, "allowed-cidrs", nil, "comma-separated CIDRs the key may be used from (empty: anywhere)")
	if withVisibility {
		f.StringVar(&a.visibility, "visibility", "", "secret or public (default: secret)")
	}
	a.flags = f
}

func (a *keyAttrFlags) changed(name string) bool { return a.flags.Changed(name) }

// resolveName takes the name from the optional first argument or --name, not
// both.
func (a *keyAttrFlags) resolveName(args []string) error {
	if len(args) == 0 {
		return nil
	}
	if a.changed("name") && a.name != args[0] {
		return errors.New("the name is given both as an argument and with --name")
	}
	a.name = args[0]
	return nil
}

func (a *keyAttrFlags) metadataPB() (*structpb.Struct, error) {
	return parseMetadata(a.metadata)
}

// ratePolicy is the policy the flags describe; nil when the quota is 0.
func (a *keyAttrFlags) ratePolicy() (*pb.RateLimitPolicy, error) {
	if a.quota < 0 {
		return nil, errors.New("--rate-limit-quota must not be negative")
	}
	if a.quota == 0 {
		if a.changed("rate-limit-window") {
			return nil, errors.New("--rate-limit-window needs --rate-limit-quota greater than 0")
		}
		return nil, nil
	}
	if err := checkDuration("--rate-limit-window", a.window); err != nil {
		return nil, err
	}
	if a.window == "" {
		return nil, errors.New("--rate-limit-window must not be empty with a quota")
	}
	return &pb.RateLimitPolicy{Quota: a.quota, Window: a.window}, nil
}

func (a *keyAttrFlags) ipRestriction() *pb.IPRestriction {
	var cidrs []string
	for _, c := range a.cidrs {
		if c = strings.TrimSpace(c); c != "" {
			cidrs = append(cidrs, c)
		}
	}
	if len(cidrs) == 0 {
		return nil
	}
	return &pb.IPRestriction{AllowedCidrs: cidrs}
}

func (a *keyAttrFlags) visibilityPB() (pb.KeyVisibility, error) {
	return parseEnum[pb.KeyVisibility]("--visibility", a.visibility, "KEY_VISIBILITY_", pb.KeyVisibility_value, "secret, public")
}

// keyAttrs are the parsed attribute flags.
type keyAttrs struct {
	metadata   *structpb.Struct
	rate       *pb.RateLimitPolicy
	ip         *pb.IPRestriction
	visibility pb.KeyVisibility
}

// parse reads the flags of a create (issue, import).
func (a *keyAttrFlags) parse() (keyAttrs, error) {
	var out keyAttrs
	var err error
	if out.metadata, err = a.metadataPB(); err != nil {
		return out, err
	}
	if out.rate, err = a.ratePolicy(); err != nil {
		return out, err
	}
	out.ip = a.ipRestriction()
	if out.visibility, err = a.visibilityPB(); err != nil {
		return out, err
	}
	return out, nil
}

// update reads the flags of an update: the mask names exactly the attributes
// whose flags were given.
func (a *keyAttrFlags) update() (*fieldmaskpb.FieldMask, keyAttrs, error) {
	attrs, err := a.parse()
	if err != nil {
		return nil, attrs, err
	}
	mask := &fieldmaskpb.FieldMask{}
	for _, m := range []struct{ flag, path string }{
		{"name", "name"},
		{"scopes", "scopes"},
		{"metadata", "metadata"},
		{"rate-limit-quota", "rate_limit_policy"},
		{"allowed-cidrs", "ip_restriction"},
	} {
		if a.changed(m.flag) {
			mask.Paths = append(mask.Paths, m.path)
		}
	}
	if a.changed("rate-limit-window") && !a.changed("rate-limit-quota") {
		return nil, attrs, errors.New("the rate limit is replaced as a whole: give --rate-limit-quota with --rate-limit-window")
	}
	if len(mask.Paths) == 0 {
		return nil, attrs, errors.New("nothing to update: give at least one of --name, --scopes, --metadata, --rate-limit-quota, --allowed-cidrs")
	}
	if a.changed("name") && strings.TrimSpace(a.name) == "" {
		return nil, attrs, errors.New("--name must not be empty")
	}
	return mask, attrs, nil
}

// rotate reads the flags of a rotation. Absent attributes are inherited from
// the old key, and the wire cannot tell an empty list from an absent one, so
// an attribute cannot be cleared here: that is what update is for.
func (a *keyAttrFlags) rotate() (*pb.AdminRotateIssuedApiKeyRequest, error) {
	attrs, err := a.parse()
	if err != nil {
		return nil, err
	}
	req := &pb.AdminRotateIssuedApiKeyRequest{
		Metadata: attrs.metadata, RateLimitPolicy: attrs.rate, IpRestriction: attrs.ip,
		Visibility: attrs.visibility, Scopes: cleanScopes(a.scopes),
	}
	if a.changed("name") {
		req.Name = &a.name
	}
	for _, c := range []struct {
		flag  string
		empty bool
	}{
		{"scopes", len(req.Scopes) == 0},
		{"metadata", req.Metadata == nil},
		{"rate-limit-quota", req.RateLimitPolicy == nil},
		{"allowed-cidrs", req.IpRestriction == nil},
	} {
		if a.changed(c.flag) && c.empty {
			return nil, fmt.Errorf("rotate cannot clear --%s (the new key would inherit it): rotate, then update", c.flag)
		}
	}
	return req, nil
}

func cleanScopes(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseMetadata parses a JSON object; the empty string is no metadata.
func parseMetadata(s string) (*structpb.Struct, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var st structpb.Struct
	if err := protojson.Unmarshal([]byte(s), &st); err != nil {
		return nil, fmt.Errorf("--metadata must be a JSON object: %w", err)
	}
	return &st, nil
}

// checkDuration rejects what the server would reject, before a round trip.
func checkDuration(flag, s string) error {
	if _, err := apiconv.ParseDuration(s); err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	return nil
}

// parseEnum maps a short, case-insensitive name ("key_compromise") or the full
// enum name ("REVOCATION_REASON_KEY_COMPROMISE") to its value. The empty
// string is the UNSPECIFIED value, left for the server to default.
func parseEnum[E ~int32](flag, s, prefix string, values map[string]int32, allowed string) (E, error) {
	if s == "" {
		return 0, nil
	}
	name := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	if !strings.HasPrefix(name, prefix) {
		name = prefix + name
	}
	v, ok := values[name]
	if !ok || v == 0 {
		return 0, fmt.Errorf("invalid %s %q: want one of %s", flag, s, allowed)
	}
	return E(v), nil
}

func parseReason(s string) (pb.RevocationReason, error) {
	return parseEnum[pb.RevocationReason]("--reason", s, "REVOCATION_REASON_", pb.RevocationReason_value,
		"key_compromise, affiliation_changed, superseded, privilege_withdrawn")
}

const reasonUsage = "revocation reason: key_compromise, affiliation_changed, superseded or privilege_withdrawn"

func parseStatus(s string) (pb.KeyStatus, error) {
	return parseEnum[pb.KeyStatus]("--status", s, "KEY_STATUS_", pb.KeyStatus_value, "active, revoked, expired")
}

// listFilter builds the AIP-160 filter the list endpoints accept:
// actor_id="..." AND status=KEY_STATUS_*.
func listFilter(actor string, status pb.KeyStatus) string {
	var clauses []string
	if actor != "" {
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
		clauses = append(clauses, `actor_id="`+r.Replace(actor)+`"`)
	}
	if status != pb.KeyStatus_KEY_STATUS_UNSPECIFIED {
		clauses = append(clauses, "status="+status.String())
	}
	return strings.Join(clauses, " AND ")
}

// checkKeyID accepts the key IDs Talos hands out (UUIDs, 64 hex characters,
// ULIDs) and nothing else. Key IDs go into URL paths, so this stops path
// tricks ("../", ":revoke"), and a credential pasted by mistake is refused
// rather than written to access logs. The value is not echoed for the same
// reason.
func checkKeyID(id string) error {
	if id == "" || len(id) > 128 {
		return errors.New("invalid KEY_ID: want a key ID such as a UUID (issued) or 64 hex characters (imported)")
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return errors.New("invalid KEY_ID: want a key ID such as a UUID (issued) or 64 hex characters (imported); to act on a credential use verify or self-revoke")
		}
	}
	return nil
}

// maxCredentialBytes is the largest credential the API accepts.
const maxCredentialBytes = credential.MaxCredentialBytes

// credentialArgs returns the credentials given as arguments; "-" reads them
// from in, one per line, so they stay out of shell history and process
// listings.
func credentialArgs(args []string, in io.Reader) ([]string, error) {
	var out []string
	for _, a := range args {
		if a != "-" {
			out = append(out, a)
			continue
		}
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 4096), maxCredentialBytes+2)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				out = append(out, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read credentials from stdin: %w", err)
		}
	}
	for i, c := range out {
		if c == "" {
			return nil, fmt.Errorf("credential %d is empty", i+1)
		}
	}
	return out, nil
}

// oneCredential is the one credential of a command's arguments ("-": from
// in).
func oneCredential(args []string, in io.Reader) (string, error) {
	creds, err := credentialArgs(args, in)
	if err != nil {
		return "", err
	}
	if len(creds) != 1 {
		return "", errors.New("want exactly one credential")
	}
	return creds[0], nil
}
