package wire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
)

// fetchServer is a test-only BrokerService that implements Fetch and
// Subscribe: it answers records read into pooled buffers (storage.GetBuffer),
// attached to the response. Its release poisons the buffer before giving it
// back, so a byte gRPC sent after the release would reach the client wrong.
type fetchServer struct {
	pb.UnimplementedBrokerServiceServer
	size     int // records bytes per partition
	parts    int // partitions per response
	released atomic.Int64
	attached atomic.Int64
	failNext atomic.Bool // answer the next Fetch with an error after attaching
	// mapped, if set, serves the records from this region by mmap.
	mapped storage.Region

	mu     sync.Mutex
	double int // releases that ran twice
}

// pattern is the content of partition p's records.
func pattern(p, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(p*31 + i)
	}
	return b
}

func (s *fetchServer) release(buf []byte) func() {
	var once atomic.Bool
	return func() {
		if !once.CompareAndSwap(false, true) {
			s.mu.Lock()
			s.double++
			s.mu.Unlock()
			return
		}
		for i := range buf {
			buf[i] = 0xEE
		}
		storage.PutBuffer(buf)
		s.released.Add(1)
	}
}

// response builds a response of s.parts partitions, each from its own
// pooled buffer, and returns the releases to attach.
func (s *fetchServer) response() (*pb.FetchResponse, []func()) {
	resp := &pb.FetchResponse{Topics: []*pb.FetchTopicResult{{Topic: "t"}}}
	var releases []func()
	for p := range s.parts {
		buf := storage.GetBuffer(s.size)
		copy(buf, pattern(p, s.size))
		releases = append(releases, s.release(buf))
		resp.Topics[0].Partitions = append(resp.Topics[0].Partitions, &pb.FetchPartitionResult{
			Partition: int32(p), HighWatermark: 1000, LastStableOffset: 1000, LogStartOffset: 0,
			PreferredReadReplica: -1, NextFetchOffset: -1, Records: buf,
		})
	}
	s.attached.Add(int64(len(releases)))
	return resp, releases
}

func (s *fetchServer) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	if s.mapped.Len > 0 {
		m, err := s.mapped.Mmap()
		if err != nil {
			return nil, err
		}
		resp := &pb.FetchResponse{Topics: []*pb.FetchTopicResult{{Topic: "t", Partitions: []*pb.FetchPartitionResult{
			{HighWatermark: 1000, PreferredReadReplica: -1, NextFetchOffset: -1, Records: m.Bytes()},
		}}}}
		s.attached.Add(1)
		Attach(resp, func() { _ = m.Close(); s.released.Add(1) })
		return resp, nil
	}
	resp, releases := s.response()
	for _, r := range releases {
		Attach(resp, r)
	}
	if s.failNext.CompareAndSwap(true, false) {
		return nil, status.Error(codes.Unavailable, "test: failing after attach")
	}
	return resp, nil
}

func (s *fetchServer) Subscribe(req *pb.SubscribeRequest, stream grpc.ServerStreamingServer[pb.SubscribeResponse]) error {
	for range int(req.MaxBytes) { // the test's chunk count
		fr, releases := s.response()
		chunk := &pb.SubscribeResponse{Topics: fr.Topics}
		for _, r := range releases {
			Attach(chunk, r)
		}
		err := stream.Send(chunk)
		Discard(chunk) // no-op if the codec took it; releases now otherwise
		if err != nil {
			return err
		}
	}
	return nil
}

// serve starts srv on a loopback port and returns a client connection.
func serve(t testing.TB, srv pb.BrokerServiceServer, opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	pb.RegisterBrokerServiceServer(gs, srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		gs.Stop()
		<-done
	})
	return cc
}

func checkResponse(t testing.TB, resp *pb.FetchResponse, parts, size int) {
	t.Helper()
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != parts {
		t.Fatalf("response shape: %d topics", len(resp.Topics))
	}
	for p, pr := range resp.Topics[0].Partitions {
		if pr.HighWatermark != 1000 || pr.PreferredReadReplica != -1 {
			t.Fatalf("partition %d: fields %v", p, pr)
		}
		if !bytes.Equal(pr.Records, pattern(p, size)) {
			t.Fatalf("partition %d: records differ from what was attached (released before sent?)", p)
		}
	}
}

// waitCount runs the GC until n() reaches want (bounded), for releases that
// wait on a cleanup.
func waitCount(t testing.TB, n func() int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n() < want {
		if time.Now().After(deadline) {
			t.Fatalf("released %d, want %d", n(), want)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if n() != want {
		t.Fatalf("released %d, want %d", n(), want)
	}
}

func TestLoopbackFetch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server []grpc.ServerOption
		call   []grpc.CallOption
		prompt bool // released without waiting for a GC
	}{
		{name: "default codec", prompt: false},
		{name: "client opts in", call: []grpc.CallOption{CallOption()}, prompt: true},
		{name: "server forces", server: []grpc.ServerOption{ServerOption()}, prompt: true},
		{name: "both", server: []grpc.ServerOption{ServerOption()}, call: []grpc.CallOption{CallOption()}, prompt: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &fetchServer{size: 300 << 10, parts: 3}
			cc := serve(t, srv, tc.server...)
			client := pb.NewBrokerServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			const calls = 20
			for range calls {
				resp, err := client.Fetch(ctx, &pb.FetchRequest{ReplicaId: -1}, tc.call...)
				if err != nil {
					t.Fatal(err)
				}
				checkResponse(t, resp, srv.parts, srv.size)
			}
			if tc.prompt {
				// The codec releases as soon as the writer is done; the
				// client has the bytes, so that is at most a moment away.
				deadline := time.Now().Add(5 * time.Second)
				for srv.released.Load() < srv.attached.Load() && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if r, a := srv.released.Load(), srv.attached.Load(); r != a {
					t.Fatalf("released %d of %d buffers without a GC", r, a)
				}
			}
			waitCount(t, srv.released.Load, srv.attached.Load())
			if srv.attached.Load() != calls*int64(srv.parts) {
				t.Fatalf("attached %d", srv.attached.Load())
			}
			if srv.double != 0 {
				t.Fatalf("%d releases ran twice", srv.double)
			}
		})
	}
}

// A handler that attaches and then fails: the response is never encoded;
// its buffers are released by the cleanup.
func TestLoopbackFetchErrorAfterAttach(t *testing.T) {
	srv := &fetchServer{size: 64 << 10, parts: 2}
	cc := serve(t, srv, ServerOption())
	client := pb.NewBrokerServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv.failNext.Store(true)
	if _, err := client.Fetch(ctx, &pb.FetchRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	resp, err := client.Fetch(ctx, &pb.FetchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	checkResponse(t, resp, srv.parts, srv.size)
	waitCount(t, srv.released.Load, 4)
}

func TestLoopbackSubscribe(t *testing.T) {
	for _, tc := range []struct {
		name string
		call []grpc.CallOption
	}{
		{name: "default codec"},
		{name: "zero-copy", call: []grpc.CallOption{CallOption()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &fetchServer{size: 100 << 10, parts: 2}
			cc := serve(t, srv)
			client := pb.NewBrokerServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			const chunks = 10
			stream, err := client.Subscribe(ctx, &pb.SubscribeRequest{MaxBytes: chunks}, tc.call...)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for {
				chunk, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				checkResponse(t, &pb.FetchResponse{Topics: chunk.Topics}, srv.parts, srv.size)
				got++
			}
			if got != chunks {
				t.Fatalf("got %d chunks, want %d", got, chunks)
			}
			// Both paths release promptly: the codec after writing, Discard
			// after Send for the default codec. No GC needed.
			deadline := time.Now().Add(5 * time.Second)
			for srv.released.Load() < chunks*int64(srv.parts) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if r := srv.released.Load(); r != chunks*int64(srv.parts) {
				t.Fatalf("released %d, want %d", r, chunks*srv.parts)
			}
			if srv.double != 0 {
				t.Fatalf("%d releases ran twice", srv.double)
			}
		})
	}
}

// Records served from an mmap'd region: unmapped once gRPC has written them.
func TestLoopbackFetchMapped(t *testing.T) {
	const size = 1 << 20
	path := filepath.Join(t.TempDir(), "00000000000000000000.log")
	if err := os.WriteFile(path, pattern(0, size), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	sf := storage.OpenSegmentFile(f)
	defer sf.CloseWhenUnused()
	srv := &fetchServer{mapped: storage.Region{File: sf, Pos: 0, Len: size}}
	cc := serve(t, srv, ServerOption())
	client := pb.NewBrokerServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 10 {
		resp, err := client.Fetch(ctx, &pb.FetchRequest{})
		if err != nil {
			t.Fatal(err)
		}
		checkResponse(t, resp, 1, size)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.released.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r := srv.released.Load(); r != 10 {
		t.Fatalf("unmapped %d of 10 regions", r)
	}
	// No mapping is left: the file can be truncated again.
	if err := sf.Truncate(size); err != nil {
		t.Fatalf("truncate after every region was released: %v", err)
	}
}
