package httpapi

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/telemetry"
)

// ClientIPSource says where the client address comes from (Ory Talos's
// serve.http.client_ip_source).
type ClientIPSource int

const (
	SourceRemoteAddr ClientIPSource = iota
	SourceCFConnectingIP
	SourceXForwardedFor // rightmost entry: the one the nearest proxy wrote
	SourceXRealIP
	SourceTrueClientIP
)

// ParseClientIPSource maps the configuration enum names; unknown names fall
// back to the remote address (ok=false lets the caller warn).
func ParseClientIPSource(s string) (ClientIPSource, bool) {
	switch s {
	case "", "CLIENT_IP_SOURCE_UNSPECIFIED", "CLIENT_IP_SOURCE_REMOTE_ADDR":
		return SourceRemoteAddr, true
	case "CLIENT_IP_SOURCE_CF_CONNECTING_IP":
		return SourceCFConnectingIP, true
	case "CLIENT_IP_SOURCE_X_FORWARDED_FOR":
		return SourceXForwardedFor, true
	case "CLIENT_IP_SOURCE_X_REAL_IP":
		return SourceXRealIP, true
	case "CLIENT_IP_SOURCE_TRUE_CLIENT_IP":
		return SourceTrueClientIP, true
	}
	return SourceRemoteAddr, false
}

// ClientIP resolves the client address of r. A configured header that is
// empty or unparsable falls back to the TCP peer; the zero Addr means none
// could be determined (IP restrictions then fail closed).
func ClientIP(src ClientIPSource, r *http.Request) netip.Addr {
	var name string
	switch src {
	case SourceCFConnectingIP:
		name = "CF-Connecting-IP"
	case SourceXForwardedFor:
		name = "X-Forwarded-For"
	case SourceXRealIP:
		name = "X-Real-IP"
	case SourceTrueClientIP:
		name = "True-Client-IP"
	}
	if name != "" {
		// The rule the sidecar applies too: the nearest proxy's entry.
		if a := credential.ForwardedAddr(r.Header.Values(name)); a.IsValid() {
			return a
		}
	}
	return credential.ParseAddr(r.RemoteAddr)
}

func clientIPMiddleware(src ClientIPSource, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(grpcapi.WithClientIP(r.Context(), ClientIP(src, r))))
	})
}

// bodyLimit reads the body up front, bounded: a body over limit is answered
// with 413 before any handler runs, so nothing is written.
func bodyLimit(limit int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > limit {
			tooLarge(w, limit)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		_ = r.Body.Close()
		if err != nil {
			writeError(w, http.StatusBadRequest, codes.InvalidArgument, "BAD_REQUEST", "could not read the request body", nil)
			return
		}
		if int64(len(body)) > limit {
			tooLarge(w, limit)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

func tooLarge(w http.ResponseWriter, limit int64) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument, "REQUEST_ENTITY_TOO_LARGE",
		"request body exceeds the limit of "+itoa(limit)+" bytes", nil)
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

const maxRequestIDLen = 128

func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > maxRequestIDLen {
			id = uuid.NewString()
			r.Header.Set("X-Request-ID", id)
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r)
	})
}

// statusWriter records the status and drops bodies of responses that must
// have none (204).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status != 0 {
		return
	}
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.status == http.StatusNoContent || s.status == http.StatusNotModified {
		return len(p), nil
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += n
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// requestLog logs one line per request: method, route pattern, status, size,
// duration and request ID. Never the raw path (a credential pasted into a
// URL would land in the log), bodies or headers, nor a method other than the
// standard ones ("_OTHER"): a method is any token up to the header limit, so
// logging it raw let any caller write ~64 KiB of log per request.
func requestLog(log *slog.Logger, excludeHealth bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if excludeHealth && strings.HasPrefix(r.URL.Path, "/health/") {
			return
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "HTTP request completed",
			slog.String("http_request.method", telemetry.MethodLabel(r.Method)),
			slog.String("http_request.route", routeOf(r.Context())),
			slog.Int("status", sw.status),
			slog.Int("bytes", sw.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("request_id", r.Header.Get("X-Request-ID")),
		)
	})
}

func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v)
				}
				log.Error("panic serving request", slog.String("http_request.route", routeOf(r.Context())), slog.Any("panic", v))
				writeError(w, http.StatusInternalServerError, codes.Internal, "INTERNAL_SERVER_ERROR", "An internal error occurred.", nil)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
