package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// MaxReviewBytes caps an AdmissionReview request body. The API server
// limits an object to about 3 MiB in etcd; a review of a CREATE carries one
// object (UPDATE would carry two, and is not injected).
const MaxReviewBytes = 7 << 20

// Handler is the webhook's HTTP handler: POST /inject takes an
// AdmissionReview v1 and answers one with the same UID. It is safe for
// concurrent use.
type Handler struct {
	in  *Injector
	log *slog.Logger
}

// NewHandler returns the handler of in; log gets one line per decision
// (pod name, namespace, outcome; never an environment value).
func NewHandler(in *Injector, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{in: in, log: log}
}

// ServeHTTP answers POST /inject. A request that is not a well-formed
// AdmissionReview v1 gets 4xx without a review (the API server then applies
// the webhook's failurePolicy); every review gets 200 with its response.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "content type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReviewBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read request body", http.StatusBadRequest)
		return
	}
	review, err := DecodeReview(body)
	if err != nil {
		h.log.Warn("inject: bad admission review", slog.String("error", err.Error()))
		http.Error(w, "bad admission review: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp := h.Review(review.Request)
	out, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		http.Error(w, "cannot encode the response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// DecodeReview decodes an AdmissionReview v1 request: no duplicate fields,
// case-sensitive names, and a request with a UID. The object is checked
// only when reviewed. Unknown fields are tolerated, as in the pod: a newer
// API server may add some to the envelope, and refusing them under
// failurePolicy Fail would stop every pod creation in the cluster.
func DecodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	strict, err := kjson.UnmarshalStrict(body, &review, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(strict...); err != nil {
		return nil, err
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("want apiVersion %s kind AdmissionReview, got %q %q", admissionv1.SchemeGroupVersion, review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("request without uid")
	}
	if review.Response != nil {
		return nil, errors.New("a request carries no response")
	}
	return &review, nil
}

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// Review answers one admission request: allowed with a JSONPatch
// (injected), allowed without one (skipped, or not a pod CREATE), or
// refused with a message.
func (h *Handler) Review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	log := h.log.With(slog.String("uid", string(req.UID)), slog.String("namespace", req.Namespace))
	if req.Resource != podResource || req.SubResource != "" || req.Operation != admissionv1.Create {
		log.Debug("inject: not a pod create", slog.String("resource", req.Resource.String()), slog.String("operation", string(req.Operation)))
		return resp
	}
	pod, err := decodePod(req.Object.Raw)
	if err != nil {
		log.Warn("inject: undecodable pod", slog.String("error", err.Error()))
		return deny(resp, fmt.Sprintf("talos sidecar injection: the pod does not decode: %v", err))
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	log = log.With(slog.String("pod", name))
	outcome, m, reason, err := h.in.Plan(pod.ObjectMeta, pod.Spec)
	switch {
	case err != nil:
		log.Info("inject: refused", slog.String("reason", err.Error()))
		return deny(resp, err.Error())
	case outcome == Skipped:
		log.Debug("inject: skipped", slog.String("reason", reason))
		return resp
	}
	patch, err := json.Marshal(m.Patch(pod.ObjectMeta, pod.Spec))
	if err != nil {
		return deny(resp, "talos sidecar injection: cannot encode the patch")
	}
	log.Info("inject: injected", slog.Bool("native_sidecar", m.Native))
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	return resp
}

// decodePod decodes the reviewed pod. Duplicate keys are refused (two
// parsers could read two different pods), field names match
// case-sensitively; unknown fields are tolerated: the API server has
// validated the object against its own, possibly newer, schema, and the
// patch only adds, so fields this build does not know are kept as they are.
func decodePod(raw []byte) (*corev1.Pod, error) {
	if len(raw) == 0 {
		return nil, errors.New("no object")
	}
	var pod corev1.Pod
	strict, err := kjson.UnmarshalStrict(raw, &pod, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(strict...); err != nil {
		return nil, err
	}
	if pod.Kind != "" && (pod.Kind != "Pod" || pod.APIVersion != "v1") {
		return nil, fmt.Errorf("want a v1 Pod, got %s %s", pod.APIVersion, pod.Kind)
	}
	return &pod, nil
}

func deny(resp *admissionv1.AdmissionResponse, msg string) *admissionv1.AdmissionResponse {
	resp.Allowed = false
	resp.Result = &metav1.Status{Status: metav1.StatusFailure, Message: msg, Reason: metav1.StatusReasonBadRequest, Code: http.StatusBadRequest}
	return resp
}
