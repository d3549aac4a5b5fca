package apikey

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// Versions of the issued-key formats, as stored in credential.Key.Version.
const (
	VersionV1 = "v1"
	VersionV2 = "v2"
)

// Errors of Parse. Each wraps credential.ErrMalformed and carries no part of
// the credential; returning one does not allocate.
var (
	errShape    = fmt.Errorf("apikey: not an issued key: %w", credential.ErrMalformed)
	errEncoding = fmt.Errorf("apikey: invalid key encoding: %w", credential.ErrMalformed)
	errChecksum = fmt.Errorf("apikey: key checksum mismatch: %w", credential.ErrMalformed)
)

// Parsed is what Parse reads from an issued key without any secret.
type Parsed struct {
	Version string // VersionV1 or VersionV2
	Prefix  string
	KeyID   credential.KeyID // canonical lowercase UUID
	// Secret is the 32-byte random secret of a v2 key (nil for v1); verify it
	// with SecretSet.MatchSecret. The caller owns it.
	Secret []byte
	// Created is the creation time embedded in a v1 key (zero for v2), in
	// whole seconds, UTC.
	Created time.Time
}

// String omits the secret, so %v never prints it.
func (p Parsed) String() string {
	return "apikey.Parsed{" + p.Version + " " + p.Prefix + " " + string(p.KeyID) + "}"
}

// GoString is String, for %#v.
func (p Parsed) GoString() string { return p.String() }

// LogValue implements slog.LogValuer: the secret never reaches a log.
func (p Parsed) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("version", p.Version),
		slog.String("prefix", p.Prefix),
		slog.String("key_id", string(p.KeyID)),
	)
}

// Parse reads an issued key of either format without the HMAC secret.
//
// For v2 it checks the shape, every chunk, the CRC-32 checksum and the UUIDv4
// bits, so typos and garbage fail here. For v1 it checks the shape and that
// the identifier decodes to "<seconds>:<uuid>", as Talos's routing does; it
// does not check the HMAC checksum (SecretSet.CheckV1 does).
//
// It does not check the prefix against the configured ones. Every error wraps
// credential.ErrMalformed and carries no part of token; verification should
// answer credential.ErrNotFound for it, so that a bad checksum, an unknown key
// and another tenant's key look the same. A v2 parse makes two small
// allocations (the key ID and the secret).
func Parse(token string) (Parsed, error) {
	if looksV2(token) {
		var id [v2IDLen]byte
		var secret [v2SecretLen]byte
		if err := parseV2(token, &id, &secret); err != nil {
			return Parsed{}, err
		}
		var idText [uuidLen]byte
		formatUUID(&idText, &id)
		p := Parsed{
			Version: VersionV2,
			Prefix:  token[:len(token)-v2BodyLen-len(v2Sep)],
			KeyID:   credential.KeyID(idText[:]),
			Secret:  append([]byte(nil), secret[:]...),
		}
		clear(secret[:])
		return p, nil
	}
	prefix, ident, _, ok := splitV1(token)
	if !ok {
		return Parsed{}, errShape
	}
	var dec [v1MaxIdentBytes]byte
	secs, idAt, ok := decodeV1Ident(&dec, ident)
	if !ok {
		return Parsed{}, errEncoding
	}
	return Parsed{
		Version: VersionV1,
		Prefix:  prefix,
		KeyID:   credential.KeyID(dec[idAt : idAt+uuidLen]),
		Created: time.Unix(secs, 0).UTC(),
	}, nil
}

// LooksIssued reports whether s has the shape of an issued key: a v2 key
// (valid prefix, "_v2_", 72 base58 digits), whatever its checksum, or a v1 key
// whose identifier decodes to "<seconds>:<uuid>" (Talos's routing rule).
//
// Verification routes such strings to the issued-key path and everything else
// to the imported-key lookup; import refuses them (Talos answers 409), so an
// imported key can never shadow an issued one. It does not allocate.
func LooksIssued(s string) bool {
	if looksV2(s) {
		return true
	}
	_, ident, _, ok := splitV1(s)
	if !ok {
		return false
	}
	var dec [v1MaxIdentBytes]byte
	_, _, ok = decodeV1Ident(&dec, ident)
	return ok
}
