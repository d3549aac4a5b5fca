package keys

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

const sealLabel = "talos/signing-keys/v1/seal-key"

// signingKeys holds the JWT signing keys of the default tenant: either the
// configured ones (fixed for the life of the process) or the generated ones
// kept sealed in the store, reloaded when a token names a kid we do not know
// (another replica rotated) and by Run.
type signingKeys struct {
	s          *Service
	configured []token.SigningKey
	currentKID string

	mu       sync.RWMutex
	signer   *token.Signer
	loadedAt time.Time
}

// signer returns the current signer, loading (and on first start generating)
// the keys when there is none yet.
func (k *signingKeys) get(ctx context.Context) (*token.Signer, error) {
	k.mu.RLock()
	sg := k.signer
	k.mu.RUnlock()
	if sg != nil {
		return sg, nil
	}
	return k.reload(ctx, true)
}

// refresh reloads stored keys at most once per minBackoff, for unknown kids.
func (k *signingKeys) refresh(ctx context.Context) {
	const minBackoff = 5 * time.Second
	k.mu.RLock()
	recent := k.s.now().Sub(k.loadedAt) < minBackoff
	k.mu.RUnlock()
	if len(k.configured) == 0 && !recent {
		_, _ = k.reload(ctx, false)
	}
}

func (k *signingKeys) reload(ctx context.Context, generate bool) (*token.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.s.now()
	if len(k.configured) > 0 {
		if k.signer == nil {
			sg, err := token.NewSigner(k.configured, k.currentKID)
			if err != nil {
				return nil, fmt.Errorf("signing keys: %w", err)
			}
			k.signer, k.loadedAt = sg, now
		}
		return k.signer, nil
	}
	keys, err := k.load(ctx)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 && generate {
		if err := k.s.createSigningKey(ctx, 1, "EdDSA"); err != nil && !errors.Is(err, credential.ErrConflict) {
			return nil, err
		}
		if keys, err = k.load(ctx); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("signing keys: none stored")
	}
	sg, err := token.NewSigner(keys, "")
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	k.signer, k.loadedAt = sg, now
	return sg, nil
}

// load reads and unseals the stored keys, newest generation first, so that
// the signer's current key (the first not retired) is the newest.
func (k *signingKeys) load(ctx context.Context) ([]token.SigningKey, error) {
	recs, err := k.s.store.ListSigningKeys(ctx, credential.DefaultTenant)
	if err != nil {
		return nil, err
	}
	slices.Reverse(recs)
	now := k.s.now()
	var out []token.SigningKey
	for _, r := range recs {
		if !r.NotAfter.IsZero() && !now.Before(r.NotAfter) {
			continue // retired and past publication
		}
		sk, err := k.s.unseal(r, now)
		if err != nil {
			return nil, err
		}
		out = append(out, sk)
	}
	return out, nil
}

// createSigningKey generates a key of alg and stores it, sealed, as
// generation gen. A concurrent replica doing the same makes it ErrConflict.
func (s *Service) createSigningKey(ctx context.Context, gen int64, alg string) error {
	sk, err := token.GenerateKey(alg, s.rand)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	rec, err := s.seal(sk, gen)
	if err != nil {
		return err
	}
	return s.store.InTx(ctx, func(tx store.Tx) error { return tx.CreateSigningKey(ctx, rec) })
}

// RotateSigningKey makes a new generated key of alg (EdDSA, RS256, ES256)
// current. The previous keys stay published (and accepted) until every
// token they signed has expired: MaxTTL plus the clock skew from now. It
// returns the new key ID. With configured keys it is ErrFailedPrecondition:
// rotate those in the configuration.
func (s *Service) RotateSigningKey(ctx context.Context, alg string) (string, error) {
	if len(s.signing.configured) > 0 {
		return "", credential.Errorf(credential.ErrFailedPrecondition, "FAILED_PRECONDITION", "signing keys come from the configuration; rotate them there")
	}
	sk, err := token.GenerateKey(alg, s.rand)
	if err != nil {
		return "", credential.Invalid("generate signing key: " + err.Error())
	}
	now := s.nowUTC()
	recs, err := s.store.ListSigningKeys(ctx, credential.DefaultTenant)
	if err != nil {
		return "", err
	}
	// A concurrent rotation makes the insert of the same generation
	// ErrConflict, so at most one of them wins.
	err = s.store.InTx(ctx, func(tx store.Tx) error {
		var next int64 = 1
		for _, r := range recs {
			next = max(next, r.Generation+1)
			if r.NotAfter.IsZero() {
				if err := tx.RetireSigningKey(ctx, credential.DefaultTenant, r.Generation, now.Add(s.opts.MaxTTL+s.opts.ClockSkew)); err != nil {
					return err
				}
			}
		}
		rec, err := s.seal(sk, next)
		if err != nil {
			return err
		}
		return tx.CreateSigningKey(ctx, rec)
	})
	if err != nil {
		return "", fmt.Errorf("rotate signing key: %w", err)
	}
	_, err = s.signing.reload(ctx, false)
	return sk.ID, err
}

// seal encrypts a private key with XChaCha20-Poly1305 under a subkey of the
// current HMAC secret, bound to its key ID.
func (s *Service) seal(sk token.SigningKey, gen int64) (store.SigningKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(sk.Key)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("seal signing key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(s.secrets.Derive(sealLabel))
	if err != nil {
		return store.SigningKey{}, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(der)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return store.SigningKey{}, err
	}
	return store.SigningKey{
		Tenant: credential.DefaultTenant, Generation: gen, ID: sk.ID, Algorithm: sk.Algorithm,
		Sealed: aead.Seal(nonce, nonce, der, []byte(sk.ID)), CreateTime: s.nowUTC(),
	}, nil
}

// unseal opens a stored key with the subkey of any active HMAC secret.
func (s *Service) unseal(r store.SigningKey, now time.Time) (token.SigningKey, error) {
	return unseal(s.secrets, r, now)
}

// CheckSigningKeys opens every stored signing key of the default tenant that
// is still in use at now (the ones Service would load) with secrets, and
// returns how many it opened. A key no active secret opens is an error that
// wraps ErrSecretMismatch: the database was written under another HMAC
// secret. `talos restore` runs it on a backup before installing it.
func CheckSigningKeys(ctx context.Context, st store.Store, secrets *apikey.SecretSet, now time.Time) (int, error) {
	recs, err := st.ListSigningKeys(ctx, credential.DefaultTenant)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if !r.NotAfter.IsZero() && !now.Before(r.NotAfter) {
			continue
		}
		if _, err := unseal(secrets, r, now); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// ErrSecretMismatch is the error of a sealed signing key that none of the
// configured HMAC secrets opens.
var ErrSecretMismatch = errors.New("cannot be opened with any configured HMAC secret")

func unseal(secrets *apikey.SecretSet, r store.SigningKey, now time.Time) (token.SigningKey, error) {
	for _, key := range secrets.DeriveAll(sealLabel, now) {
		aead, err := chacha20poly1305.NewX(key)
		if err != nil {
			return token.SigningKey{}, err
		}
		if len(r.Sealed) < aead.NonceSize() {
			break
		}
		der, err := aead.Open(nil, r.Sealed[:aead.NonceSize()], r.Sealed[aead.NonceSize():], []byte(r.ID))
		if err != nil {
			continue
		}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return token.SigningKey{}, fmt.Errorf("signing key %s: %w", r.ID, err)
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return token.SigningKey{}, fmt.Errorf("signing key %s: not a signer", r.ID)
		}
		return token.SigningKey{ID: r.ID, Algorithm: r.Algorithm, Key: signer, NotAfter: r.NotAfter}, nil
	}
	return token.SigningKey{}, fmt.Errorf("signing key %s: %w", r.ID, ErrSecretMismatch)
}
