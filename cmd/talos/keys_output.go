package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/yaml"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// secretWarning goes with every freshly issued secret.
const secretWarning = "Store this secret now: it is shown only once and cannot be retrieved again."

// Output formats of --format (Ory's CLI names).
const (
	formatTable      = "table"
	formatJSON       = "json"
	formatJSONPretty = "json-pretty"
	formatYAML       = "yaml"
	formatJSONPath   = "jsonpath"
	formatQuiet      = "quiet" // -q: IDs only
)

// keysPrinter writes command results as a table (for people), or for
// scripts as the protojson of the response, its YAML, a JSONPath
// expression over it, or only the IDs (--quiet).
type keysPrinter struct {
	format string
	// json is true for every format but the table: the output is for a
	// program, so notes go to stderr.
	json     bool
	jsonPath *jsonpath.JSONPath
	stdout   io.Writer
	stderr   io.Writer
}

// newKeysPrinter parses --format (table, json, json-pretty, yaml,
// jsonpath=EXPR) and --quiet.
func newKeysPrinter(format string, quiet bool, stdout, stderr io.Writer) (keysPrinter, error) {
	p := keysPrinter{stdout: stdout, stderr: stderr}
	name, expr, hasExpr := strings.Cut(format, "=")
	switch name {
	case "", formatTable:
		p.format = formatTable
	case formatJSON, formatJSONPretty, formatYAML:
		p.format = name
	case formatJSONPath:
		if !hasExpr || strings.TrimSpace(expr) == "" {
			return p, errors.New(`invalid --format: jsonpath needs an expression, e.g. --format 'jsonpath={.issued_api_key.key_id}'`)
		}
		if !strings.Contains(expr, "{") {
			expr = "{" + expr + "}"
		}
		p.jsonPath = jsonpath.New("format")
		if err := p.jsonPath.Parse(expr); err != nil {
			return p, fmt.Errorf("invalid --format jsonpath: %w", err)
		}
		p.format = formatJSONPath
	default:
		return p, fmt.Errorf("invalid --format %q: want table, json, json-pretty, yaml or jsonpath=EXPR", format)
	}
	if hasExpr && name != formatJSONPath {
		return p, fmt.Errorf("invalid --format %q: only jsonpath takes an expression", format)
	}
	if quiet {
		if p.format != formatTable {
			return p, errors.New("--quiet and --format are exclusive: --quiet prints only IDs")
		}
		p.format = formatQuiet
	}
	p.json = p.format != formatTable
	return p, nil
}

var marshalOutput = protojson.MarshalOptions{UseProtoNames: true, Multiline: true, Indent: "  "}

// print writes m in the printer's format; the table format calls table
// with a tabwriter on stdout.
func (p keysPrinter) print(m proto.Message, table func(w io.Writer)) error {
	switch p.format {
	case formatTable:
		tw := tabwriter.NewWriter(p.stdout, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	case formatQuiet:
		for _, line := range quietLines(m.ProtoReflect()) {
			if _, err := fmt.Fprintln(p.stdout, line); err != nil {
				return err
			}
		}
		return nil
	}
	b, err := marshalOutput.Marshal(m)
	if err != nil {
		return err
	}
	switch p.format {
	case formatYAML:
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = p.stdout.Write(b)
		return err
	case formatJSONPath:
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		if err := p.jsonPath.Execute(p.stdout, v); err != nil {
			return withExit(exitUsage, fmt.Errorf("--format jsonpath: %w", err))
		}
		_, err = fmt.Fprintln(p.stdout)
		return err
	}
	_, err = fmt.Fprintf(p.stdout, "%s\n", b)
	return err
}

// quietLines are what --quiet prints of a response: the key ID of each key
// in it (the new key of a rotation, not the old one; "-" for a verdict
// without a key), then the new secret or derived token if there is one,
// one per line.
func quietLines(m protoreflect.Message) []string {
	fields := m.Descriptor().Fields()
	if f := fields.ByName("key_id"); f != nil && f.Kind() == protoreflect.StringKind {
		id := m.Get(f).String()
		if id == "" {
			id = "-"
		}
		return []string{id}
	}
	var out []string
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Kind() != protoreflect.MessageKind || f.IsMap() || strings.HasPrefix(string(f.Name()), "old_") || !m.Has(f) {
			continue
		}
		if f.IsList() {
			l := m.Get(f).List()
			for j := 0; j < l.Len(); j++ {
				out = append(out, quietLines(l.Get(j).Message())...)
			}
			continue
		}
		out = append(out, quietLines(m.Get(f).Message())...)
	}
	for _, name := range []protoreflect.Name{"secret", "token"} {
		if f := fields.ByName(name); f != nil && f.Kind() == protoreflect.StringKind && m.Get(f).String() != "" {
			out = append(out, m.Get(f).String())
		}
	}
	return out
}

// printSecret ends a table with a new secret and its warning.
func printSecret(w io.Writer, secret string) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, secretWarning)
	fmt.Fprintln(w, secret)
}

// warnSecret writes the warning of a new secret to stderr in JSON mode, so
// that stdout stays parseable. (Tables carry it themselves.)
func (p keysPrinter) warnSecret() {
	if p.json {
		fmt.Fprintln(p.stderr, secretWarning)
	}
}

// keyView is what the tables show of an issued or imported key; both have the
// same fields.
type keyView interface {
	GetKeyId() string
	GetName() string
	GetActorId() string
	GetScopes() []string
	GetMetadata() *structpb.Struct
	GetStatus() pb.KeyStatus
	GetVisibility() pb.KeyVisibility
	GetRateLimitPolicy() *pb.RateLimitPolicy
	GetIpRestriction() *pb.IPRestriction
	GetRevocationReason() pb.RevocationReason
	GetRevocationDescription() string
	GetCreateTime() *timestamppb.Timestamp
	GetUpdateTime() *timestamppb.Timestamp
	GetExpireTime() *timestamppb.Timestamp
	GetLastUsedTime() *timestamppb.Timestamp
}

var (
	_ keyView = (*pb.IssuedApiKey)(nil)
	_ keyView = (*pb.ImportedApiKey)(nil)
)

const keyHeader = "ID\tNAME\tACTOR\tSTATUS\tSCOPES\tEXPIRES"

func keyRow(w io.Writer, k keyView) {
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", cell(k.GetKeyId()), cell(k.GetName()), cell(k.GetActorId()),
		enumName(k.GetStatus().String(), "KEY_STATUS_"), joinCells(k.GetScopes()), expires(k.GetExpireTime()))
}

func keyTable[K keyView](w io.Writer, keys ...K) {
	fmt.Fprintln(w, keyHeader)
	for _, k := range keys {
		keyRow(w, k)
	}
}

// keyDetail is the vertical view of one key (get).
func keyDetail(w io.Writer, k keyView) {
	field := func(name, value string) { fmt.Fprintf(w, "%s\t%s\n", name, value) }
	field("ID", cell(k.GetKeyId()))
	field("NAME", cell(k.GetName()))
	field("ACTOR", cell(k.GetActorId()))
	field("STATUS", enumName(k.GetStatus().String(), "KEY_STATUS_"))
	field("VISIBILITY", enumName(k.GetVisibility().String(), "KEY_VISIBILITY_"))
	field("SCOPES", joinCells(k.GetScopes()))
	field("METADATA", metadataCell(k.GetMetadata()))
	field("RATE LIMIT", rateCell(k.GetRateLimitPolicy()))
	field("ALLOWED CIDRS", joinCells(k.GetIpRestriction().GetAllowedCidrs()))
	field("CREATED", timeCell(k.GetCreateTime()))
	field("UPDATED", timeCell(k.GetUpdateTime()))
	field("EXPIRES", expires(k.GetExpireTime()))
	field("LAST USED", timeCell(k.GetLastUsedTime()))
	if r := k.GetRevocationReason(); r != pb.RevocationReason_REVOCATION_REASON_UNSPECIFIED {
		field("REVOCATION REASON", enumName(r.String(), "REVOCATION_REASON_"))
	}
	if d := k.GetRevocationDescription(); d != "" {
		field("REVOCATION DESCRIPTION", cell(d))
	}
}

// verdictDetail is the vertical view of one verification result.
func verdictDetail(w io.Writer, r *pb.VerifyApiKeyResponse) {
	field := func(name, value string) { fmt.Fprintf(w, "%s\t%s\n", name, value) }
	field("VALID", strconv.FormatBool(r.GetIsValid()))
	if !r.GetIsValid() {
		field("ERROR", verdictError(r))
	}
	if r.GetKeyId() == "" {
		return
	}
	field("KEY ID", cell(r.GetKeyId()))
	field("ACTOR", cell(r.GetActorId()))
	field("STATUS", enumName(r.GetStatus().String(), "KEY_STATUS_"))
	field("SCOPES", joinCells(r.GetScopes()))
	field("METADATA", metadataCell(r.GetMetadata()))
	field("EXPIRES", expires(r.GetExpireTime()))
	if len(r.GetAudiences()) > 0 {
		field("AUDIENCES", joinCells(r.GetAudiences()))
	}
	if rp := r.GetRateLimitPolicy(); rp != nil {
		field("RATE LIMIT", rateCell(rp))
	}
	if r.RateLimitRemaining != nil {
		field("RATE LIMIT REMAINING", strconv.FormatInt(r.GetRateLimitRemaining(), 10))
	}
}

func verdictError(r *pb.VerifyApiKeyResponse) string {
	code := enumName(r.GetErrorCode().String(), "VERIFICATION_ERROR_")
	if m := r.GetErrorMessage(); m != "" {
		return code + ": " + cell(m)
	}
	return code
}

// enumName shows KEY_STATUS_ACTIVE as "active".
func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

func expires(t *timestamppb.Timestamp) string {
	if t == nil {
		return "never"
	}
	return timeCell(t)
}

func timeCell(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

func rateCell(rp *pb.RateLimitPolicy) string {
	if rp == nil {
		return "-"
	}
	unit := rp.GetUnit()
	if unit == "" {
		unit = "requests"
	}
	return fmt.Sprintf("%d %s per %s", rp.GetQuota(), cell(unit), cell(rp.GetWindow()))
}

func metadataCell(st *structpb.Struct) string {
	if st == nil || len(st.GetFields()) == 0 {
		return "-"
	}
	b, err := protojson.MarshalOptions{}.Marshal(st)
	if err != nil {
		return "?"
	}
	// protojson may add random spaces; a table has no use for them.
	return cell(strings.Join(strings.Fields(string(b)), " "))
}

func joinCells(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = cell(s)
	}
	return strings.Join(out, ",")
}

// cell makes a user-supplied string safe for one table cell: names, actors
// and metadata come from API callers, so a tab, a newline or a terminal
// escape sequence in them must not reshape the table or drive the terminal.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return sanitizeLine(s)
}

// sanitizeLine quotes s when it holds anything that is not printable on one
// line.
func sanitizeLine(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
