package apikey

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"unsafe"

	"github.com/talos-project/talos/pkg/credential"
)

// Layout of a v2 key: {prefix}_v2_{body}, body = 6 chunks of 11 base58 digits
// (key ID bytes 0-7, 8-15, secret bytes 0-7, 8-15, 16-23, 24-31, each read as a
// big-endian uint64) followed by 6 base58 digits of the CRC-32 (IEEE) of
// everything before them. See the package documentation.
const (
	v2Sep        = "_v2_"
	v2IDLen      = 16
	v2SecretLen  = 32
	v2RawLen     = v2IDLen + v2SecretLen                 // 48
	v2PayloadLen = v2RawLen / 8 * b58Chunk64             // 66
	v2BodyLen    = v2PayloadLen + b58Chunk32             // 72
	v2MinLen     = 1 + len(v2Sep) + v2BodyLen            // 77
	v2MaxLen     = MaxPrefixLen + len(v2Sep) + v2BodyLen // 92
)

// Issued is a newly minted key. Token is shown to the caller once and never
// stored; Secret is the part of a v2 key to pass to SecretSet.HashSecret and
// store only as that hash (nil for v1, whose checksum is recomputed instead).
// It logs with the key ID only.
type Issued struct {
	Token  string
	KeyID  credential.KeyID
	Secret []byte
}

// String prints the key ID only, so %v never prints the token or secret.
func (i Issued) String() string { return "apikey.Issued{KeyID: " + string(i.KeyID) + "}" }

// GoString is String, for %#v.
func (i Issued) GoString() string { return i.String() }

// LogValue implements slog.LogValuer: the token and secret never reach a log.
func (i Issued) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", string(i.KeyID)), slog.String("token", "[redacted]"))
}

// NewV2 mints a v2 key: a random UUIDv4 key ID and a 256-bit random secret,
// both read from rnd (crypto/rand.Reader when nil): 16 bytes for the key ID,
// whose version and variant bits it then sets, followed by 32 for the secret.
// KeyID is the canonical lowercase hyphenated UUID. The caller owns Secret.
//
// It returns an error wrapping credential.ErrInvalidArgument for an invalid
// prefix (see ValidPrefix), or the error of rnd.
func NewV2(prefix string, rnd io.Reader) (Issued, error) {
	if !ValidPrefix(prefix) {
		return Issued{}, errInvalidPrefixArg()
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	var raw [v2RawLen]byte
	if _, err := io.ReadFull(rnd, raw[:]); err != nil {
		return Issued{}, fmt.Errorf("apikey: read randomness: %w", err)
	}
	raw[6] = raw[6]&0x0f | 0x40 // version 4
	raw[8] = raw[8]&0x3f | 0x80 // RFC 9562 variant

	buf := make([]byte, len(prefix)+len(v2Sep)+v2BodyLen)
	n := copy(buf, prefix)
	n += copy(buf[n:], v2Sep)
	for i := 0; i < v2RawLen; i += 8 {
		putB58Uint64(buf[n:], binary.BigEndian.Uint64(raw[i:]))
		n += b58Chunk64
	}
	putB58Uint32(buf[n:], crc32.ChecksumIEEE(buf[:n]))

	var id [uuidLen]byte
	formatUUID(&id, (*[16]byte)(raw[:v2IDLen]))
	iss := Issued{
		Token:  string(buf),
		KeyID:  credential.KeyID(id[:]),
		Secret: append([]byte(nil), raw[v2IDLen:]...),
	}
	clear(raw[:])
	clear(buf)
	return iss, nil
}

// looksV2 reports whether token has the shape of a v2 key: a valid prefix,
// "_v2_" and exactly v2BodyLen base58 digits. It ignores the checksum.
func looksV2(token string) bool {
	if len(token) < v2MinLen || len(token) > v2MaxLen {
		return false
	}
	cut := len(token) - v2BodyLen - len(v2Sep)
	return token[cut:cut+len(v2Sep)] == v2Sep && ValidPrefix(token[:cut]) && isB58(token[cut+len(v2Sep):])
}

// parseV2 decodes a v2 key whose shape looksV2 has accepted into id and
// secret, checking every chunk, the checksum and the UUIDv4 bits. It does not
// allocate.
func parseV2(token string, id *[v2IDLen]byte, secret *[v2SecretLen]byte) error {
	body := token[len(token)-v2BodyLen:]
	var raw [v2RawLen]byte
	for i := 0; i < v2RawLen/8; i++ {
		v, ok := b58Uint(body[i*b58Chunk64:(i+1)*b58Chunk64], ^uint64(0))
		if !ok {
			return errEncoding
		}
		binary.BigEndian.PutUint64(raw[i*8:], v)
	}
	want, ok := b58Uint(body[v2PayloadLen:], uint64(^uint32(0)))
	if !ok {
		return errEncoding
	}
	if crcString(token[:len(token)-b58Chunk32]) != uint32(want) {
		clear(raw[:])
		return errChecksum
	}
	copy(id[:], raw[:v2IDLen])
	copy(secret[:], raw[v2IDLen:])
	clear(raw[:])
	if !isV4(id) {
		return errEncoding
	}
	return nil
}

// crcString is crc32.ChecksumIEEE(s) without copying s. The view of the
// string's bytes is read-only: crc32 never writes to its input.
func crcString(s string) uint32 {
	return crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(s), len(s)))
}
