package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/integration/cluster"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Bad input and limits: garbage bytes to every port, a request announcing
// a huge length, a flood of connections. Each node answers with an error or
// drops the connection, keeps serving others, and its memory stays bounded.

// clientPreface opens every HTTP/2 connection (RFC 9113 §3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// badInputCluster is one controller and one broker as separate processes,
// so that RSS is measured per role.
func badInputCluster(t *testing.T) (*cluster.Cluster, *cluster.Node, *cluster.Node) {
	if testing.Short() {
		t.Skip("multi-process: not in -short")
	}
	c := cluster.New(t, cluster.Config{Binary: strataBin, Controllers: 1, Brokers: 1})
	return c, c.Controllers()[0], c.Brokers()[0]
}

// healthy checks that each node still answers a real request on each port.
func healthy(t *testing.T, c *cluster.Cluster, nodes ...*cluster.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		// /readyz answers; readiness itself may lag a moment on a loaded
		// machine (a heartbeat delayed past the 3 s session timeout).
		if ok, why := n.Ready(ctx); !ok {
			t.Logf("%s /readyz: %s; waiting", n.Name, why)
			if err := n.WaitReady(ctx); err != nil {
				t.Fatalf("%s: %v", n.Name, err)
			}
		}
		if n.IsController() {
			cl, _ := c.ControllerClient(n)
			if _, err := cl.DescribeQuorum(ctx, &pb.DescribeQuorumRequest{}); err != nil {
				t.Fatalf("%s DescribeQuorum: %v", n.Name, err)
			}
		}
		if n.IsBroker() {
			bc, _ := c.BrokerClient(n)
			if _, err := bc.Metadata(ctx, &pb.MetadataRequest{}); err != nil {
				t.Fatalf("%s Metadata: %v", n.Name, err)
			}
		}
	}
}

// rss reads a node's resident set size.
func rss(t *testing.T, n *cluster.Node) int64 {
	t.Helper()
	v, err := n.RSS()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sendGarbage writes payload to addr and reads until the peer closes or
// 5 s pass; it reports what came back and whether the peer closed.
func sendGarbage(t *testing.T, addr string, payload []byte) (answer []byte, closed bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(payload) // may fail half-way when the peer gives up: fine
	var buf bytes.Buffer
	_, err = io.Copy(&buf, conn)
	var ne net.Error
	timedOut := err != nil && errorsAs(err, &ne) && ne.Timeout()
	return buf.Bytes(), !timedOut
}

func errorsAs(err error, target *net.Error) bool {
	for err != nil {
		if e, ok := err.(net.Error); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestGarbageToEveryPort sends random bytes, then a Raft-marked stream of
// random bytes, then an HTTP request line of garbage, to the broker, the
// controller and the metrics port: each connection is answered with an
// error or closed, and every node keeps serving.
func TestGarbageToEveryPort(t *testing.T) {
	c, ctrl, brk := badInputCluster(t)
	before := map[string]int64{ctrl.Name: rss(t, ctrl), brk.Name: rss(t, brk)}
	cases := []struct {
		name    string
		addr    string
		payload []byte
	}{
		{"broker gRPC: random bytes", brk.BrokerAddr, randomBytes(64 << 10)},
		{"broker gRPC: HTTP/2 preface then garbage frames", brk.BrokerAddr, append([]byte(clientPreface), randomBytes(64<<10)...)},
		{"controller: random bytes", ctrl.CtrlAddr, append([]byte{'P'}, randomBytes(64<<10)...)},
		{"controller: Raft marker then random bytes", ctrl.CtrlAddr, append([]byte{'R'}, randomBytes(64<<10)...)},
		{"controller: HTTP/2 preface then garbage frames", ctrl.CtrlAddr, append([]byte(clientPreface), randomBytes(64<<10)...)},
		{"metrics: garbage request", brk.MetricsAddr, append([]byte("GARBAGE /\x00\xff HTTP/9.9\r\n"), randomBytes(8<<10)...)},
		{"metrics: random bytes", ctrl.MetricsAddr, randomBytes(64 << 10)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer, closed := sendGarbage(t, tc.addr, tc.payload)
			if !closed {
				t.Errorf("the connection stayed open 5 s after garbage (answer %q)", answer[:min(len(answer), 80)])
			}
			healthy(t, c, ctrl, brk)
		})
	}
	for _, n := range []*cluster.Node{ctrl, brk} {
		if after := rss(t, n); after > before[n.Name]+64<<20 {
			t.Errorf("%s RSS grew from %d to %d MiB on garbage", n.Name, before[n.Name]>>20, after>>20)
		}
	}
}

// grpcRaw sends one gRPC call whose message prefix announces length bytes
// but carries only a few, over cleartext HTTP/2, and returns the
// grpc-status the server answers.
func grpcRaw(t *testing.T, addr, method string, length uint32) string {
	t.Helper()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true) // gRPC's cleartext HTTP/2 with prior knowledge
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	body := make([]byte, 5, 5+1024)
	binary.BigEndian.PutUint32(body[1:], length)
	body = append(body, randomBytes(1024)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+method, bytes.NewReader(body))
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "transport error: " + err.Error()
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if s := resp.Header.Get("grpc-status"); s != "" {
		return s
	}
	return resp.Trailer.Get("grpc-status")
}

// TestHugeLengthPrefix: a gRPC message announcing 4 GiB - 1 bytes is
// refused (RESOURCE_EXHAUSTED, grpc-status 8) without the node reserving
// the memory, on the broker and on the controller; a Raft stream whose
// first message claims a huge array is dropped.
func TestHugeLengthPrefix(t *testing.T) {
	c, ctrl, brk := badInputCluster(t)
	before := map[string]int64{ctrl.Name: rss(t, ctrl), brk.Name: rss(t, brk)}
	for _, tc := range []struct{ addr, method string }{
		{brk.BrokerAddr, "/strata.v1.BrokerService/Produce"},
		{brk.BrokerAddr, "/strata.v1.BrokerService/Metadata"},
		{ctrl.CtrlAddr, "/strata.v1.ControllerService/CreateTopics"},
	} {
		if got := grpcRaw(t, tc.addr, tc.method, 0xFFFFFFFF); got != "8" {
			t.Errorf("%s with a 4 GiB length prefix: grpc-status %q, want 8 (RESOURCE_EXHAUSTED)", tc.method, got)
		}
	}
	// Raft: marker, rpcAppendEntries (0), then a msgpack map whose first
	// value is a bin32 of 2 GiB that never comes.
	for _, raft := range [][]byte{
		{'R', 0, 0x81, 0xa4, 'T', 'e', 'r', 'm', 0xc6, 0x7f, 0xff, 0xff, 0xff},
		// "Entries": an array32 of 2^28 elements.
		{'R', 0, 0x81, 0xa7, 'E', 'n', 't', 'r', 'i', 'e', 's', 0xdd, 0x10, 0x00, 0x00, 0x00},
		// "Addr": a bin32 of 2^31-1 bytes.
		{'R', 0, 0x81, 0xa4, 'A', 'd', 'd', 'r', 0xc6, 0x7f, 0xff, 0xff, 0xff},
	} {
		if _, closed := sendGarbage(t, ctrl.CtrlAddr, append(raft, randomBytes(4096)...)); !closed {
			t.Logf("the Raft transport still waits for the bytes %x announced (bounded by its own I/O timeout)", raft[:8])
		}
	}
	healthy(t, c, ctrl, brk)
	for _, n := range []*cluster.Node{ctrl, brk} {
		if after := rss(t, n); after > before[n.Name]+64<<20 {
			t.Errorf("%s RSS grew from %d to %d MiB on a huge length prefix", n.Name, before[n.Name]>>20, after>>20)
		}
	}
}

// TestConnectionFlood opens 2,000 idle connections and 200 that send a
// partial HTTP/2 preface to each of the broker's and the controller's
// ports: real requests are still served meanwhile, memory stays bounded,
// and everything is fine once the flood is gone.
func TestConnectionFlood(t *testing.T) {
	c, ctrl, brk := badInputCluster(t)
	before := map[string]int64{ctrl.Name: rss(t, ctrl), brk.Name: rss(t, brk)}
	const idle, partial = 2000, 200
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	for _, addr := range []string{brk.BrokerAddr, ctrl.CtrlAddr} {
		for i := range idle + partial {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return // the backlog is full: the flood is refused, which is fine
				}
				if i >= idle {
					conn.Write([]byte(clientPreface[:10]))
				}
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	t.Logf("%d flood connections open", len(conns))
	healthy(t, c, ctrl, brk)
	for _, n := range []*cluster.Node{ctrl, brk} {
		after := rss(t, n)
		t.Logf("%s RSS %d -> %d MiB under the flood", n.Name, before[n.Name]>>20, after>>20)
		if after > before[n.Name]+256<<20 {
			t.Errorf("%s RSS grew from %d to %d MiB under a flood of %d connections", n.Name, before[n.Name]>>20, after>>20, idle+partial)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	healthy(t, c, ctrl, brk)
}
