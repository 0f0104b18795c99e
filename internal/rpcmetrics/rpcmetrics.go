// Package rpcmetrics counts and times the RPCs a gRPC server handles, as
// Prometheus metrics. The broker and the controller each install one (they
// may not import each other, DESIGN.md §2; both import this leaf package):
//
//	strata_rpc_requests_total{server, service, method, code}   counter
//	strata_rpc_request_duration_seconds{server, service, method} histogram (unary RPCs)
//	strata_rpc_in_flight_requests{server, service, method}     gauge
//
// server is a constant label ("broker" or "controller"), so a combined node
// registers both in one registry. code is the gRPC status code name; Strata
// error codes carried inside a successful response (per partition) are not
// RPC failures and count as OK.
//
// The per-request cost is a lock-free map load, a clock read and atomic adds:
// a method's counters are created on its first call and never removed.
package rpcmetrics

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// numCodes is the number of gRPC status codes (OK .. Unauthenticated).
const numCodes = int(codes.Unauthenticated) + 1

// Buckets are the latency histogram's bucket bounds in seconds: 100 µs to
// 30 s (a fetch long poll waits up to its max_wait).
var Buckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics is a prometheus.Collector of one gRPC server's RPC metrics; its
// ServerOptions install the interceptors that feed it.
type Metrics struct {
	requests *prometheus.Desc
	inFlight *prometheus.Desc
	duration *prometheus.HistogramVec
	methods  sync.Map // full method name -> *method
	mu       sync.Mutex
}

type method struct {
	service, name string
	codes         [numCodes]atomic.Uint64
	inFlight      atomic.Int64
	duration      prometheus.Observer // unary methods only
}

// New returns the metrics of the server named server ("broker", "controller").
func New(server string) *Metrics {
	labels := prometheus.Labels{"server": server}
	return &Metrics{
		requests: prometheus.NewDesc("strata_rpc_requests_total",
			"RPCs handled, by gRPC status code.", []string{"service", "method", "code"}, labels),
		inFlight: prometheus.NewDesc("strata_rpc_in_flight_requests",
			"RPCs being handled now.", []string{"service", "method"}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "strata_rpc_request_duration_seconds",
			Help:        "Time to handle a unary RPC, long-poll waits included.",
			ConstLabels: labels,
			Buckets:     Buckets,
		}, []string{"service", "method"}),
	}
}

// ServerOptions are the interceptors to pass to grpc.NewServer.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(m.unary), grpc.ChainStreamInterceptor(m.stream)}
}

// method returns the counters of a method, creating them on its first call.
func (m *Metrics) method(full string, unary bool) *method {
	if v, ok := m.methods.Load(full); ok {
		return v.(*method)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.methods.Load(full); ok {
		return v.(*method)
	}
	svc, name := splitMethod(full)
	mt := &method{service: svc, name: name}
	if unary {
		mt.duration = m.duration.WithLabelValues(svc, name)
	}
	m.methods.Store(full, mt)
	return mt
}

// splitMethod turns "/strata.v1.BrokerService/Produce" into
// ("strata.v1.BrokerService", "Produce").
func splitMethod(full string) (string, string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

func (m *Metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	mt := m.method(info.FullMethod, true)
	mt.inFlight.Add(1)
	start := time.Now()
	resp, err := handler(ctx, req)
	mt.duration.Observe(time.Since(start).Seconds())
	mt.inFlight.Add(-1)
	mt.codes[codeIndex(err)].Add(1)
	return resp, err
}

func (m *Metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	mt := m.method(info.FullMethod, false)
	mt.inFlight.Add(1)
	err := handler(srv, ss)
	mt.inFlight.Add(-1)
	mt.codes[codeIndex(err)].Add(1)
	return err
}

func codeIndex(err error) int {
	if err == nil {
		return int(codes.OK)
	}
	c := status.Code(err)
	if int(c) >= numCodes {
		return int(codes.Unknown)
	}
	return int(c)
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.requests
	ch <- m.inFlight
	m.duration.Describe(ch)
}

// Collect implements prometheus.Collector. Codes a method never returned
// are left out.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.methods.Range(func(_, v any) bool {
		mt := v.(*method)
		for c := range mt.codes {
			if n := mt.codes[c].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(m.requests, prometheus.CounterValue, float64(n), mt.service, mt.name, codes.Code(c).String())
			}
		}
		ch <- prometheus.MustNewConstMetric(m.inFlight, prometheus.GaugeValue, float64(mt.inFlight.Load()), mt.service, mt.name)
		return true
	})
	m.duration.Collect(ch)
}
