package httpapi

import (
	"bytes"
	"encoding/json"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
)

// compactJSON is the gateway's marshaler: protojson with proto field names,
// strict decoding (unknown fields are errors), and compact, stable output.
// protojson deliberately varies its whitespace between builds; compacting
// keeps responses byte-stable for scripts and caches.
type compactJSON struct{ runtime.JSONPb }

func newMarshaler() *compactJSON {
	return &compactJSON{runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

func (m *compactJSON) Marshal(v any) ([]byte, error) {
	b, err := m.JSONPb.Marshal(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(b))
	if err := json.Compact(&buf, b); err != nil {
		return b, nil
	}
	return buf.Bytes(), nil
}
