package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// errNotImported reports that batch-import imported only some of the keys.
var errNotImported = errors.New("not imported")

// maxBatchFileBytes bounds a batch-import file: 1000 keys with the largest
// metadata the server accepts fit.
const maxBatchFileBytes = 128 << 20

func newKeysImportCmd(e *env, o *keysOptions) *cobra.Command {
	var a keyAttrFlags
	var rawKey, actor, ttl, requestID string
	cmd := &cobra.Command{
		Use:   "import [name]",
		Short: "Import an existing API key (stored hashed)",
		Long: `Import an existing API key, e.g. one minted by another system, so that Talos
verifies it. Talos stores only a hash of it. Give --raw-key - to read the key
from stdin rather than the command line.`,
		Example: `  printf '%s\n' "$LEGACY_KEY" | talos keys import legacy --raw-key - --actor alice --scopes read`,
		Args:    cobra.MaximumNArgs(1),
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
			keys, err := credentialArgs([]string{rawKey}, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if len(keys) != 1 {
				return errors.New("--raw-key: want exactly one key")
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			req := &pb.ImportApiKeyRequest{
				RawKey: keys[0], Name: a.name, ActorId: actor, Scopes: cleanScopes(a.scopes), Ttl: ttl,
				Metadata: attrs.metadata, RateLimitPolicy: attrs.rate, IpRestriction: attrs.ip,
				Visibility: attrs.visibility, RequestId: requestID,
			}
			var k pb.ImportedApiKey
			if err := c.call(cmd.Context(), http.MethodPost, pathImported, nil, req, &k); err != nil {
				return err
			}
			return p.print(&k, func(w io.Writer) { keyTable(w, &k) })
		},
	}
	a.register(cmd, true)
	fl := cmd.Flags()
	fl.StringVar(&rawKey, "raw-key", "", `the key to import, or "-" to read it from stdin (required)`)
	fl.StringVar(&actor, "actor", "", "ID of the actor (user, service) that owns the key (required)")
	fl.StringVar(&ttl, "ttl", "", "lifetime, e.g. 24h, 90d, 1y (default: the server's default_ttl)")
	fl.StringVar(&requestID, "request-id", "", "idempotency key (at most 36 characters)")
	_ = cmd.MarkFlagRequired("raw-key")
	_ = cmd.MarkFlagRequired("actor")
	return cmd
}

func newKeysBatchImportCmd(e *env, o *keysOptions) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "batch-import",
		Short: "Import up to 1000 keys from a JSON file",
		Long: `Import up to 1000 keys in one request. The file (or stdin, with --file -)
holds a JSON array of import requests, with the fields of the import API:

  [{"raw_key": "sk_live_...", "name": "legacy", "actor_id": "alice", "scopes": ["read"]}]

({"requests": [...]}, the request body itself, is accepted too.) Each key
succeeds or fails on its own; the command fails if any key was not imported.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in io.Reader = cmd.InOrStdin()
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			req, err := readBatchImport(in, file)
			if err != nil {
				return err
			}
			c, p, err := o.open(cmd, e)
			if err != nil {
				return err
			}
			var resp pb.BatchCreateImportedApiKeysResponse
			if err := c.call(cmd.Context(), http.MethodPost, pathBatchImport, nil, req, &resp); err != nil {
				return err
			}
			err = p.print(&resp, func(w io.Writer) { batchImportTable(w, req, &resp) })
			if err == nil && resp.GetFailureCount() > 0 {
				err = withExit(exitNegative, fmt.Errorf("talos: %d of %d keys were %w", resp.GetFailureCount(), len(req.GetRequests()), errNotImported))
			}
			return err
		},
	}
	cmd.Flags().StringVar(&file, "file", "", `JSON file of import requests, or "-" for stdin (required)`)
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// readBatchImport parses a batch-import file. Parse errors name the item but
// never quote a raw key.
func readBatchImport(r io.Reader, name string) (*pb.BatchCreateImportedApiKeysRequest, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxBatchFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxBatchFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxBatchFileBytes)
	}
	data = bytes.TrimSpace(data)
	var items []json.RawMessage
	if len(data) > 0 && data[0] == '{' {
		var wrapped struct {
			Requests []json.RawMessage `json:"requests"`
		}
		err = json.Unmarshal(data, &wrapped)
		items = wrapped.Requests
	} else {
		err = json.Unmarshal(data, &items)
	}
	if err != nil {
		// encoding/json errors quote at most one character of the input.
		return nil, fmt.Errorf("%s: want a JSON array of import requests: %w", name, err)
	}
	switch {
	case len(items) == 0:
		return nil, fmt.Errorf("%s: no import requests", name)
	case len(items) > maxBatchImport:
		return nil, fmt.Errorf("%s: %d import requests, at most %d per batch", name, len(items), maxBatchImport)
	}
	req := &pb.BatchCreateImportedApiKeysRequest{Requests: make([]*pb.ImportApiKeyRequest, len(items))}
	for i, item := range items {
		if err := checkRawKeyType(item); err != nil {
			return nil, fmt.Errorf("%s: item %d: %w", name, i, err)
		}
		r := &pb.ImportApiKeyRequest{}
		if err := protojson.Unmarshal(item, r); err != nil {
			return nil, fmt.Errorf("%s: item %d: %w", name, i, err)
		}
		req.Requests[i] = r
	}
	return req, nil
}

// checkRawKeyType rejects a raw key that is not a JSON string before
// protojson sees it: protojson's error would quote the value.
func checkRawKeyType(item json.RawMessage) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(item, &fields); err != nil {
		return errors.New("want a JSON object")
	}
	for _, k := range []string{"raw_key", "rawKey"} {
		if v, ok := fields[k]; ok && (len(v) == 0 || v[0] != '"') {
			return fmt.Errorf("%s must be a string", k)
		}
	}
	return nil
}

func batchImportTable(w io.Writer, req *pb.BatchCreateImportedApiKeysRequest, resp *pb.BatchCreateImportedApiKeysResponse) {
	fmt.Fprintln(w, "#\tRESULT\tID\tNAME\tACTOR\tERROR")
	for _, r := range resp.GetResults() {
		k := r.GetImportedApiKey()
		if k != nil {
			fmt.Fprintf(w, "%d\timported\t%s\t%s\t%s\t-\n", r.GetIndex(), cell(k.GetKeyId()), cell(k.GetName()), cell(k.GetActorId()))
			continue
		}
		// Name the failed item from the request: the result carries no key.
		var in *pb.ImportApiKeyRequest
		if i := int(r.GetIndex()); i >= 0 && i < len(req.GetRequests()) {
			in = req.GetRequests()[i]
		}
		msg := enumName(r.GetErrorCode().String(), "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_")
		if m := r.GetErrorMessage(); m != "" {
			msg += ": " + cell(m)
		}
		fmt.Fprintf(w, "%d\tfailed\t-\t%s\t%s\t%s\n", r.GetIndex(), cell(in.GetName()), cell(in.GetActorId()), msg)
	}
	fmt.Fprintf(w, "\n%s imported, %s failed.\n", strconv.Itoa(int(resp.GetSuccessCount())), strconv.Itoa(int(resp.GetFailureCount())))
}
