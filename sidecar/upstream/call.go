package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

// call runs attempt until it succeeds, fails for good, or the retries or
// the caller's context run out. Each attempt gets its own Timeout within
// ctx. The error is one of this package's mapped errors (see fail).
func (c *Client) call(ctx context.Context, method string, attempt func(context.Context) error) error {
	bound := c.backoff
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return ctxError(method, err)
		}
		actx, cancel := context.WithTimeout(ctx, c.timeout)
		c.calls.Add(1)
		err := attempt(actx)
		cancel()
		if err == nil {
			c.lastOK.Store(true)
			c.answered.Store(true)
			return nil
		}
		code := status.Code(err)
		// An attempt that ran out of its own Timeout while the caller
		// still waits is retried like UNAVAILABLE: the connection or the
		// replica it reached may be stuck.
		retryable := code == codes.Unavailable || (code == codes.DeadlineExceeded && ctx.Err() == nil)
		if ctx.Err() == nil && code != codes.Canceled {
			c.lastOK.Store(code == codes.InvalidArgument)
			if code == codes.InvalidArgument {
				c.answered.Store(true)
			}
		}
		if !retryable || n > c.retries {
			return c.fail(ctx, method, err, n)
		}
		delay := c.jitter(bound)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= delay {
			// No room for another attempt before the caller gives up.
			return c.fail(ctx, method, err, n)
		}
		c.log.Debug("retrying a control plane call", "method", method, "attempt", n, "code", code.String(), "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctxError(method, ctx.Err())
		case <-t.C:
		}
		bound = min(2*bound, MaxBackoff)
	}
}

// ctxError maps the caller's context error: a passed deadline is
// ErrDeadlineExceeded, a cancellation ErrUnavailable (nothing was decided,
// so the caller fails closed).
func ctxError(method string, err error) error {
	kind := credential.ErrUnavailable
	if errors.Is(err, context.DeadlineExceeded) {
		kind = credential.ErrDeadlineExceeded
	}
	return fmt.Errorf("upstream %s: %w: %w", method, kind, err)
}

// fail maps the error of the last attempt. Status codes go through
// errcode.FromGRPC, with three exceptions: UNAUTHENTICATED and
// PERMISSION_DENIED mean the control plane refused the sidecar's own token,
// a configuration fault reported as ErrUnavailable with an error log; and a
// code that would map to a verdict sentinel (NOT_FOUND, RESOURCE_EXHAUSTED,
// …) is ErrUnavailable too, since verdicts only ever come in-band and a
// status must never be cached as one. The status message is included only
// for UNAVAILABLE and DEADLINE_EXCEEDED, whose text comes from the
// transport; other messages come from the server and are not repeated.
func (c *Client) fail(ctx context.Context, method string, err error, attempts int) error {
	st := status.Convert(err)
	code := st.Code()
	if (code == codes.DeadlineExceeded || code == codes.Canceled) && ctx.Err() != nil {
		return ctxError(method, ctx.Err())
	}
	switch code {
	case codes.Unauthenticated, codes.PermissionDenied:
		c.log.Error("the control plane rejected the sidecar's token: check the sidecar's upstream token and the control plane's admin tokens",
			"method", method, "code", code.String())
		return fmt.Errorf("upstream %s: the control plane rejected the sidecar's token (%s): %w", method, code, credential.ErrUnavailable)
	}
	kind := errcode.FromGRPC(code)
	if kind == nil || credential.IsVerdict(kind) {
		kind = credential.ErrUnavailable
	}
	level := slog.LevelDebug
	detail := ""
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded:
		detail = ": " + st.Message()
	case codes.InvalidArgument, codes.Canceled:
	default:
		level = slog.LevelError
	}
	c.log.Log(ctx, level, "control plane call failed", "method", method, "code", code.String(), "attempts", attempts)
	return fmt.Errorf("upstream %s: %s after %d attempt(s)%s: %w", method, code, attempts, detail, kind)
}
