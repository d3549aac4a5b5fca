package apiconv

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/credential"
)

// Status maps a key's state at now to the wire enum.
func Status(k *credential.Key, now time.Time) pb.KeyStatus {
	return stateToPB(k.EffectiveState(now))
}

func stateToPB(s credential.State) pb.KeyStatus {
	switch s {
	case credential.StateActive:
		return pb.KeyStatus_KEY_STATUS_ACTIVE
	case credential.StateRevoked:
		return pb.KeyStatus_KEY_STATUS_REVOKED
	case credential.StateExpired:
		return pb.KeyStatus_KEY_STATUS_EXPIRED
	}
	return pb.KeyStatus_KEY_STATUS_UNSPECIFIED
}

// VisibilityToPB maps a visibility to the wire enum.
func VisibilityToPB(v credential.Visibility) pb.KeyVisibility {
	if v == credential.VisibilityPublic {
		return pb.KeyVisibility_KEY_VISIBILITY_PUBLIC
	}
	return pb.KeyVisibility_KEY_VISIBILITY_SECRET
}

// VisibilityFromPB maps the wire enum; UNSPECIFIED is zero (inherit/default).
func VisibilityFromPB(v pb.KeyVisibility) (credential.Visibility, error) {
	switch v {
	case pb.KeyVisibility_KEY_VISIBILITY_UNSPECIFIED:
		return 0, nil
	case pb.KeyVisibility_KEY_VISIBILITY_SECRET:
		return credential.VisibilitySecret, nil
	case pb.KeyVisibility_KEY_VISIBILITY_PUBLIC:
		return credential.VisibilityPublic, nil
	}
	return 0, credential.Invalid("unknown visibility")
}

// ReasonFromPB maps the wire revocation reason.
func ReasonFromPB(r pb.RevocationReason) (credential.RevocationReason, error) {
	if r < 0 || r > pb.RevocationReason_REVOCATION_REASON_PRIVILEGE_WITHDRAWN {
		return 0, credential.Invalid("unknown revocation reason")
	}
	return credential.RevocationReason(r), nil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// MetadataToPB converts stored JSON metadata to a Struct (nil for none).
func MetadataToPB(md json.RawMessage) *structpb.Struct {
	if len(md) == 0 {
		return nil
	}
	st := &structpb.Struct{}
	if err := protojson.Unmarshal(md, st); err != nil {
		return nil
	}
	return st
}

// MetadataFromPB serializes a Struct to JSON (nil for none).
func MetadataFromPB(st *structpb.Struct) (json.RawMessage, error) {
	if st == nil || len(st.GetFields()) == 0 {
		return nil, nil
	}
	b, err := protojson.Marshal(st)
	if err != nil {
		return nil, credential.Invalid("metadata is not valid JSON")
	}
	return b, nil
}

// RatePolicyToPB converts a rate policy (nil stays nil).
func RatePolicyToPB(rp *credential.RatePolicy) *pb.RateLimitPolicy {
	if rp == nil {
		return nil
	}
	return &pb.RateLimitPolicy{Quota: rp.Quota, Window: FormatDuration(rp.Window), Unit: rp.Unit}
}

// RatePolicyFromPB converts a wire rate policy (nil stays nil).
func RatePolicyFromPB(rp *pb.RateLimitPolicy) (*credential.RatePolicy, error) {
	if rp == nil {
		return nil, nil
	}
	w, err := ParseDuration(rp.GetWindow())
	if err != nil {
		return nil, credential.Invalid("rate_limit_policy.window: " + err.Error())
	}
	return &credential.RatePolicy{Quota: rp.GetQuota(), Window: w, Unit: rp.GetUnit()}, nil
}

// CIDRsToPB converts an allowlist (empty stays nil).
func CIDRsToPB(ps []netip.Prefix) *pb.IPRestriction {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return &pb.IPRestriction{AllowedCidrs: out}
}

// CIDRsFromPB parses an allowlist. A bare address is taken as a single-host
// prefix.
func CIDRsFromPB(r *pb.IPRestriction) ([]netip.Prefix, error) {
	if r == nil || len(r.GetAllowedCidrs()) == 0 {
		return nil, nil
	}
	out := make([]netip.Prefix, 0, len(r.GetAllowedCidrs()))
	for i, s := range r.GetAllowedCidrs() {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, credential.Invalid(fmt.Sprintf("ip_restriction.allowed_cidrs[%d] is not a valid CIDR", i))
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}

// IssuedToPB converts an issued key as seen at now.
func IssuedToPB(k *credential.Key, now time.Time) *pb.IssuedApiKey {
	return &pb.IssuedApiKey{
		KeyId:                 string(k.ID),
		Name:                  k.Name,
		ActorId:               k.ActorID,
		Scopes:                k.Scopes,
		Metadata:              MetadataToPB(k.Metadata),
		Status:                Status(k, now),
		Visibility:            VisibilityToPB(k.Visibility),
		RateLimitPolicy:       RatePolicyToPB(k.RatePolicy),
		IpRestriction:         CIDRsToPB(k.AllowedCIDRs),
		RevocationReason:      pb.RevocationReason(k.RevocationReason),
		RevocationDescription: k.RevocationDescription,
		CreateTime:            ts(k.CreateTime),
		UpdateTime:            ts(k.UpdateTime),
		ExpireTime:            ts(k.ExpireTime),
		LastUsedTime:          ts(k.LastUsedTime),
	}
}

// ImportedToPB converts an imported key as seen at now.
func ImportedToPB(k *credential.Key, now time.Time) *pb.ImportedApiKey {
	i := IssuedToPB(k, now)
	return &pb.ImportedApiKey{
		KeyId: i.KeyId, Name: i.Name, ActorId: i.ActorId, Scopes: i.Scopes, Metadata: i.Metadata,
		Status: i.Status, Visibility: i.Visibility, RateLimitPolicy: i.RateLimitPolicy,
		IpRestriction: i.IpRestriction, RevocationReason: i.RevocationReason,
		RevocationDescription: i.RevocationDescription, CreateTime: i.CreateTime,
		UpdateTime: i.UpdateTime, ExpireTime: i.ExpireTime, LastUsedTime: i.LastUsedTime,
	}
}
