package invalidation

import (
	"strings"
	"testing"
	"unicode/utf8"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
)

// checkDecoded asserts what decode promises of an accepted response, and that
// a refused one yields nothing at all.
func checkDecoded(t *testing.T, resp *discoveryv3.DeltaDiscoveryResponse) {
	t.Helper()
	out, maxSeq, forgotten, err := decode(resp)
	if err != nil {
		if out != nil || maxSeq != 0 || forgotten != 0 {
			t.Fatalf("a refused response still yielded %v, %d, %d", out, maxSeq, forgotten)
		}
		return
	}
	if resp.GetTypeUrl() != TypeURL {
		t.Fatalf("accepted type %q", resp.GetTypeUrl())
	}
	var (
		keys      []*discoveryv3.Resource
		values    []*sidecarv1.Invalidation
		wantMax   int64
		heartbeat bool
	)
	for _, r := range resp.GetResources() {
		var inv sidecarv1.Invalidation
		if err := r.GetResource().UnmarshalTo(&inv); err != nil {
			t.Fatalf("accepted a resource that is not an Invalidation: %v", err)
		}
		wantMax = max(wantMax, inv.GetSeq())
		if r.GetName() == HeartbeatName {
			heartbeat = true
			continue
		}
		keys, values = append(keys, r), append(values, &inv)
	}
	if maxSeq != wantMax {
		t.Fatalf("maxSeq = %d, want %d", maxSeq, wantMax)
	}
	if forgotten < 0 || forgotten > maxSeq || (!heartbeat && forgotten != 0) {
		t.Fatalf("forgotten = %d outside [0, %d] (heartbeat %v)", forgotten, maxSeq, heartbeat)
	}
	if len(out) != len(keys) {
		t.Fatalf("%d invalidations from %d key resources", len(out), len(keys))
	}
	for i, o := range out {
		v := values[i]
		switch {
		case o.tenant == "" || o.keyID == "" || strings.Contains(string(o.tenant), "/"):
			t.Fatalf("invalidation %d names no key: %+v", i, o)
		case o.name != keys[i].GetName() || o.name != sidecarv1.InvalidationName(string(o.tenant), string(o.keyID)):
			t.Fatalf("invalidation %d: name %q is not its tenant/key %q/%q", i, o.name, o.tenant, o.keyID)
		case string(o.tenant) != v.GetTenant() || string(o.keyID) != v.GetKeyId() || o.seq != v.GetSeq() || o.version != keys[i].GetVersion():
			t.Fatalf("invalidation %d = %+v, not its resource %v", i, o, v)
		case o.seq < 0 || o.seq > maxSeq:
			t.Fatalf("invalidation %d has seq %d outside [0, %d]", i, o.seq, maxSeq)
		}
	}
}

func resource(t testing.TB, name, version string, inv *sidecarv1.Invalidation) *discoveryv3.Resource {
	a, err := anypb.New(inv)
	if err != nil {
		t.Fatal(err)
	}
	return &discoveryv3.Resource{Name: name, Version: version, Resource: a}
}

// FuzzDecodeWire feeds arbitrary DeltaDiscoveryResponse messages (protobuf
// wire bytes) to decode.
func FuzzDecodeWire(f *testing.F) {
	for _, resp := range []*discoveryv3.DeltaDiscoveryResponse{
		{TypeUrl: TypeURL, Resources: []*discoveryv3.Resource{
			resource(f, "t1/k1", "7", &sidecarv1.Invalidation{Tenant: "t1", KeyId: "k1", Seq: 7}),
			resource(f, HeartbeatName, "9", &sidecarv1.Invalidation{Seq: 9, Forgotten: 2}),
		}},
		{TypeUrl: TypeURL, Resources: []*discoveryv3.Resource{
			resource(f, "t1/k/with/slashes", "1", &sidecarv1.Invalidation{Tenant: "t1", KeyId: "k/with/slashes", Seq: 1}),
		}},
		{TypeUrl: TypeURL, Resources: []*discoveryv3.Resource{
			resource(f, "t2/k1", "1", &sidecarv1.Invalidation{Tenant: "t1", KeyId: "k1", Seq: 1}),
		}},
		{TypeUrl: "type.googleapis.com/other"},
	} {
		b, err := proto.Marshal(resp)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp discoveryv3.DeltaDiscoveryResponse
		if proto.Unmarshal(b, &resp) != nil {
			return
		}
		checkDecoded(t, &resp)
	})
}

// FuzzDecodeResources builds responses of two resources from fuzzed names
// and values, reaching what random wire bytes rarely do; and a resource the
// control plane would send (named InvalidationName of its value) is always
// read back as it was sent.
func FuzzDecodeResources(f *testing.F) {
	f.Add("t1/k1", "t1", "k1", int64(3), int64(0), HeartbeatName, "", "", int64(5), int64(1))
	f.Add("t1/k1", "t1", "k2", int64(3), int64(0), "t/x", "t", "x", int64(-1), int64(0))
	f.Add(HeartbeatName, "", "", int64(3), int64(4), "/k", "", "k", int64(1), int64(0))
	f.Fuzz(func(t *testing.T, name1, tenant1, key1 string, seq1, forgot1 int64, name2, tenant2, key2 string, seq2, forgot2 int64) {
		for _, s := range []string{name1, tenant1, key1, name2, tenant2, key2} {
			if !utf8.ValidString(s) {
				return // protobuf strings are UTF-8 on the wire
			}
		}
		resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: TypeURL, Resources: []*discoveryv3.Resource{
			resource(t, name1, "v1", &sidecarv1.Invalidation{Tenant: tenant1, KeyId: key1, Seq: seq1, Forgotten: forgot1}),
			resource(t, name2, "v2", &sidecarv1.Invalidation{Tenant: tenant2, KeyId: key2, Seq: seq2, Forgotten: forgot2}),
		}}
		checkDecoded(t, resp)

		// As the control plane sends it.
		if tenant1 == "" || key1 == "" || strings.Contains(tenant1, "/") || seq1 < 0 {
			return
		}
		sent := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: TypeURL, Resources: []*discoveryv3.Resource{
			resource(t, sidecarv1.InvalidationName(tenant1, key1), "v", &sidecarv1.Invalidation{Tenant: tenant1, KeyId: key1, Seq: seq1}),
		}}
		out, maxSeq, _, err := decode(sent)
		if err != nil || len(out) != 1 || string(out[0].tenant) != tenant1 || string(out[0].keyID) != key1 || out[0].seq != seq1 || maxSeq != seq1 {
			t.Fatalf("a well-formed invalidation of %q/%q at %d was read as %+v, %d, %v", tenant1, key1, seq1, out, maxSeq, err)
		}
	})
}
