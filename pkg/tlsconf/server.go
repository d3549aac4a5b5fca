package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"
)

// ServerOptions configure a [Server].
type ServerOptions struct {
	// CertFile and KeyFile are the PEM certificate chain (leaf first) and
	// its private key (PKCS #8, PKCS #1 or SEC 1 EC). Both are required.
	CertFile, KeyFile string
	// ClientCAFile is the PEM bundle client certificates are verified
	// against; required when ClientAuth is request or require, and not
	// read when it is none.
	ClientCAFile string
	// ClientAuth is how client certificates are asked for; "" is none.
	ClientAuth ClientAuth
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13; 0 is TLS 1.2.
	MinVersion uint16
	// CheckInterval is how often, at most, the files are checked for
	// changes (on handshakes); 0 is [DefaultCheckInterval].
	CheckInterval time.Duration
	// Logger gets reloads and failed reloads (file names and certificate
	// serials, never key material); nil discards them.
	Logger *slog.Logger
	// Now is the clock that paces the checks (time.Now if nil).
	Now func() time.Time
}

// Server is the TLS side of one or more listeners, serving the certificate
// last loaded from its files (see the package documentation).
type Server struct {
	clientAuth tls.ClientAuthType
	minVersion uint16
	r          reloader[serverState]
}

// serverState is one loaded set of files.
type serverState struct {
	cert      *tls.Certificate
	clientCAs *x509.CertPool // nil when no client certificate is asked for
}

// NewServer loads the files of o. A missing or unusable file is an error
// naming the file (never quoting it).
func NewServer(o ServerOptions) (*Server, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("tlsconf: cert_file and key_file are required")
	}
	auth, err := o.ClientAuth.tlsClientAuth()
	if err != nil {
		return nil, err
	}
	if auth != tls.NoClientCert && o.ClientCAFile == "" {
		return nil, fmt.Errorf("tlsconf: client_auth %s needs a client_ca_file", o.ClientAuth)
	}
	minVersion, err := checkMinVersion(o.MinVersion)
	if err != nil {
		return nil, err
	}
	if o.CheckInterval < 0 {
		return nil, errors.New("tlsconf: negative check interval")
	}
	s := &Server{clientAuth: auth, minVersion: minVersion}
	files := []string{o.CertFile, o.KeyFile}
	if auth != tls.NoClientCert {
		files = append(files, o.ClientCAFile)
	}
	s.r = reloader[serverState]{
		what:     "server certificate",
		files:    files,
		load:     s.load,
		interval: o.CheckInterval,
		now:      o.Now,
		log:      o.Logger,
	}
	s.r.loaded = func(st *serverState, log *slog.Logger) {
		logCertificate(log, "tls: loaded server certificate", st.cert.Leaf, s.r.now())
	}
	if err := s.r.start(); err != nil {
		return nil, err
	}
	if auth == tls.NoClientCert && o.ClientCAFile != "" {
		s.r.log.Warn("tls: client_ca_file is ignored: client_auth is none, so no client certificate is asked for",
			slog.String("file", o.ClientCAFile))
	}
	return s, nil
}

func (s *Server) load(data [][]byte) (*serverState, error) {
	cert, err := loadKeyPair(s.r.files[0], s.r.files[1], data[0], data[1])
	if err != nil {
		return nil, err
	}
	st := &serverState{cert: cert}
	if len(data) > 2 {
		if st.clientCAs, err = loadPool(s.r.files[2], data[2]); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Config returns the configuration of one listener, offering exactly
// nextProtos by ALPN ("h2" for gRPC; "h2" and "http/1.1" for HTTP). Its
// GetConfigForClient hook serves each handshake from the current snapshot
// of the files, so fields set on the returned configuration other than its
// session ticket keys do not reach handshakes: set them through
// [ServerOptions].
func (s *Server) Config(nextProtos ...string) *tls.Config {
	l := &listener{s: s, nextProtos: slices.Clone(nextProtos)}
	return &tls.Config{
		MinVersion:         s.minVersion,
		NextProtos:         slices.Clone(nextProtos),
		GetConfigForClient: l.configForClient,
	}
}

// NotAfter returns when the certificate being served expires.
func (s *Server) NotAfter() time.Time {
	return s.r.current().cert.Leaf.NotAfter
}

// listener builds, once per snapshot, the configuration one listener's
// handshakes get.
type listener struct {
	s          *Server
	nextProtos []string
	built      atomic.Pointer[builtConfig]
}

type builtConfig struct {
	from *serverState
	cfg  *tls.Config
}

func (l *listener) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	st := l.s.r.current()
	if b := l.built.Load(); b != nil && b.from == st {
		return b.cfg, nil
	}
	b := &builtConfig{from: st, cfg: &tls.Config{
		Certificates: []tls.Certificate{*st.cert},
		ClientAuth:   l.s.clientAuth,
		ClientCAs:    st.clientCAs,
		MinVersion:   l.s.minVersion,
		NextProtos:   l.nextProtos,
	}}
	l.built.Store(b)
	return b.cfg, nil
}
