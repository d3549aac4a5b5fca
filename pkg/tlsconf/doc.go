// Package tlsconf builds the TLS configurations of every Talos listener and
// of its clients (the sidecar's upstream connection, Redis) from PEM files
// that are re-read when they change on disk, so that a certificate rotated
// by cert-manager (or any tool that replaces the files) takes effect without
// a restart and without failing a request.
//
// # What is reloaded, and when
//
// A [Server] re-reads its certificate, key and client CA bundle; a [Client]
// its CA bundle and client certificate and key. The files are checked on the
// handshake path, at most once per CheckInterval ([DefaultCheckInterval],
// ten seconds, unless set): the goroutine that finds the interval elapsed
// stats the files while concurrent handshakes go on with the current
// configuration, never waiting for it. A check compares each file's size,
// modification time and identity (device and inode; [os.Stat] follows
// symlinks, so the kubelet's swap of a secret volume's ..data link counts as
// a change) and, when any differs, re-reads the files and compares a hash of
// their contents: a touched but unchanged file is not reloaded.
//
// A new set of files is used only once all of it parses and the key matches
// the certificate. Until then (a rotation written file by file, a file
// missing or truncated) the last good configuration keeps being served: the
// failure is logged once per distinct set of contents and the files are read
// again on every later check until they load. Nothing after a good load ever
// leaves a listener without a certificate. An expired (or not yet valid)
// certificate is loaded all the same, with a warning: refusing it would take
// the listener down, and peers reject it anyway.
//
// What is not reloaded: a rotated server certificate reaches a client on its
// next handshake. Connections already established (HTTP keep-alive, a gRPC
// ClientConn's HTTP/2 connection, a resumed session) keep the session they
// negotiated until they reconnect. Likewise a [Client] applies a rotation to
// the connections it dials afterwards. The options (file names, client
// authentication, minimum version) are fixed at construction.
//
// # Why GetConfigForClient
//
// [Server.Config] returns a configuration whose GetConfigForClient hook
// hands crypto/tls the current snapshot (certificate, client CAs, client
// authentication mode, minimum version) for each handshake, rather than
// only a GetCertificate hook: the client CA pool has to rotate along with
// the certificates, and crypto/tls itself then verifies client chains
// against it, so [tls.ConnectionState.VerifiedChains] is filled and nothing
// here verifies a certificate by hand. On resumption crypto/tls checks a
// session's verified chains against the snapshot's pool, so a client whose
// CA has been rotated out falls back to a full handshake and fails it.
//
// The configuration returned by GetConfigForClient replaces the listener's
// for that handshake. grpc's credentials.NewTLS and [net/http.Server.ServeTLS]
// add "h2" to a clone of the listener's configuration, which the
// replacement would drop; so each snapshot carries the protocols given to
// [Server.Config] itself ("h2" for gRPC; "h2" and "http/1.1" for HTTP).
package tlsconf
