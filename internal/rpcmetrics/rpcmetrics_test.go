package rpcmetrics

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// captured is a grpc.ServiceRegistrar that keeps what is registered.
type captured struct {
	desc *grpc.ServiceDesc
	impl any
}

func (c *captured) RegisterService(desc *grpc.ServiceDesc, impl any) { c.desc, c.impl = desc, impl }

type echo interface{}

// testDesc is a service with a unary method whose outcome the test picks and
// a streaming method that fails.
func testDesc(unaryErr *error, inFlight *int64, m *Metrics) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Echo",
		HandlerType: (*echo)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Say", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if inFlight != nil {
				*inFlight = m.methods[0].inFlight.Load()
			}
			return "resp", *unaryErr
		}}},
		Streams: []grpc.StreamDesc{{StreamName: "Watch", ServerStreams: true, Handler: func(any, grpc.ServerStream) error { return errors.New("plain") }}},
	}
}

func TestRegistrarCountsAndTimes(t *testing.T) {
	m := New("broker")
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	var unaryErr error
	var inFlight int64
	var c captured
	orig := testDesc(&unaryErr, &inFlight, m)
	m.Registrar(&c).RegisterService(orig, "impl")
	if c.impl != "impl" || c.desc == orig || c.desc.ServiceName != "test.Echo" || c.desc.HandlerType != orig.HandlerType ||
		len(c.desc.Methods) != 1 || c.desc.Methods[0].MethodName != "Say" || len(c.desc.Streams) != 1 || !c.desc.Streams[0].ServerStreams {
		t.Fatalf("registered %+v", c.desc)
	}
	say, watch := c.desc.Methods[0].Handler, c.desc.Streams[0].Handler
	for range 3 {
		if resp, err := say(nil, context.Background(), nil, nil); resp != "resp" || err != nil {
			t.Fatalf("handler passed %v %v through", resp, err)
		}
	}
	if inFlight != 1 {
		t.Errorf("in flight during the call: %d", inFlight)
	}
	unaryErr = status.Error(codes.Unavailable, "no")
	if _, err := say(nil, context.Background(), nil, nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("error not passed through: %v", err)
	}
	if err := watch(nil, nil); err == nil {
		t.Fatal("stream error lost")
	}

	want := `
# HELP strata_rpc_requests_total RPCs handled, by gRPC status code.
# TYPE strata_rpc_requests_total counter
strata_rpc_requests_total{code="OK",method="Say",server="broker",service="test.Echo"} 3
strata_rpc_requests_total{code="Unavailable",method="Say",server="broker",service="test.Echo"} 1
strata_rpc_requests_total{code="Unknown",method="Watch",server="broker",service="test.Echo"} 1
# HELP strata_rpc_in_flight_requests RPCs being handled now.
# TYPE strata_rpc_in_flight_requests gauge
strata_rpc_in_flight_requests{method="Say",server="broker",service="test.Echo"} 0
strata_rpc_in_flight_requests{method="Watch",server="broker",service="test.Echo"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "strata_rpc_requests_total", "strata_rpc_in_flight_requests"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "strata_rpc_request_duration_seconds" {
			found = true
			if n := len(mf.GetMetric()); n != 1 {
				t.Errorf("%d latency series, want 1 (the unary method)", n)
			}
			if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c != 4 {
				t.Errorf("%d latency observations, want 4", c)
			}
		}
	}
	if !found {
		t.Error("no strata_rpc_request_duration_seconds")
	}
}

// TestRegistrarAllocatesNothingPerCall: the instrumented handler adds no
// allocation to a call.
func TestRegistrarAllocatesNothingPerCall(t *testing.T) {
	m := New("broker")
	var unaryErr error
	var c captured
	m.Registrar(&c).RegisterService(testDesc(&unaryErr, nil, m), nil)
	say := c.desc.Methods[0].Handler
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { say(nil, ctx, nil, nil) }); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}
