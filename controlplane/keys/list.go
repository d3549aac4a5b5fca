package keys

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

// ListInput is one page request.
type ListInput struct {
	PageSize  int
	PageToken string
	// Filter is the AIP-160 subset: actor_id="..." and/or status=KEY_STATUS_*,
	// joined with AND.
	Filter string
}

// List returns one page of keys ordered by key ID and the token of the next
// page ("" on the last). Errors: ErrInvalidArgument (bad filter or page
// token), ErrUnavailable.
func (s *Service) List(ctx context.Context, tenant credential.Tenant, kind credential.Kind, in ListInput) ([]credential.Key, string, error) {
	f, err := ParseFilter(in.Filter)
	if err != nil {
		return nil, "", err
	}
	size := in.PageSize
	if size <= 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	var after credential.KeyID
	if in.PageToken != "" {
		c, err := s.pager.decode(in.PageToken, s.now())
		if err != nil {
			return nil, "", err
		}
		if c.Tenant != tenant {
			return nil, "", invalidf("page token network mismatch")
		}
		if c.Kind != kind || c.Filter != in.Filter {
			return nil, "", invalidf("page token does not match this request")
		}
		after = c.After
	}
	sf := store.Filter{ActorID: f.ActorID, After: after, Limit: size + 1}
	switch f.Status {
	case credential.StateActive, credential.StateExpired:
		sf.Status = credential.StateActive
	case credential.StateRevoked:
		sf.Status = credential.StateRevoked
	}
	now := s.now()
	var page []credential.Key
	// Expiry is computed, not stored, so a status filter on ACTIVE or
	// EXPIRED may drop rows; keep reading until the page is full.
	for {
		ks, err := s.store.ListKeys(ctx, tenant, kind, sf)
		if err != nil {
			return nil, "", err
		}
		for _, k := range ks {
			if f.Status == 0 || k.EffectiveState(now) == f.Status {
				page = append(page, k)
			}
		}
		if len(ks) < sf.Limit || len(page) > size {
			break
		}
		sf.After = ks[len(ks)-1].ID
	}
	if len(page) <= size {
		return page, "", nil
	}
	page = page[:size]
	tok, err := s.pager.encode(cursor{Tenant: tenant, Kind: kind, Filter: in.Filter, After: page[size-1].ID})
	if err != nil {
		return nil, "", err
	}
	return page, tok, nil
}

// Filter is a parsed list filter.
type Filter struct {
	ActorID string
	Status  credential.State
}

// ParseFilter parses the AIP-160 subset Ory Talos accepts: clauses
// `actor_id="..."` and `status=KEY_STATUS_ACTIVE|REVOKED|EXPIRED` joined by
// AND. Unknown fields, OR, duplicate fields and empty clauses are
// ErrInvalidArgument. (Unlike Ory Talos, a status filter needs no actor_id.)
func ParseFilter(s string) (Filter, error) {
	var f Filter
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	if len(s) > 1024 {
		return f, invalidf("filter is too long")
	}
	seen := map[string]bool{}
	for _, clause := range splitAnd(s) {
		clause = strings.TrimSpace(clause)
		name, value, ok := strings.Cut(clause, "=")
		if !ok {
			return f, invalidf("invalid filter clause %q", clause)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if seen[name] {
			return f, invalidf("duplicate filter field %q", name)
		}
		seen[name] = true
		switch name {
		case "actor_id":
			v, ok := unquote(value)
			if !ok || v == "" {
				return f, invalidf("actor_id filter needs a quoted, non-empty value")
			}
			f.ActorID = v
		case "status":
			v, _ := unquote(value)
			switch v {
			case "KEY_STATUS_ACTIVE":
				f.Status = credential.StateActive
			case "KEY_STATUS_REVOKED":
				f.Status = credential.StateRevoked
			case "KEY_STATUS_EXPIRED":
				f.Status = credential.StateExpired
			default:
				return f, invalidf("unknown status %q in filter", v)
			}
		default:
			return f, invalidf("unknown filter field %q", name)
		}
	}
	return f, nil
}

// splitAnd splits on the keyword AND outside double quotes; a clause holding
// OR (outside quotes) is left whole and rejected by its parser.
func splitAnd(s string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && inQuote:
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case !inQuote && strings.HasPrefix(s[i:], " AND "):
			out = append(out, s[start:i])
			start = i + len(" AND ")
			i = start - 1
		}
	}
	return append(out, s[start:])
}

func unquote(v string) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v, false
	}
	inner := v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '\\' && i+1 < len(inner) {
			i++
			c = inner[i]
		} else if c == '"' {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// cursor is the plaintext of a page token.
type cursor struct {
	Tenant credential.Tenant `json:"n"`
	Kind   credential.Kind   `json:"k"`
	Filter string            `json:"f,omitempty"`
	After  credential.KeyID  `json:"a"`
}

const cursorLabel = "talos/pagination/v1/cursor-key"

// pager seals cursors with XChaCha20-Poly1305 under a subkey of the HMAC
// secret, so page tokens are opaque and tamper-proof; tokens sealed under a
// retired secret still open until it expires.
type pager struct{ secrets *apikey.SecretSet }

func newPager(s *apikey.SecretSet) *pager { return &pager{secrets: s} }

func (p *pager) encode(c cursor) (string, error) {
	aead, err := chacha20poly1305.NewX(p.secrets.Derive(cursorLabel))
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, nil)), nil
}

var errBadPageToken = invalidf("invalid page token")

func (p *pager) decode(tok string, now time.Time) (cursor, error) {
	if len(tok) > 4096 {
		return cursor{}, errBadPageToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return cursor{}, errBadPageToken
	}
	for _, key := range p.secrets.DeriveAll(cursorLabel, now) {
		var aead cipher.AEAD
		if aead, err = chacha20poly1305.NewX(key); err != nil {
			return cursor{}, err
		}
		nonce, sealed := raw[:aead.NonceSize()], raw[aead.NonceSize():]
		plain, err := aead.Open(nil, nonce, sealed, nil)
		if err != nil {
			continue
		}
		var c cursor
		if json.Unmarshal(plain, &c) != nil {
			return cursor{}, errBadPageToken
		}
		return c, nil
	}
	return cursor{}, errBadPageToken
}
