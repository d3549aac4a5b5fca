package controlplane_test

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/talos-project/talos/controlplane"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// TestGRPC_ErrorsDoNotEchoInput: a gRPC error carries nothing of the request
// in its message or ErrorInfo metadata, as on HTTP. Before, the gRPC
// listener returned validation messages with the input quoted (a filter
// clause, a scope) and a key_id metadata holding whatever the caller sent as
// the ID, a credential pasted into the wrong field among them; the HTTP
// gateway cut both, the gRPC listener did not.
func TestGRPC_ErrorsDoNotEchoInput(t *testing.T) {
	t.Parallel()
	d := deps(t)
	conn := start(t, controlplane.Config{}, d)
	c := pb.NewApiKeysClient(conn)
	const marker = "MARKER-talos_v2_pasted0123456789"
	issued, err := c.AdminIssueApiKey(t.Context(), &pb.IssueApiKeyRequest{Name: "n", ActorId: "a", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"list with a bad filter": func() error {
			_, err := c.AdminListIssuedApiKeys(t.Context(), &pb.ListIssuedApiKeysRequest{Filter: marker})
			return err
		},
		"get by a malformed key ID": func() error {
			_, err := c.AdminGetIssuedApiKey(t.Context(), &pb.AdminGetIssuedApiKeyRequest{KeyId: marker})
			return err
		},
		"revoke by a malformed key ID": func() error {
			_, err := c.AdminRevokeIssuedApiKey(t.Context(), &pb.AdminRevokeIssuedApiKeyRequest{KeyId: marker})
			return err
		},
		"derive with a scope not granted": func() error {
			_, err := c.AdminDeriveToken(t.Context(), &pb.DeriveTokenRequest{Credential: issued.GetSecret(), Scopes: []string{marker}})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		st := status.Convert(err)
		if strings.Contains(st.Message(), "MARKER") {
			t.Errorf("%s: %s: the message echoes the input: %q", name, st.Code(), st.Message())
		}
		for _, det := range st.Details() {
			if info, ok := det.(*errdetails.ErrorInfo); ok {
				for k, v := range info.GetMetadata() {
					if strings.Contains(v, "MARKER") {
						t.Errorf("%s: %s: metadata %s echoes the input: %q", name, st.Code(), k, v)
					}
				}
			}
		}
	}
	// A well-formed key ID is still named (Ory Talos does).
	const id = "00000000-0000-4000-8000-000000000000"
	_, err = c.AdminGetIssuedApiKey(t.Context(), &pb.AdminGetIssuedApiKeyRequest{KeyId: id})
	named := false
	for _, det := range status.Convert(err).Details() {
		if info, ok := det.(*errdetails.ErrorInfo); ok && info.GetMetadata()["key_id"] == id {
			named = true
		}
	}
	if !named {
		t.Errorf("get of an unknown well-formed key ID = %v, want key_id named", err)
	}
}
