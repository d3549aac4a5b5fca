package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// TestE2E_SelfRevokeBruteForceThrottled is finding 7 of issue 11 over the
// real HTTP API: a 4-digit key imported with allow_weak, guessed through the
// public apiKeys:selfRevoke on one keep-alive connection. Before the fix the
// key was found and revoked within 43 guesses; now the 11th failure and
// everything after it get 429 RESOURCE_EXHAUSTED with Retry-After, and the key
// survives the whole 10,000-guess search.
func TestE2E_SelfRevokeBruteForceThrottled(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	srv := startServer(t, "TALOS_CREDENTIALS_IMPORTED_KEYS_ALLOW_WEAK=true")
	const secret = "0042"
	if code, b := do(t, "POST", srv.http+"/v2alpha1/admin/importedApiKeys", jsonBody(map[string]string{"raw_key": secret, "name": "pin", "actor_id": "a"})); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("import with allow_weak: %d %s", code, b)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	outcomes := map[int]int{}
	start := time.Now()
	for i := range 10000 {
		guess := fmt.Sprintf("%04d", i)
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.http+"/v2alpha1/apiKeys:selfRevoke",
			bytes.NewReader(jsonBody(map[string]string{"credential": guess})))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		outcomes[resp.StatusCode]++
		switch resp.StatusCode {
		case http.StatusOK:
			t.Fatalf("guess %s revoked the key (after %d guesses in %v)", guess, i+1, time.Since(start).Round(time.Millisecond))
		case http.StatusTooManyRequests:
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 6 {
				t.Fatalf("guess %s: Retry-After %q, want 1..6 seconds", guess, resp.Header.Get("Retry-After"))
			}
			if !strings.Contains(string(body), "RESOURCE_EXHAUSTED") {
				t.Fatalf("guess %s: body %s, want RESOURCE_EXHAUSTED", guess, body)
			}
		case http.StatusNotFound:
			// The burst of 10, plus one refill per 6s since the first
			// guess (none unless the box is very slow).
			if allowed := 10 + int(time.Since(start)/(6*time.Second)); outcomes[http.StatusNotFound] > allowed {
				t.Fatalf("guess %s: failure %d was not throttled (burst 10, %d allowed by now)", guess, outcomes[http.StatusNotFound], allowed)
			}
		default:
			t.Fatalf("guess %s: %d %s", guess, resp.StatusCode, body)
		}
	}
	elapsed := time.Since(start)
	// The burst, plus one per 6s of the search (it usually takes a few seconds).
	if maxFailures := 10 + int(elapsed/(6*time.Second)) + 1; outcomes[http.StatusNotFound] > maxFailures {
		t.Errorf("%d failed guesses answered in %v, want at most %d", outcomes[http.StatusNotFound], elapsed, maxFailures)
	}
	t.Logf("10,000 guesses in %v: %v", elapsed.Round(time.Millisecond), outcomes)
	c := sdk(srv.http)
	if v := verify(t, c, secret); !v.GetIsValid() {
		t.Fatalf("the key no longer verifies after the search: %v", v.GetErrorCode())
	}
	if !strings.Contains(srv.log.String(), "self-revoke throttle engaged") {
		t.Error("no warning logged when the throttle engaged")
	}
}

// TestE2E_ImportWeakKeyRefused is finding 7b over HTTP: by default an
// imported "1234" is refused with 400 and the key is not stored.
func TestE2E_ImportWeakKeyRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	srv := startServer(t)
	code, b := do(t, "POST", srv.http+"/v2alpha1/admin/importedApiKeys", jsonBody(map[string]string{"raw_key": "1234", "name": "pin", "actor_id": "a"}))
	if code != http.StatusBadRequest || !strings.Contains(string(b), "allow_weak") {
		t.Fatalf("import of 1234: %d %s, want 400 naming allow_weak", code, b)
	}
	if v := verify(t, sdk(srv.http), "1234"); v.GetIsValid() {
		t.Fatal("the refused key verifies")
	}
}

// TestE2E_SelfRevokeThrottledOverGRPC: the gRPC SelfService answers a
// throttled address with RESOURCE_EXHAUSTED and a google.rpc.RetryInfo.
func TestE2E_SelfRevokeThrottledOverGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	srv := startServer(t)
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewSelfServiceClient(conn)
	start := time.Now()
	for i := 0; ; i++ {
		_, err := c.RevokeApiKey(t.Context(), &pb.SelfRevokeApiKeyRequest{Credential: fmt.Sprintf("not-a-key-%04d-xxxxxxxx", i)})
		st := status.Convert(err)
		// The burst of 10 fails with NotFound, plus one refill per 6s
		// since the first attempt (none unless the box is very slow).
		allowed := 10 + int(time.Since(start)/(6*time.Second))
		if i < 10 || (i < allowed && st.Code() == codes.NotFound) {
			if st.Code() != codes.NotFound {
				t.Fatalf("failure %d: %v, want NotFound", i+1, err)
			}
			continue
		}
		if st.Code() != codes.ResourceExhausted {
			t.Fatalf("failure %d: %v, want ResourceExhausted (burst 10, %d allowed by now)", i+1, err, allowed)
		}
		var delay time.Duration
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				delay = ri.GetRetryDelay().AsDuration()
			}
		}
		if delay <= 0 || delay > 6*time.Second {
			t.Fatalf("RetryInfo delay %v, want (0, 6s]", delay)
		}
		return
	}
}
