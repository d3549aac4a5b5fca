package grpcapi

import (
	"context"
	"errors"
	"log/slog"
	"time"

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
// message; their cause is logged here, never sent.
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
	st := status.New(d.GRPC, d.Message)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: d.Reason, Domain: errcode.Domain, Metadata: d.Metadata}}
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
