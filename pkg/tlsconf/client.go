package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc/credentials"
)

// ClientOptions configure a [Client].
type ClientOptions struct {
	// CAFile is the PEM bundle server certificates are verified against;
	// "" is the system pool.
	CAFile string
	// CertFile and KeyFile are the optional client certificate chain and
	// key: both or neither.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry; "" is
	// the dialled host.
	ServerName string
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13; 0 is TLS 1.2.
	MinVersion uint16
	// CheckInterval, Logger and Now are as in [ServerOptions].
	CheckInterval time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

// Client is the TLS side of outgoing connections, using the CA bundle and
// client certificate last loaded from its files (see the package
// documentation).
type Client struct {
	o ClientOptions
	r reloader[clientState]
}

type clientState struct {
	cfg  *tls.Config // never handed out: callers get clones
	cert *tls.Certificate
}

// NewClient loads the files of o. A missing or unusable file is an error
// naming the file (never quoting it).
func NewClient(o ClientOptions) (*Client, error) {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("tlsconf: a client certificate needs both cert_file and key_file")
	}
	minVersion, err := checkMinVersion(o.MinVersion)
	if err != nil {
		return nil, err
	}
	if o.CheckInterval < 0 {
		return nil, errors.New("tlsconf: negative check interval")
	}
	o.MinVersion = minVersion
	c := &Client{o: o}
	var files []string
	if o.CAFile != "" {
		files = append(files, o.CAFile)
	}
	if o.CertFile != "" {
		files = append(files, o.CertFile, o.KeyFile)
	}
	c.r = reloader[clientState]{
		what:     "client TLS",
		files:    files,
		load:     c.load,
		interval: o.CheckInterval,
		now:      o.Now,
		log:      o.Logger,
	}
	c.r.loaded = func(st *clientState, log *slog.Logger) {
		if st.cert != nil {
			logCertificate(log, "tls: loaded client certificate", st.cert.Leaf, c.r.now())
		} else if len(files) > 0 {
			log.Info("tls: loaded CA file")
		}
	}
	if err := c.r.start(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) load(data [][]byte) (*clientState, error) {
	st := &clientState{cfg: &tls.Config{ServerName: c.o.ServerName, MinVersion: c.o.MinVersion}}
	if c.o.CAFile != "" {
		pool, err := loadPool(c.o.CAFile, data[0])
		if err != nil {
			return nil, err
		}
		st.cfg.RootCAs = pool
		data = data[1:]
	}
	if c.o.CertFile != "" {
		cert, err := loadKeyPair(c.o.CertFile, c.o.KeyFile, data[0], data[1])
		if err != nil {
			return nil, err
		}
		st.cert = cert
		st.cfg.Certificates = []tls.Certificate{*cert}
	}
	return st, nil
}

// Config returns a copy of the current configuration. It does not change
// when the files do: take a new one for each connection (as [Client.DialContext]
// does), or at least for each reconnection.
func (c *Client) Config() *tls.Config {
	return c.r.current().cfg.Clone()
}

// NotAfter returns when the client certificate expires, or the zero time
// without one.
func (c *Client) NotAfter() time.Time {
	if st := c.r.current(); st.cert != nil {
		return st.cert.Leaf.NotAfter
	}
	return time.Time{}
}

// DialContext dials addr and completes a TLS handshake with the current
// configuration, verifying the server as the dialled host unless
// ServerName is set. Its signature fits go-redis's Options.Dialer, so each
// new Redis connection sees rotated files.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := tls.Dialer{Config: c.Config()}
	return d.DialContext(ctx, network, addr)
}

// TransportCredentials returns gRPC transport credentials whose every
// handshake uses the current configuration, so a long-lived
// grpc.ClientConn picks rotations up when it reconnects. Each handshake is
// that of credentials.NewTLS, whose AuthInfo (credentials.TLSInfo) it
// returns. The credentials cannot accept connections.
func (c *Client) TransportCredentials() credentials.TransportCredentials {
	return &transportCredentials{c: c, serverName: c.o.ServerName}
}

type transportCredentials struct {
	c          *Client
	serverName string
}

var _ credentials.TransportCredentials = (*transportCredentials)(nil)

func (t *transportCredentials) ClientHandshake(ctx context.Context, authority string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// credentials.NewTLS verifies the server as authority, which grpc takes
	// from Info().ServerName unless a resolver says otherwise; a configured
	// name always wins.
	if t.serverName != "" {
		authority = t.serverName
	}
	return credentials.NewTLS(t.c.r.current().cfg).ClientHandshake(ctx, authority, rawConn)
}

func (t *transportCredentials) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsconf: client transport credentials cannot accept connections")
}

func (t *transportCredentials) Info() credentials.ProtocolInfo {
	info := credentials.NewTLS(t.c.r.current().cfg).Info()
	info.ServerName = t.serverName
	return info
}

func (t *transportCredentials) Clone() credentials.TransportCredentials {
	clone := *t
	return &clone
}

func (t *transportCredentials) OverrideServerName(name string) error {
	t.serverName = name
	return nil
}
