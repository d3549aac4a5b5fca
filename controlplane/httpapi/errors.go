package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/pkg/errcode"
)

// envelope is the AIP-193 error body.
type envelope struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    int         `json:"code"`
	Message string      `json:"message"`
	Status  string      `json:"status"`
	Details []errorInfo `json:"details"`
}

type errorInfo struct {
	Type     string            `json:"@type"`
	Reason   string            `json:"reason"`
	Domain   string            `json:"domain"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// writeError writes one AIP-193 error.
func writeError(w http.ResponseWriter, httpStatus int, code codes.Code, reason, message string, md map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(httpStatus)
	_ = json.NewEncoder(w).Encode(envelope{Error: errorBody{
		Code:    httpStatus,
		Message: message,
		Status:  errcode.StatusName(code),
		Details: []errorInfo{{Type: "type.googleapis.com/google.rpc.ErrorInfo", Reason: reason, Domain: errcode.Domain, Metadata: md}},
	}})
}

// defaultReason is the reason of a status that carries no ErrorInfo (gateway
// decoding errors, routing errors).
func defaultReason(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "BAD_REQUEST"
	case codes.NotFound, codes.Unimplemented:
		return "NOT_FOUND"
	case codes.Canceled:
		return "CLIENT_CLOSED_REQUEST"
	}
	return errcode.HTTPReason(c)
}

// gatewayError is the grpc-gateway error handler: every error the in-process
// services return, and every decoding error of the gateway itself. No answer
// carries the request's input (it may be a credential sent in the wrong
// field or pasted into the path): decoding errors get a fixed message,
// quoted fragments are cut from validation messages, and a key_id is echoed
// only when it has the shape of a key ID.
func gatewayError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	if errors.Is(err, errMisdirected) {
		writeError(w, http.StatusMisdirectedRequest, codes.PermissionDenied, "HOST_NOT_ALLOWED",
			"this Host is not served while the admin API is unauthenticated; see serve.http.allowed_hosts", nil)
		return
	}
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) {
		code := codes.InvalidArgument
		if hse.HTTPStatus >= 500 {
			code = codes.Internal
		}
		writeError(w, hse.HTTPStatus, code, defaultReason(code), http.StatusText(hse.HTTPStatus), nil)
		return
	}
	st := status.Convert(err)
	reason, md, hasInfo := defaultReason(st.Code()), map[string]string(nil), false
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason, md, hasInfo = d.GetReason(), d.GetMetadata(), true
		case *errdetails.RetryInfo:
			// Whole seconds, rounded up (RFC 9110 delay-seconds).
			w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.GetRetryDelay().AsDuration().Seconds())), 10))
		}
	}
	msg := st.Message()
	if st.Code() == codes.InvalidArgument {
		if hasInfo {
			msg = grpcapi.PublicMessage(msg)
		} else {
			msg = decodeMessage(msg)
		}
	}
	md = grpcapi.PublicMetadata(md)
	if st.Code() == codes.Unauthenticated && reason == "UNAUTHORIZED" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="talos"`)
	}
	writeError(w, errcode.HTTPFromGRPC(st.Code()), st.Code(), reason, msg, md)
}

// decodeMessage is the public message of a gateway decoding error (no
// ErrorInfo): a fixed text by kind, never the decoder's message, which quotes
// the input.
func decodeMessage(msg string) string {
	switch {
	case strings.Contains(msg, "unknown field"):
		return "invalid request: the body has an unknown field"
	case strings.Contains(msg, "invalid UTF-8"):
		return "invalid request: the body is not valid UTF-8"
	case strings.Contains(msg, "parsing field"), strings.Contains(msg, "type mismatch"), strings.Contains(msg, "missing parameter"):
		return "invalid request: a path or query parameter is invalid"
	case strings.Contains(msg, "grpc-timeout"), strings.Contains(msg, "binary header"):
		return "invalid request: a header is invalid"
	}
	return "invalid request: the body is not valid JSON for this method"
}

// routingError answers unknown paths (404) and wrong methods (405).
func routingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		writeError(w, httpStatus, codes.Unimplemented, "METHOD_NOT_ALLOWED", "method not allowed", nil)
	case http.StatusBadRequest:
		writeError(w, httpStatus, codes.InvalidArgument, "BAD_REQUEST", "bad request", nil)
	default:
		writeError(w, http.StatusNotFound, codes.NotFound, "NOT_FOUND", "not found", nil)
	}
}
