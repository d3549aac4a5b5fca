package httpapi

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// inProcess is the gateway's connection to the services: a
// grpc.ClientConnInterface that calls the registered method handlers in
// process, through a unary interceptor, exactly as the gRPC listener does.
// So every HTTP call is authorized by the RPC full method name it resolved
// to, by the same rule as on gRPC, whatever its path looked like.
//
// A call costs two proto.Merge copies (request in, response out) more than
// calling the services directly.
type inProcess struct {
	methods     map[string]inProcessMethod
	interceptor grpc.UnaryServerInterceptor
}

type inProcessMethod struct {
	impl    any
	handler grpc.MethodHandler
}

var _ grpc.ClientConnInterface = (*inProcess)(nil)

func newInProcess(interceptor grpc.UnaryServerInterceptor) *inProcess {
	return &inProcess{methods: map[string]inProcessMethod{}, interceptor: interceptor}
}

// register adds the unary methods of a service implemented by impl.
func (c *inProcess) register(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = inProcessMethod{impl: impl, handler: m.Handler}
	}
}

// Invoke calls the method. The gateway's outgoing metadata becomes the
// call's incoming metadata, as on the wire; the auth rule does not read it
// (the caller travels in the request context, see callerOf). Call options
// (header and trailer capture) are ignored: no service metadata is
// forwarded to HTTP clients.
func (c *inProcess) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return status.Error(codes.Unimplemented, "unknown method")
	}
	in, ok := args.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, "An internal error occurred.")
	}
	out, ok := reply.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, "An internal error occurred.")
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewIncomingContext(ctx, md)
	dec := func(v any) error {
		dst, ok := v.(proto.Message)
		if !ok {
			return fmt.Errorf("in-process call: request %T is not a proto message", v)
		}
		proto.Merge(dst, in)
		return nil
	}
	resp, err := m.handler(m.impl, ctx, dec, c.interceptor)
	if err != nil {
		return err
	}
	if r, ok := resp.(proto.Message); ok && r != nil {
		proto.Merge(out, r)
	}
	return nil
}

// NewStream is not served: the HTTP API has no streaming method.
func (c *inProcess) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "streams are not served over HTTP")
}
