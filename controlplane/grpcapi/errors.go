package grpcapi

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

// toStatus converts a service error to a gRPC status error carrying an
// ErrorInfo. Errors that wrap no sentinel become INTERNAL with a generic
// message; their cause is logged here, never sent. No status carries the
// request's input (a credential may be sent in the wrong field): quoted
// fragments are cut from the message and a key_id is named only when it has
// the shape of a key ID ([PublicMessage], [PublicMetadata]). Both transports
// answer through here.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return status.Error(codes.Canceled, "request canceled")
	}
	d := errcode.Describe(err)
	if d.LogError {
		s.log.LogAttrs(ctx, slog.LevelError, "request failed", slog.String("method", method), slog.String("error", err.Error()))
	} else {
		s.log.LogAttrs(ctx, slog.LevelDebug, "request rejected", slog.String("method", method), slog.String("reason", d.Reason))
	}
	st := status.New(d.GRPC, PublicMessage(d.Message))
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: d.Reason, Domain: errcode.Domain, Metadata: PublicMetadata(d.Metadata)}}
	if ra := retryAfter(err); ra > 0 {
		// google.rpc.RetryInfo: the HTTP gateway turns it into Retry-After.
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(ra)})
	}
	if withInfo, derr := st.WithDetails(details...); derr == nil {
		st = withInfo
	}
	return st.Err()
}

// retryAfter is the retry hint a *credential.Error carries, or zero.
func retryAfter(err error) time.Duration {
	var ce *credential.Error
	if errors.As(err, &ce) {
		return ce.RetryAfter
	}
	return 0
}

// quoted matches a Go-quoted string (%q), the way service messages show
// input.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// PublicMessage is msg with every quoted fragment replaced by "…".
func PublicMessage(msg string) string {
	if !strings.Contains(msg, `"`) {
		return msg
	}
	return quoted.ReplaceAllString(msg, `"…"`)
}

// PublicMetadata is md without a key_id that lacks the shape of a key ID (it
// was the caller's input, not a stored ID). md itself is never changed.
func PublicMetadata(md map[string]string) map[string]string {
	if id, ok := md["key_id"]; ok && !IsKeyID(id) {
		md = maps.Clone(md)
		delete(md, "key_id")
	}
	return md
}

// IsKeyID reports whether s has the shape of a key ID: a UUID (issued keys)
// or 64 lowercase hex digits (imported keys).
func IsKeyID(s string) bool {
	if _, err := uuid.Parse(s); err == nil && len(s) == 36 {
		return true
	}
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
