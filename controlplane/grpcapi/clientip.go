package grpcapi

import (
	"context"
	"net/netip"

	"google.golang.org/grpc/peer"
)

type clientIPKey struct{}

// WithClientIP records the client address the HTTP layer determined (from the
// configured client-IP source) for the in-process gateway call.
func WithClientIP(ctx context.Context, addr netip.Addr) context.Context {
	return context.WithValue(ctx, clientIPKey{}, addr)
}

// clientIP returns the address recorded by WithClientIP or, for direct gRPC
// calls, the peer address. The zero Addr means unknown, which fails any IP
// restriction closed.
func clientIP(ctx context.Context) netip.Addr {
	if a, ok := ctx.Value(clientIPKey{}).(netip.Addr); ok {
		return a
	}
	if p, ok := peer.FromContext(ctx); ok {
		return peerAddr(p)
	}
	return netip.Addr{}
}
