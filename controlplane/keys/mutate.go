package keys

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

func apply(k *credential.Key, p Patch) {
	if p.Set.Has(FieldName) {
		k.Name = p.Name
	}
	if p.Set.Has(FieldScopes) {
		k.Scopes = p.Scopes
	}
	if p.Set.Has(FieldMetadata) {
		k.Metadata = p.Metadata
	}
	if p.Set.Has(FieldRatePolicy) {
		k.RatePolicy = p.RatePolicy
	}
	if p.Set.Has(FieldAllowedCIDRs) {
		k.AllowedCIDRs = p.AllowedCIDRs
	}
}

// Update applies p to a key. An empty Set changes nothing and returns the key.
// Errors: ErrInvalidArgument, ErrNotFound, ErrUnavailable.
func (s *Service) Update(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID, p Patch) (credential.Key, error) {
	if id == "" {
		return credential.Key{}, invalidf("key_id is required")
	}
	if err := s.validateAttributes(&p.Attributes, p.Set); err != nil {
		return credential.Key{}, err
	}
	var out credential.Key
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		k, err := tx.GetKey(ctx, tenant, kind, id)
		if err != nil {
			return notFound(err, kind, id)
		}
		if p.Set == 0 {
			out = k
			return nil
		}
		now := s.nowUTC()
		apply(&k, p)
		k.UpdateTime = now
		if err := tx.UpdateKey(ctx, k); err != nil {
			return err
		}
		out = k
		return tx.AppendEvent(ctx, event(k, credential.EventUpdated, now))
	})
	if err != nil {
		return credential.Key{}, fmt.Errorf("update key %s: %w", id, err)
	}
	return out, nil
}

// Rotate replaces an active issued key by a new one in one transaction. The
// new key inherits every attribute not overridden, and the old key's absolute
// expiry. Without a grace period the old key is revoked (SUPERSEDED) at once;
// with one it stays valid until then, cannot be rotated again, and expires.
// Errors: ErrNotFound, ErrFailedPrecondition (not active), ErrInvalidArgument,
// ErrUnavailable.
func (s *Service) Rotate(ctx context.Context, tenant credential.Tenant, id credential.KeyID, in RotateInput) (newKey credential.Key, secret string, oldKey credential.Key, err error) {
	if id == "" {
		return newKey, "", oldKey, invalidf("key_id is required")
	}
	if err := s.validateAttributes(&in.Attributes, in.Set); err != nil {
		return newKey, "", oldKey, err
	}
	if in.Grace < 0 || in.Grace > MaxTTLCeiling {
		return newKey, "", oldKey, invalidf("grace_period must be between 0s and %s", MaxTTLCeiling)
	}
	err = s.store.InTx(ctx, func(tx store.Tx) error {
		old, err := tx.GetKey(ctx, tenant, credential.KindIssued, id)
		if err != nil {
			return notFound(err, credential.KindIssued, id)
		}
		now := s.nowUTC()
		if old.EffectiveState(now) != credential.StateActive || old.SupersededBy != "" {
			return credential.Errorf(credential.ErrFailedPrecondition, "FAILED_PRECONDITION", "cannot rotate a non-active key")
		}
		nk := old
		nk.Metadata, nk.Scopes, nk.AllowedCIDRs = old.Metadata, old.Scopes, old.AllowedCIDRs
		apply(&nk, in.Patch)
		if in.Visibility != 0 {
			nk.Visibility = in.Visibility
		}
		nk.Status, nk.RevocationReason, nk.RevocationDescription = credential.StateActive, 0, ""
		nk.CreateTime, nk.UpdateTime, nk.LastUsedTime = now, now, time.Time{}
		nk.RequestID, nk.SupersededBy = "", ""
		if secret, err = s.mint(&nk, now); err != nil {
			return err
		}
		if err := tx.CreateKey(ctx, nk); err != nil {
			return err
		}
		if in.Grace > 0 {
			old.SupersededBy = nk.ID
			if end := now.Add(in.Grace); old.ExpireTime.IsZero() || end.Before(old.ExpireTime) {
				old.ExpireTime = end
			}
		} else {
			old.Status = credential.StateRevoked
			old.RevocationReason = credential.ReasonSuperseded
		}
		old.UpdateTime = now
		if err := tx.UpdateKey(ctx, old); err != nil {
			return err
		}
		if err := tx.AppendEvent(ctx, event(old, credential.EventRotated, now)); err != nil {
			return err
		}
		newKey, oldKey = nk, old
		return tx.AppendEvent(ctx, event(nk, credential.EventCreated, now))
	})
	if err != nil {
		return credential.Key{}, "", credential.Key{}, fmt.Errorf("rotate key %s: %w", id, err)
	}
	return newKey, secret, oldKey, nil
}

// mint gives k a fresh ID and credential in the configured format, with the
// prefix of k's visibility.
func (s *Service) mint(k *credential.Key, now time.Time) (string, error) {
	prefix := s.opts.Prefix
	if k.Visibility == credential.VisibilityPublic {
		if s.opts.PublicPrefix == "" {
			return "", invalidf("public keys need credentials.api_keys.prefix.public_current to be configured")
		}
		prefix = s.opts.PublicPrefix
	}
	k.Prefix, k.Version, k.SecretHash = prefix, string(s.opts.Format), nil
	if s.opts.Format == FormatV1 {
		k.ID = credential.KeyID(uuid.New().String())
		return apikey.NewV1(s.secrets, prefix, k.ID, now)
	}
	is, err := apikey.NewV2(prefix, s.rand)
	if err != nil {
		return "", err
	}
	k.ID = is.KeyID
	k.SecretHash = s.secrets.HashSecret(is.KeyID, is.Secret)
	return is.Token, nil
}

// Revoke revokes a key. The reason is required; a description is allowed only
// with PRIVILEGE_WITHDRAWN. Errors: ErrInvalidArgument, ErrNotFound,
// ErrConflict (already revoked), ErrUnavailable.
func (s *Service) Revoke(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID, reason credential.RevocationReason, description string) error {
	if id == "" {
		return invalidf("key_id is required")
	}
	switch {
	case reason == credential.ReasonUnspecified:
		return invalidf("reason is required")
	case reason > credential.ReasonPrivilegeWithdrawn:
		return invalidf("unknown revocation reason")
	case description != "" && reason != credential.ReasonPrivilegeWithdrawn:
		return invalidf("description is only allowed with REVOCATION_REASON_PRIVILEGE_WITHDRAWN")
	}
	if err := checkText("description", description, 1024); err != nil {
		return err
	}
	return s.revoke(ctx, tenant, kind, id, reason, description, false)
}

func (s *Service) revoke(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID, reason credential.RevocationReason, description string, idempotent bool) error {
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		k, err := tx.GetKey(ctx, tenant, kind, id)
		if err != nil {
			return notFound(err, kind, id)
		}
		if k.Status == credential.StateRevoked {
			if idempotent {
				return nil
			}
			return &credential.Error{Kind: credential.ErrConflict, Reason: "CONFLICT", Message: "key is already revoked",
				Metadata: map[string]string{"key_id": string(id)}}
		}
		now := s.nowUTC()
		k.Status, k.RevocationReason, k.RevocationDescription, k.UpdateTime = credential.StateRevoked, reason, description, now
		if err := tx.UpdateKey(ctx, k); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, event(k, credential.EventRevoked, now))
	})
	if err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	return nil
}

// Delete removes an imported key for good. Errors: ErrNotFound, ErrUnavailable.
func (s *Service) Delete(ctx context.Context, tenant credential.Tenant, id credential.KeyID) error {
	if id == "" {
		return invalidf("key_id is required")
	}
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		k, err := tx.GetKey(ctx, tenant, credential.KindImported, id)
		if err != nil {
			return notFound(err, credential.KindImported, id)
		}
		if err := tx.DeleteKey(ctx, tenant, credential.KindImported, id); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, event(k, credential.EventDeleted, s.nowUTC()))
	})
	if err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	return nil
}
