package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/talos-project/talos/pkg/errcode"
)

// maxResponseBytes bounds what the client reads of one response. A full page
// of 1000 keys with large metadata stays well below it.
const maxResponseBytes = 64 << 20

// adminClient calls the Talos HTTP/JSON API (admin and self-service surfaces)
// with protojson bodies. It is safe for concurrent use.
type adminClient struct {
	base  string // endpoint without a trailing slash
	token string // optional bearer token
	agent string
	// noCache asks for a fresh lookup (Cache-Control: no-cache), as Ory's
	// --no-cache does.
	noCache bool
	// public: the self-service surface, which takes no admin token.
	public bool
	client *http.Client
}

func newAdminClient(endpoint, token string, timeout time.Duration) (*adminClient, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("invalid endpoint %q: want an http:// or https:// base URL", endpoint)
	}
	if u.User != nil {
		return nil, errors.New("invalid endpoint: credentials in the URL are not supported; use --token or TALOS_ADMIN_TOKEN")
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("invalid --timeout %s: must be positive", timeout)
	}
	return &adminClient{
		base:  strings.TrimRight(u.String(), "/"),
		token: token,
		agent: "talos-cli/" + buildVersion(),
		client: &http.Client{
			Timeout: timeout,
			// Requests carry credentials in their bodies and the token in a
			// header: never replay them to wherever a redirect points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

var (
	marshalRequest  = protojson.MarshalOptions{UseProtoNames: true}
	unmarshalAnswer = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// call sends in (nil: no body) to path with query, and decodes a 2xx answer
// into out (nil: the body is ignored). A non-2xx answer is an *apiError.
func (c *adminClient) call(ctx context.Context, method, path string, query url.Values, in, out proto.Message) error {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := marshalRequest.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.agent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.noCache {
		req.Header.Set("Cache-Control", "no-cache")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		// *url.Error names the method and URL only: paths carry key IDs,
		// never credentials, which travel in bodies.
		return withExit(exitServer, fmt.Errorf("talos: %w\n%s", err, c.endpointHint()))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return withExit(exitServer, fmt.Errorf("talos: read response: %w", err))
	}
	if len(data) > maxResponseBytes {
		return withExit(exitServer, fmt.Errorf("talos: response larger than %d bytes", maxResponseBytes))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.markAPIError(decodeAPIError(resp.StatusCode, data))
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := unmarshalAnswer.Unmarshal(data, out); err != nil {
		return withExit(exitServer, fmt.Errorf("talos: decode %s response: %w", path, err))
	}
	return nil
}

func (c *adminClient) endpointHint() string {
	return fmt.Sprintf("Is Talos running and reachable at %s? Set --endpoint or %s.", c.base, envEndpoint)
}

// markAPIError gives an answer of the API its exit code, with a hint at
// what to do where there is one.
func (c *adminClient) markAPIError(e *apiError) error {
	switch {
	case e.Reason == "API_KEY_REVOKED" || e.Reason == "API_KEY_EXPIRED":
		// The credential presented (to derive-token, self-revoke) is no
		// longer good: a negative answer, not a refused admin token.
		return withExit(exitNegative, e)
	case c.public && (e.HTTP == http.StatusUnauthorized || e.HTTP == http.StatusForbidden):
		// The public surface takes no token: the credential was refused.
		return withExit(exitNegative, e)
	case e.HTTP == http.StatusUnauthorized || e.Status == "UNAUTHENTICATED":
		hint := "No admin token was sent: pass --token or set " + envAdminToken + "."
		if c.token != "" {
			hint = "The admin token was refused: check --token or " + envAdminToken + "."
		}
		return withExit(exitAuth, fmt.Errorf("%w\n%s", e, hint))
	case e.HTTP == http.StatusForbidden || e.Status == "PERMISSION_DENIED":
		return withExit(exitAuth, fmt.Errorf("%w\nThe token may not do this: pass --token or set %s to a token with this role.", e, envAdminToken))
	case e.HTTP == http.StatusNotFound:
		return withExit(exitNegative, e)
	case e.HTTP == http.StatusBadRequest:
		return withExit(exitUsage, e)
	case e.HTTP >= 500 || e.HTTP == http.StatusTooManyRequests:
		return withExit(exitServer, fmt.Errorf("%w\nThe server at %s failed: retry later, or see its log.", e, c.base))
	}
	return withExit(exitNegative, e)
}

// apiError is a non-2xx answer of the API, decoded from its AIP-193 envelope
// {"error": {"code", "message", "status", "details": [{"reason", ...}]}}.
// It unwraps to the credential sentinel of its gRPC status (see
// errcode.FromGRPC), so callers can test it with errors.Is.
type apiError struct {
	HTTP    int
	Status  string // canonical gRPC code name, e.g. NOT_FOUND
	Reason  string // ErrorInfo reason, e.g. API_KEY_NOT_FOUND
	Message string
}

func (e *apiError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.HTTP))
	}
	if msg == "" {
		msg = "request failed"
	}
	if e.Reason != "" {
		return fmt.Sprintf("talos: %s (%s, HTTP %d)", msg, e.Reason, e.HTTP)
	}
	return fmt.Sprintf("talos: %s (HTTP %d)", msg, e.HTTP)
}

func (e *apiError) Unwrap() error {
	var c codes.Code
	if e.Status == "" || c.UnmarshalJSON([]byte(strconv.Quote(e.Status))) != nil {
		return nil
	}
	return errcode.FromGRPC(c)
}

func decodeAPIError(httpStatus int, data []byte) *apiError {
	var env struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				Reason string `json:"reason"`
			} `json:"details"`
		} `json:"error"`
	}
	e := &apiError{HTTP: httpStatus}
	// A body that is not the envelope (a proxy's HTML page, say) is not
	// shown: it is noise, and its size is unbounded.
	if json.Unmarshal(data, &env) != nil {
		return e
	}
	e.Status = env.Error.Status
	e.Message = sanitizeLine(env.Error.Message)
	for _, d := range env.Error.Details {
		if d.Reason != "" {
			e.Reason = sanitizeLine(d.Reason)
			break
		}
	}
	return e
}
