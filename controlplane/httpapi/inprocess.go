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
// (the caller travels in the request context, see callerOf). Headers the
// service sets (grpc.SetHeader) reach the grpc.Header call option, from
// which the gateway forwards those its outgoing header matcher names;
// trailers are dropped.
func (c *inProcess) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
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
	hs := &headerStream{method: method}
	ctx = grpc.NewContextWithServerTransportStream(ctx, hs)
	resp, err := m.handler(m.impl, ctx, dec, c.interceptor)
	for _, o := range opts {
		if h, ok := o.(grpc.HeaderCallOption); ok && h.HeaderAddr != nil {
			*h.HeaderAddr = hs.md
		}
	}
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

// headerStream is the grpc.ServerTransportStream of an in-process call: it
// keeps the headers the service sets.
type headerStream struct {
	method string
	md     metadata.MD
}

func (h *headerStream) Method() string { return h.method }

func (h *headerStream) SetHeader(md metadata.MD) error {
	h.md = metadata.Join(h.md, md)
	return nil
}

func (h *headerStream) SendHeader(md metadata.MD) error { return h.SetHeader(md) }

func (h *headerStream) SetTrailer(metadata.MD) error { return nil }
