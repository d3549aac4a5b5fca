// Package redis is the sidecar's shared cache (L2): a cache.Store on Redis,
// standalone or Cluster, through github.com/redis/go-redis/v9.
//
// Keys are binary (32-byte hashes the caller derived); they are stored as
// Options.KeyPrefix followed by the unpadded base64url encoding of the key
// (43 characters for 32 bytes). Values are stored as given and are never
// logged or put in errors.
//
// Store is safe for concurrent use. It imports pkg/cache, pkg/credential and
// go-redis only.
package redis

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/talos-project/talos/pkg/cache"
	"github.com/talos-project/talos/pkg/credential"
)

// Options configures a Store.
type Options struct {
	// Addrs lists host:port addresses: one for a standalone server (or a
	// proxy in front of a cluster), several for the nodes of a Redis
	// Cluster. Required.
	Addrs    []string
	Password string
	// DB selects the database of a standalone server; a cluster only has
	// DB 0.
	DB int
	// PoolSize and MinIdleConns size the connection pool (per node for a
	// cluster); zero keeps go-redis's defaults (10 per CPU, none idle).
	PoolSize, MinIdleConns int
	// Timeout bounds each dial, read and write, and how long a call waits
	// for a pooled connection; zero keeps go-redis's defaults (5s dial, 3s
	// read and write). A context deadline, when earlier, wins.
	Timeout time.Duration
	// ConnMaxIdleTime and ConnMaxLifetime recycle connections; zero keeps
	// go-redis's defaults (30 minutes idle, no maximum age).
	ConnMaxIdleTime, ConnMaxLifetime time.Duration
	// TLSConfig, when set, turns on TLS with it: RootCAs (nil: the system
	// roots), ServerName (empty: the host of each address) and, for a
	// Redis that requires client certificates, Certificates or
	// GetClientCertificate. A server that fails verification is never
	// used: the Store does not fall back to plaintext. Nil is plaintext.
	// New copies it.
	TLSConfig *tls.Config
	// DialTLS, when set instead of TLSConfig, dials every new connection
	// and completes its TLS handshake (pkg/tlsconf's Client.DialContext),
	// so that a rotated CA or client certificate is used from the next
	// connection on.
	DialTLS func(ctx context.Context, network, addr string) (net.Conn, error)
	// KeyPrefix is put before every key, to share a Redis between uses
	// (for instance "talos:verdict:").
	KeyPrefix string
}

// Store is a cache.Store on Redis. Its methods' errors wrap
// credential.ErrUnavailable and the go-redis or context error that caused
// them; Set also returns credential.ErrInvalidArgument for a TTL <= 0.
type Store struct {
	c      goredis.UniversalClient
	prefix string
}

var _ cache.Store = (*Store)(nil)

// New returns a Store for o. It does not connect: the first command does
// (see Ping). Missing addresses, a negative duration and a DB other than 0
// for a cluster are ErrInvalidArgument.
func New(o Options) (*Store, error) {
	u, err := ClientOptions(o)
	if err != nil {
		return nil, err
	}
	// One address gives a *goredis.Client, several a *goredis.ClusterClient.
	return NewFromClient(goredis.NewUniversalClient(u), o.KeyPrefix), nil
}

// ClientOptions are the go-redis options of o, as New uses them: one dial
// and one retry, the caller's deadline honoured, TLS as o says. Other users
// of the same Redis (the rate limiter) start from them. The errors are New's.
func ClientOptions(o Options) (*goredis.UniversalOptions, error) {
	switch {
	case len(o.Addrs) == 0:
		return nil, credential.Invalid("redis cache: at least one address is required")
	case o.Timeout < 0 || o.ConnMaxIdleTime < 0 || o.ConnMaxLifetime < 0:
		return nil, credential.Invalid("redis cache: durations must not be negative")
	case len(o.Addrs) > 1 && o.DB != 0:
		return nil, credential.Invalid("redis cache: a cluster has only DB 0")
	case o.TLSConfig != nil && o.DialTLS != nil:
		return nil, credential.Invalid("redis cache: set TLSConfig or DialTLS, not both")
	}
	u := &goredis.UniversalOptions{
		Addrs:           o.Addrs,
		Password:        o.Password,
		DB:              o.DB,
		PoolSize:        o.PoolSize,
		MinIdleConns:    o.MinIdleConns,
		DialTimeout:     o.Timeout,
		ReadTimeout:     o.Timeout,
		WriteTimeout:    o.Timeout,
		PoolTimeout:     o.Timeout,
		ConnMaxIdleTime: o.ConnMaxIdleTime,
		ConnMaxLifetime: o.ConnMaxLifetime,
		// A cache miss is cheap and a slow cache is not: dial once and
		// retry a command once (for a pooled connection the server
		// closed), instead of go-redis's 5 dials and 3 retries.
		DialerRetries: 1,
		MaxRetries:    1,
		// Honour the caller's deadline, not only Timeout.
		ContextTimeoutEnabled: true,
	}
	if o.DialTLS != nil {
		u.Dialer = o.DialTLS
	}
	if o.TLSConfig != nil {
		u.TLSConfig = o.TLSConfig.Clone()
		u.TLSConfig.MinVersion = max(u.TLSConfig.MinVersion, tls.VersionTLS12)
	}
	return u, nil
}

// NewFromClient returns a Store on an existing client, whose keys start with
// prefix. The Store owns c: Close closes it.
func NewFromClient(c goredis.UniversalClient, prefix string) *Store {
	return &Store{c: c, prefix: prefix}
}

var enc = base64.RawURLEncoding

// key returns the Redis key of k: the prefix, then base64url(k).
func (s *Store) key(k string) string {
	b := make([]byte, 0, len(s.prefix)+enc.EncodedLen(len(k)))
	b = append(b, s.prefix...)
	b = enc.AppendEncode(b, []byte(k))
	return string(b)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("redis cache %s: %w: %w", op, credential.ErrUnavailable, err)
}

// Get returns the value under key. A missing or expired key is (nil, false,
// nil). The returned slice is the caller's.
func (s *Store) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := s.c.Get(ctx, s.key(key)).Bytes()
	switch {
	case err == nil:
		return v, true, nil
	case errors.Is(err, goredis.Nil):
		return nil, false, nil
	}
	return nil, false, unavailable("get", err)
}

// Set stores val under key for ttl (SET with PX, or EX for a whole number of
// seconds); a ttl under a millisecond counts as one. A ttl <= 0 is
// ErrInvalidArgument: a cached verdict must expire.
func (s *Store) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return credential.Invalid("redis cache set: ttl must be positive")
	}
	ttl = max(ttl, time.Millisecond)
	if err := s.c.Set(ctx, s.key(key), val, ttl).Err(); err != nil {
		return unavailable("set", err)
	}
	return nil
}

// Delete removes keys. They are deleted by one pipelined DEL per key rather
// than a single multi-key DEL, which Redis Cluster refuses (CROSSSLOT) when
// the keys hash to different slots; it is still one round trip per node.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	switch len(keys) {
	case 0:
		return nil
	case 1:
		if err := s.c.Del(ctx, s.key(keys[0])).Err(); err != nil {
			return unavailable("delete", err)
		}
		return nil
	}
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, s.key(k))
		}
		return nil
	})
	if err != nil {
		return unavailable("delete", err)
	}
	return nil
}

// Ping checks that Redis answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the client. Later calls fail with ErrUnavailable; a second
// Close returns an error too.
func (s *Store) Close() error {
	return s.c.Close()
}
