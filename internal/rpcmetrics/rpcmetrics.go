// Package rpcmetrics counts and times the RPCs a gRPC server handles, as
// Prometheus metrics. The broker and the controller each have one (they may
// not import each other, DESIGN.md §2; both import this leaf package):
//
//	strata_rpc_requests_total{server, service, method, code}     counter
//	strata_rpc_request_duration_seconds{server, service, method} histogram (unary RPCs)
//	strata_rpc_in_flight_requests{server, service, method}       gauge
//
// server is a constant label ("broker" or "controller"), so a combined node
// registers both in one registry. code is the gRPC status code name; Strata
// error codes carried inside a successful response (per partition) are not
// RPC failures and count as OK.
//
// Services are registered through Registrar, which wraps each method's
// handler in the service descriptor once, at registration. Unlike a server
// interceptor (for which gRPC's generated code allocates a UnaryServerInfo
// and a closure on every call) this costs nothing per call but a clock read
// and atomic adds: no allocation, no lock, no map lookup.
package rpcmetrics

import (
	"context"
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

// Metrics is a prometheus.Collector of one gRPC server's RPC metrics; the
// services registered through its Registrar feed it.
type Metrics struct {
	requests *prometheus.Desc
	inFlight *prometheus.Desc
	duration *prometheus.HistogramVec

	mu      sync.Mutex
	methods []*method // one per registered method, never removed
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

// Registrar returns a grpc.ServiceRegistrar that registers services on s
// (a *grpc.Server) with their handlers instrumented: pass it to the
// generated RegisterXxxServer functions.
func (m *Metrics) Registrar(s grpc.ServiceRegistrar) grpc.ServiceRegistrar {
	return registrar{m: m, s: s}
}

type registrar struct {
	m *Metrics
	s grpc.ServiceRegistrar
}

// RegisterService implements grpc.ServiceRegistrar.
func (r registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, md := range desc.Methods {
		d.Methods[i] = grpc.MethodDesc{MethodName: md.MethodName, Handler: r.m.unary(desc.ServiceName, md.MethodName, md.Handler)}
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, sd := range desc.Streams {
		sd.Handler = r.m.stream(desc.ServiceName, sd.StreamName, sd.Handler)
		d.Streams[i] = sd
	}
	r.s.RegisterService(&d, impl)
}

func (m *Metrics) newMethod(service, name string, unary bool) *method {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := &method{service: service, name: name}
	if unary {
		mt.duration = m.duration.WithLabelValues(service, name)
	}
	m.methods = append(m.methods, mt)
	return mt
}

// unary wraps a unary method's handler.
func (m *Metrics) unary(service, name string, h grpc.MethodHandler) grpc.MethodHandler {
	mt := m.newMethod(service, name, true)
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		mt.inFlight.Add(1)
		start := time.Now()
		resp, err := h(srv, ctx, dec, interceptor)
		mt.duration.Observe(time.Since(start).Seconds())
		mt.inFlight.Add(-1)
		mt.codes[codeIndex(err)].Add(1)
		return resp, err
	}
}

// stream wraps a streaming method's handler (no latency: a stream lives as
// long as its client wants).
func (m *Metrics) stream(service, name string, h grpc.StreamHandler) grpc.StreamHandler {
	mt := m.newMethod(service, name, false)
	return func(srv any, stream grpc.ServerStream) error {
		mt.inFlight.Add(1)
		err := h(srv, stream)
		mt.inFlight.Add(-1)
		mt.codes[codeIndex(err)].Add(1)
		return err
	}
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
	m.mu.Lock()
	methods := m.methods
	m.mu.Unlock()
	for _, mt := range methods {
		for c := range mt.codes {
			if n := mt.codes[c].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(m.requests, prometheus.CounterValue, float64(n), mt.service, mt.name, codes.Code(c).String())
			}
		}
		ch <- prometheus.MustNewConstMetric(m.inFlight, prometheus.GaugeValue, float64(mt.inFlight.Load()), mt.service, mt.name)
	}
	m.duration.Collect(ch)
}
