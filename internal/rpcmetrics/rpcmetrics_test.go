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

func TestInterceptorsCountAndTime(t *testing.T) {
	m := New("broker")
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	produce := &grpc.UnaryServerInfo{FullMethod: "/strata.v1.BrokerService/Produce"}
	var inFlight int64
	ok := func(ctx context.Context, req any) (any, error) {
		inFlight = m.method(produce.FullMethod, true).inFlight.Load()
		return "resp", nil
	}
	for range 3 {
		if resp, err := m.unary(context.Background(), nil, produce, ok); resp != "resp" || err != nil {
			t.Fatalf("unary passed %v %v through", resp, err)
		}
	}
	if inFlight != 1 {
		t.Errorf("in flight during the call: %v", inFlight)
	}
	failed := func(ctx context.Context, req any) (any, error) {
		return nil, status.Error(codes.Unavailable, "no")
	}
	if _, err := m.unary(context.Background(), nil, produce, failed); status.Code(err) != codes.Unavailable {
		t.Fatalf("error not passed through: %v", err)
	}
	sub := &grpc.StreamServerInfo{FullMethod: "/strata.v1.BrokerService/Subscribe", IsServerStream: true}
	if err := m.stream(nil, nil, sub, func(any, grpc.ServerStream) error { return errors.New("plain") }); err == nil {
		t.Fatal("stream error lost")
	}

	want := `
# HELP strata_rpc_requests_total RPCs handled, by gRPC status code.
# TYPE strata_rpc_requests_total counter
strata_rpc_requests_total{code="OK",method="Produce",server="broker",service="strata.v1.BrokerService"} 3
strata_rpc_requests_total{code="Unavailable",method="Produce",server="broker",service="strata.v1.BrokerService"} 1
strata_rpc_requests_total{code="Unknown",method="Subscribe",server="broker",service="strata.v1.BrokerService"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "strata_rpc_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m, "strata_rpc_request_duration_seconds"); n != 1 {
		t.Errorf("%d duration series, want 1 (unary Produce only)", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "strata_rpc_request_duration_seconds" {
			if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c != 4 {
				t.Errorf("%d latency observations, want 4", c)
			}
		}
		if mf.GetName() == "strata_rpc_in_flight_requests" {
			for _, s := range mf.GetMetric() {
				if s.GetGauge().GetValue() != 0 {
					t.Errorf("in flight after the calls: %v", s)
				}
			}
		}
	}
}

func TestSplitMethod(t *testing.T) {
	for _, c := range []struct{ in, svc, method string }{
		{"/strata.v1.BrokerService/Produce", "strata.v1.BrokerService", "Produce"},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "grpc.reflection.v1.ServerReflection", "ServerReflectionInfo"},
		{"weird", "unknown", "weird"},
	} {
		if svc, method := splitMethod(c.in); svc != c.svc || method != c.method {
			t.Errorf("splitMethod(%q) = %q, %q", c.in, svc, method)
		}
	}
}
