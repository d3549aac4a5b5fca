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
	base   string // endpoint without a trailing slash
	token  string // optional bearer token
	agent  string
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
	resp, err := c.client.Do(req)
	if err != nil {
		// *url.Error names the method and URL only: paths carry key IDs,
		// never credentials, which travel in bodies.
		return fmt.Errorf("talos: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("talos: read response: %w", err)
	}
	if len(data) > maxResponseBytes {
		return fmt.Errorf("talos: response larger than %d bytes", maxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(resp.StatusCode, data)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := unmarshalAnswer.Unmarshal(data, out); err != nil {
		return fmt.Errorf("talos: decode %s response: %w", path, err)
	}
	return nil
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

func decodeAPIError(httpStatus int, data []byte) error {
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
