package httpapi

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
// services return, and every decoding error of the gateway itself.
func gatewayError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	st := status.Convert(err)
	reason, md := defaultReason(st.Code()), map[string]string(nil)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason, md = d.GetReason(), d.GetMetadata()
		case *errdetails.RetryInfo:
			// Whole seconds, rounded up (RFC 9110 delay-seconds).
			w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.GetRetryDelay().AsDuration().Seconds())), 10))
		}
	}
	msg := st.Message()
	if st.Code() == codes.InvalidArgument && reason == "BAD_REQUEST" && len(st.Details()) == 0 {
		msg = "invalid request: " + msg
	}
	writeError(w, errcode.HTTPFromGRPC(st.Code()), st.Code(), reason, msg, md)
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
