package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/httpapi"
)

// BenchmarkHTTPVerify measures the whole HTTP verify path over a real
// loopback socket: client, HTTP server, gateway, keys service, SQLite. The
// client runs in the same process on the same cores, as a load generator
// would. It reports req/s.
func BenchmarkHTTPVerify(b *testing.B) {
	h := newTestHandler(b, httpapi.Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	const n = 1000
	bodies := make([][]byte, n)
	for i := range bodies {
		w := serve(h, "POST", "/v2alpha1/admin/issuedApiKeys", []byte(`{"name":"bench","actor_id":"a","scopes":["read"],"metadata":{"team":"x"}}`))
		var r struct {
			Secret string `json:"secret"`
		}
		if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &r) != nil {
			b.Fatalf("issue: %d %s", w.Code, w.Body)
		}
		bodies[i], _ = json.Marshal(map[string]string{"credential": r.Secret})
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	url := srv.URL + "/v2alpha1/admin/apiKeys:verify"
	var next atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(4)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := bodies[next.Add(1)%n]
			resp, err := client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Contains(out, []byte(`"is_valid":true`)) {
				b.Errorf("verify = %d %s", resp.StatusCode, out)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
