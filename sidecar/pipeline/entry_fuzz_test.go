package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

// entryCmp compares entries as the shared cache keeps them: errors by kind,
// reason and message; metadata as JSON values (the encoder compacts it and
// escapes HTML characters); nil and empty alike.
var entryCmp = []cmp.Option{
	cmp.Comparer(func(a, b json.RawMessage) bool {
		if len(a) == 0 || len(b) == 0 {
			return len(a) == len(b)
		}
		var x, y any
		if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
			return bytes.Equal(a, b)
		}
		return cmp.Equal(x, y)
	}),
	cmpopts.IgnoreUnexported(Entry{}),
	cmpopts.IgnoreTypes(extauthz.Memo{}),
	cmp.FilterPath(func(p cmp.Path) bool { return p.Last().Type() != reflect.TypeFor[json.RawMessage]() }, cmpopts.EquateEmpty()),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b error) bool {
		var x, y *credential.Error
		if !errors.As(a, &x) || !errors.As(b, &y) {
			return a == nil && b == nil
		}
		return x.Kind == y.Kind && x.Reason == y.Reason && x.Message == y.Message
	}),
}

func sampleEntries() []*Entry {
	now := time.UnixMilli(1_800_000_000_000)
	full := &Entry{
		Result: credential.Result{
			Type: credential.TypeIssued, Tenant: credential.DefaultTenant, KeyID: "k1", ActorID: "a", Scopes: []string{"read", "write"},
			Metadata: json.RawMessage(`{"plan":"pro"}`), Status: credential.StateActive, Visibility: 1,
			ExpireTime: now.Add(time.Hour), RatePolicy: &credential.RatePolicy{Quota: 10, Window: time.Minute, Unit: "request"},
			AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:10.0.0.0/104")},
			Audiences:    []string{"svc"}, Issuer: "http://cp", Conditions: map[string]string{"path": "/read"},
		},
		Fresh: now.Add(time.Minute), Keep: now.Add(5 * time.Minute), Tag: 42,
	}
	denied := &Entry{
		Result: credential.Result{Type: credential.TypeImported, KeyID: "k2"},
		Err:    &credential.Error{Kind: credential.ErrRevoked, Reason: "API_KEY_REVOKED", Message: "The API key was revoked."},
		Fresh:  now.Add(time.Minute), Keep: now.Add(time.Minute),
	}
	return []*Entry{full, denied, {Fresh: now, Keep: now}}
}

// FuzzDecodeEntry feeds arbitrary bytes to the shared-cache entry decoder
// (what an authentic but odd entry, from another version of the sidecar,
// may hold). Whatever it accepts is a verdict (valid, or a denial of a known
// kind; never an outage), can be encoded again, and decodes to itself.
func FuzzDecodeEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		b, err := encodeEntry(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"f":1,"x":"unavailable"}`))
	f.Add([]byte(`{"f":1,"x":"__proto__"}`))
	f.Add([]byte(`{"f":1,"c":["10.0.0.1/40"]}`))
	f.Add([]byte(`{"f":1,"m":"not an object"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, ok := decodeEntry(b)
		if !ok {
			return
		}
		if e.Fresh.IsZero() {
			t.Fatal("accepted an entry without a freshness time")
		}
		if e.Err == nil && (e.Result.KeyID == "" || e.Result.Type == credential.TypeUnknown || e.Result.Type.String() == "unknown") {
			t.Fatalf("decoded an allow without a key ID or a known type: %+v", e.Result)
		}
		if e.Err != nil {
			var ce *credential.Error
			if !errors.As(e.Err, &ce) || !credential.IsVerdict(e.Err) || credential.KindOf(e.Err) == credential.ErrRateLimited {
				t.Fatalf("decoded a cached verdict that is not a cacheable denial: %v", e.Err)
			}
		}
		enc, err := encodeEntry(e)
		if err != nil {
			t.Fatalf("a decoded entry cannot be encoded again: %v", err)
		}
		again, ok := decodeEntry(enc)
		if !ok {
			t.Fatalf("re-encoded entry does not decode: %s", enc)
		}
		if d := cmp.Diff(e, again, entryCmp...); d != "" {
			t.Fatalf("decode(encode(decode(b))) != decode(b) (-first +second):\n%s", d)
		}
	})
}

// FuzzEntryRoundTrip builds entries from fuzzed fields: decode(encode(e)) is
// e, for every entry the sidecar can produce.
func FuzzEntryRoundTrip(f *testing.F) {
	f.Add(uint8(1), "t", "k1", "a", "read", []byte(`{"a":1}`), uint8(1), int64(0), "10.0.0.0/8", "aud", "iss", "path", "/x",
		int64(10), int64(60000), "request", "", "", int64(1), int64(2), int64(3))
	f.Add(uint8(2), "", "k2", "", "", []byte(nil), uint8(3), int64(1_800_000_000_000), "", "", "", "", "",
		int64(0), int64(0), "", "revoked", "API_KEY_REVOKED", int64(1_800_000_000_000), int64(1_800_000_060_000), int64(0))
	f.Fuzz(func(t *testing.T, typ uint8, tenant, keyID, actor, scope string, md []byte, status uint8, expireMs int64,
		cidr, aud, iss, condK, condV string, quota, windowMs int64, unit, kind, reason string, freshMs, keepMs, tag int64,
	) {
		for _, s := range []string{tenant, keyID, actor, scope, cidr, aud, iss, condK, condV, unit, reason} {
			if !utf8.ValidString(s) {
				return // the control plane's strings are UTF-8 (protobuf strings)
			}
		}
		if freshMs == 0 {
			return // an entry is always fresh until some time
		}
		e := &Entry{
			Result: credential.Result{
				Type: credential.CredentialType(typ), Tenant: credential.Tenant(tenant), KeyID: credential.KeyID(keyID),
				ActorID: actor, Status: credential.State(status), Issuer: iss,
			},
			Fresh: time.UnixMilli(freshMs), Keep: time.UnixMilli(keepMs), Tag: tag,
		}
		if scope != "" {
			e.Result.Scopes = []string{scope, scope + "2"}
		}
		if aud != "" {
			e.Result.Audiences = []string{aud}
		}
		if condK != "" {
			e.Result.Conditions = map[string]string{condK: condV}
		}
		if len(md) > 0 {
			var buf bytes.Buffer
			if json.Compact(&buf, md) != nil {
				return // metadata is JSON (the control plane checks it)
			}
			e.Result.Metadata = buf.Bytes()
		}
		if expireMs != 0 {
			e.Result.ExpireTime = time.UnixMilli(expireMs)
		}
		if p, err := netip.ParsePrefix(cidr); err == nil {
			e.Result.AllowedCIDRs = []netip.Prefix{p}
		}
		if quota != 0 {
			e.Result.RatePolicy = &credential.RatePolicy{Quota: quota, Window: time.Duration(windowMs) * time.Millisecond, Unit: unit}
			if e.Result.RatePolicy.Window.Milliseconds() != windowMs {
				return // overflow: no such window
			}
		}
		if kind != "" {
			k, ok := verdictKinds[kind]
			if !ok {
				return
			}
			e.Err = &credential.Error{Kind: k, Reason: reason, Message: reason + "."}
		}
		allow := e.Err == nil && keyID != "" && typ >= uint8(credential.TypeIssued) && typ <= uint8(credential.TypeMacaroon)
		b, err := encodeEntry(e)
		if err != nil {
			t.Fatalf("encodeEntry: %v", err)
		}
		got, ok := decodeEntry(b)
		if e.Err == nil && !allow {
			if ok {
				t.Fatalf("decodeEntry accepted an allow without a key ID or a known type: %s", b)
			}
			return
		}
		if !ok {
			t.Fatalf("decodeEntry refused %s", b)
		}
		if d := cmp.Diff(e, got, entryCmp...); d != "" {
			t.Fatalf("decode(encode(e)) != e (-want +got):\n%s", d)
		}
	})
}

// FuzzSealOpen: what the sealer seals opens under the same key only; any
// change of one byte, and any bytes it did not seal, fail to open.
func FuzzSealOpen(f *testing.F) {
	f.Add([]byte(`{"f":1}`), "key-a", "key-b", uint16(0), uint8(1), []byte(nil))
	f.Add([]byte{}, "", "k", uint16(30), uint8(0x80), []byte{1, 2, 3})
	s, err := newSealer([]byte("fuzz-shared-secret-0123456789abcdef"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, plain []byte, key, other string, at uint16, mask uint8, junk []byte) {
		box := s.seal(key, plain)
		got, err := s.open(key, box)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("open(seal(x)) = %q, %v; want %q", got, err, plain)
		}
		if other != key {
			if _, err := s.open(other, box); err == nil {
				t.Fatal("an entry opened under another key")
			}
		}
		if mask != 0 {
			bad := bytes.Clone(box)
			bad[int(at)%len(bad)] ^= mask
			if _, err := s.open(key, bad); err == nil {
				t.Fatalf("an entry with byte %d changed opened", int(at)%len(bad))
			}
		}
		if _, err := s.open(key, box[:len(box)-1]); err == nil {
			t.Fatal("a truncated entry opened")
		}
		if _, err := s.open(key, junk); err == nil {
			t.Fatalf("bytes the sealer never sealed opened: %x", junk)
		}
	})
}
