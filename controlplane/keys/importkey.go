package keys

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// Import stores the hash of a key minted elsewhere (Stripe, GitHub, an old
// system) so that Talos verifies it. Keys shorter or more guessable than
// Options.Imported allows are ErrInvalidArgument. Strings that would route as an issued key
// are refused with ErrConflict, derived-token shapes with
// ErrFailedPrecondition; a key imported twice is ErrConflict. A repeated
// RequestID returns the key created first.
func (s *Service) Import(ctx context.Context, tenant credential.Tenant, in ImportInput) (credential.Key, error) {
	k, err := s.prepareImport(tenant, &in)
	if err != nil {
		return credential.Key{}, err
	}
	if in.RequestID != "" {
		if prev, err := s.store.FindByRequestID(ctx, tenant, credential.KindImported, in.RequestID); err == nil {
			return prev, nil
		} else if !errors.Is(err, credential.ErrNotFound) {
			return credential.Key{}, err
		}
	}
	err = s.store.InTx(ctx, func(tx store.Tx) error { return s.createImported(ctx, tx, k, in.RawKey) })
	if errors.Is(err, credential.ErrConflict) {
		if in.RequestID != "" {
			if prev, ferr := s.store.FindByRequestID(ctx, tenant, credential.KindImported, in.RequestID); ferr == nil {
				return prev, nil
			}
		}
		return credential.Key{}, errAlreadyImported
	}
	if err != nil {
		return credential.Key{}, fmt.Errorf("import key: %w", err)
	}
	return k, nil
}

var (
	errIssuedShape        = credential.Errorf(credential.ErrConflict, "CONFLICT", "format conflicts with issued api key pattern")
	errIssuedShapeInBatch = credential.Errorf(credential.ErrFailedPrecondition, "FAILED_PRECONDITION", "format conflicts with issued api key pattern")
)

var errAlreadyImported = &credential.Error{Kind: credential.ErrConflict, Reason: "API_KEY_EXISTS", Message: "key already imported"}

// prepareImport validates in and builds the key to store (without touching
// the store).
func (s *Service) prepareImport(tenant credential.Tenant, in *ImportInput) (credential.Key, error) {
	if in.RawKey == "" {
		return credential.Key{}, invalidf("raw_key is required")
	}
	if len(in.RawKey) > MaxCredentialBytes {
		return credential.Key{}, invalidf("raw_key must be at most %d bytes", MaxCredentialBytes)
	}
	if err := checkText("raw_key", in.RawKey, MaxCredentialBytes); err != nil {
		return credential.Key{}, err
	}
	if strings.TrimSpace(in.RawKey) != in.RawKey {
		return credential.Key{}, invalidf("raw_key must not start or end with white space")
	}
	if token.LooksJWT(in.RawKey) || token.LooksMacaroon(in.RawKey, s.derivedOpts.MacaroonPrefixes) {
		return credential.Key{}, credential.Errorf(credential.ErrFailedPrecondition, "FAILED_PRECONDITION", "format conflicts with derived token pattern")
	}
	if apikey.LooksIssued(in.RawKey) {
		return credential.Key{}, errIssuedShape
	}
	if err := s.opts.Imported.check(in.RawKey); err != nil {
		return credential.Key{}, err
	}
	if err := s.validateCreate(&in.IssueInput); err != nil {
		return credential.Key{}, err
	}
	now := s.nowUTC()
	k := newKey(tenant, credential.KindImported, in.IssueInput, now)
	k.ID = s.importedIDs(tenant, in.RawKey)[0]
	return k, nil
}

// ImportOutcome is one item of a batch import: the key or why it failed.
type ImportOutcome struct {
	Key credential.Key
	Err error
}

// BatchImport imports 1..MaxBatchImport keys. Each item is validated alone;
// duplicates within the batch and keys that already exist fail as ErrConflict
// without failing the others. The error is non-nil only when the batch itself
// is invalid or the store fails.
func (s *Service) BatchImport(ctx context.Context, tenant credential.Tenant, ins []ImportInput) ([]ImportOutcome, error) {
	if len(ins) == 0 {
		return nil, invalidf("requests must not be empty")
	}
	if len(ins) > MaxBatchImport {
		return nil, invalidf("maximum %d keys per batch", MaxBatchImport)
	}
	out := make([]ImportOutcome, len(ins))
	first := map[credential.KeyID]int{}
	firstReq := map[string]int{}
	var ids []credential.KeyID
	for i := range ins {
		k, err := s.prepareImport(tenant, &ins[i])
		if err == errIssuedShape {
			err = errIssuedShapeInBatch // Talos answers FAILED_PRECONDITION per item
		}
		if err != nil {
			out[i].Err = err
			continue
		}
		if j, dup := first[k.ID]; dup {
			out[i].Err = credential.Errorf(credential.ErrConflict, "API_KEY_EXISTS", fmt.Sprintf("duplicate of item %d in this batch", j))
			continue
		}
		if j, dup := firstReq[k.RequestID]; dup && k.RequestID != "" {
			out[i].Err = credential.Errorf(credential.ErrConflict, "CONFLICT", fmt.Sprintf("request_id duplicates item %d in this batch", j))
			continue
		}
		first[k.ID] = i
		if k.RequestID != "" {
			firstReq[k.RequestID] = i
		}
		out[i].Key = k
		ids = append(ids, k.ID)
	}
	existing, err := s.store.GetKeys(ctx, tenant, credential.KindImported, ids)
	if err != nil {
		return nil, err
	}
	for _, e := range existing {
		i := first[e.ID]
		out[i] = ImportOutcome{Err: errAlreadyImported}
	}
	var todo []int
	for i := range out {
		if out[i].Err == nil {
			todo = append(todo, i)
		}
	}
	// One transaction for the whole batch; if a concurrent writer makes it
	// conflict, fall back to one transaction per item so that only the
	// conflicting items fail.
	err = s.store.InTx(ctx, func(tx store.Tx) error {
		for _, i := range todo {
			if err := s.createImported(ctx, tx, out[i].Key, ins[i].RawKey); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, credential.ErrConflict) {
		for _, i := range todo {
			err := s.store.InTx(ctx, func(tx store.Tx) error { return s.createImported(ctx, tx, out[i].Key, ins[i].RawKey) })
			if errors.Is(err, credential.ErrConflict) {
				out[i] = ImportOutcome{Err: errAlreadyImported}
			} else if err != nil {
				return nil, fmt.Errorf("batch import: %w", err)
			}
		}
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("batch import: %w", err)
	}
	return out, nil
}

func (s *Service) createImported(ctx context.Context, tx store.Tx, k credential.Key, raw string) error {
	// With keyed import hashes, raw may be stored under the ID of a retired
	// secret; it is the same key, so importing it again is a conflict.
	for _, id := range s.importedIDs(k.Tenant, raw)[1:] {
		_, err := tx.GetKey(ctx, k.Tenant, credential.KindImported, id)
		if err == nil {
			return errAlreadyImported
		}
		if !errors.Is(err, credential.ErrNotFound) {
			return err
		}
	}
	if err := tx.CreateKey(ctx, k); err != nil {
		return err
	}
	return tx.AppendEvent(ctx, event(k, credential.EventCreated, k.CreateTime))
}
