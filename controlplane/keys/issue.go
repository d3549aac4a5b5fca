package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

// Issue creates a key and returns it with its secret, which is never available
// again. A repeated RequestID returns the key created first, without a secret
// (only its hash was kept). Errors: ErrInvalidArgument, ErrUnavailable.
func (s *Service) Issue(ctx context.Context, tenant credential.Tenant, in IssueInput) (credential.Key, string, error) {
	if err := s.validateCreate(&in); err != nil {
		return credential.Key{}, "", err
	}
	if in.RequestID != "" {
		if k, err := s.store.FindByRequestID(ctx, tenant, credential.KindIssued, in.RequestID); err == nil {
			return k, "", nil
		} else if !errors.Is(err, credential.ErrNotFound) {
			return credential.Key{}, "", err
		}
	}
	now := s.nowUTC()
	k := newKey(tenant, credential.KindIssued, in, now)
	secret, err := s.mint(&k, now)
	if err != nil {
		return credential.Key{}, "", fmt.Errorf("issue key: %w", err)
	}
	err = s.store.InTx(ctx, func(tx store.Tx) error {
		if err := tx.CreateKey(ctx, k); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, event(k, credential.EventCreated, now))
	})
	if errors.Is(err, credential.ErrConflict) && in.RequestID != "" {
		// A concurrent request with the same request_id won the race.
		existing, ferr := s.store.FindByRequestID(ctx, tenant, credential.KindIssued, in.RequestID)
		if ferr == nil {
			return existing, "", nil
		}
	}
	if err != nil {
		return credential.Key{}, "", fmt.Errorf("issue key: %w", err)
	}
	return k, secret, nil
}

func newKey(tenant credential.Tenant, kind credential.Kind, in IssueInput, now time.Time) credential.Key {
	return credential.Key{
		Tenant:       tenant,
		Kind:         kind,
		Name:         in.Name,
		ActorID:      in.ActorID,
		Scopes:       in.Scopes,
		Metadata:     in.Metadata,
		Status:       credential.StateActive,
		Visibility:   in.Visibility,
		RatePolicy:   in.RatePolicy,
		AllowedCIDRs: in.AllowedCIDRs,
		CreateTime:   now,
		UpdateTime:   now,
		ExpireTime:   expiry(now, in.TTL),
		RequestID:    in.RequestID,
	}
}

func event(k credential.Key, t credential.EventType, now time.Time) credential.Event {
	return credential.Event{Tenant: k.Tenant, Kind: k.Kind, KeyID: k.ID, Type: t, Time: now}
}

// Get returns one key. Errors: ErrNotFound, ErrUnavailable.
func (s *Service) Get(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) (credential.Key, error) {
	if id == "" {
		return credential.Key{}, invalidf("key_id is required")
	}
	k, err := s.store.GetKey(ctx, tenant, kind, id)
	if err != nil {
		return credential.Key{}, notFound(err, kind, id)
	}
	return k, nil
}

// notFound gives a store's ErrNotFound the public reason of the kind.
func notFound(err error, kind credential.Kind, id credential.KeyID) error {
	if !errors.Is(err, credential.ErrNotFound) {
		return err
	}
	msg := "API key not found"
	if kind == credential.KindImported {
		msg = "imported key not found"
	}
	return &credential.Error{Kind: credential.ErrNotFound, Reason: "API_KEY_NOT_FOUND", Message: msg,
		Metadata: map[string]string{"key_id": string(id)}}
}
