package main

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// race runs fn from n goroutines at once and returns the HTTP statuses.
func race(n int, fn func(i int) int) []int {
	var wg sync.WaitGroup
	codes := make([]int, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return codes
}

func count(codes []int, code int) int {
	n := 0
	for _, c := range codes {
		if c == code {
			n++
		}
	}
	return n
}

// TestE2E_Races checks exactly-one-wins on every backend: concurrent rotations
// and revocations of one key, concurrent issues with one request_id, and a
// batch import racing single imports of the same raw key.
func TestE2E_Races(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			srv := startServer(t, b.env...)
			base := srv.http + "/v2alpha1/admin"
			const n = 8
			post := func(path string, body any) (int, map[string]any) {
				code, raw := do(t, "POST", base+path, jsonBody(body))
				var m map[string]any
				_ = json.Unmarshal(raw, &m)
				return code, m
			}
			issue := func(body map[string]any) string {
				code, m := post("/issuedApiKeys", body)
				if code != 201 {
					t.Fatalf("issue: %d %v", code, m)
				}
				return m["issued_api_key"].(map[string]any)["key_id"].(string)
			}

			id := issue(map[string]any{"name": "r", "actor_id": "a"})
			codes := race(n, func(int) int { c, _ := post("/issuedApiKeys/"+id+":rotate", map[string]any{}); return c })
			if count(codes, 201) != 1 || count(codes, 409) != n-1 {
				t.Errorf("concurrent rotations: %v, want one 201 and %d 409", codes, n-1)
			}

			id = issue(map[string]any{"name": "r", "actor_id": "a"})
			codes = race(n, func(int) int {
				c, _ := post("/issuedApiKeys/"+id+":revoke", map[string]any{"reason": "REVOCATION_REASON_KEY_COMPROMISE"})
				return c
			})
			if count(codes, 204) != 1 || count(codes, 409) != n-1 {
				t.Errorf("concurrent revocations: %v, want one 204 and %d 409", codes, n-1)
			}

			ids := make([]string, n)
			codes = race(n, func(i int) int {
				c, m := post("/issuedApiKeys", map[string]any{"name": "idem", "actor_id": "idem", "request_id": "same-request"})
				if k, ok := m["issued_api_key"].(map[string]any); ok {
					ids[i], _ = k["key_id"].(string)
				}
				return c
			})
			if count(codes, 201) != n || strings.Count(strings.Join(ids, " "), ids[0]) != n {
				t.Errorf("concurrent idempotent issues: %v %v, want %d times the same key", codes, ids, n)
			}
			code, raw := do(t, "GET", base+"/issuedApiKeys?filter="+url.QueryEscape(`actor_id="idem"`), nil)
			if code != 200 || strings.Count(string(raw), `"key_id"`) != 1 {
				t.Errorf("keys of the idempotent request: %d %s, want exactly one", code, raw)
			}

			raw1 := "sk_live_race_0123456789abcdef"
			item := map[string]any{"raw_key": raw1, "name": "n", "actor_id": "a"}
			codes = race(n, func(i int) int {
				if i == 0 {
					c, m := post("/importedApiKeys:batchCreate", map[string]any{"requests": []any{item, map[string]any{"raw_key": "sk_live_race_other_0123456789", "name": "n", "actor_id": "a"}}})
					if c == 200 {
						if r := m["results"].([]any)[0].(map[string]any); r["imported_api_key"] != nil {
							return 201
						}
						return 409
					}
					return c
				}
				c, _ := post("/importedApiKeys", item)
				return c
			})
			if count(codes, 201) != 1 || count(codes, 409) != n-1 {
				t.Errorf("batch import racing single imports: %v, want one success and %d 409", codes, n-1)
			}
		})
	}
}
