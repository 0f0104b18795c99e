package broker

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// fetcherStreamServer is fetcherTestServer with FetchStream: each request
// answered by its Fetch. noStream answers as a broker without FetchStream
// would (Unimplemented); hangOnce makes the next stream never answer.
type fetcherStreamServer struct {
	*fetcherTestServer
	streams  atomic.Int64 // FetchStream calls
	noStream atomic.Bool
	hangOnce atomic.Bool
}

func fetcherStreamServe(t *testing.T, parts ...*Partition) *fetcherStreamServer {
	t.Helper()
	s := &fetcherStreamServer{fetcherTestServer: newFetcherTestServer(parts...)}
	s.serve(t, s)
	return s
}

func (s *fetcherStreamServer) FetchStream(stream pb.BrokerService_FetchStreamServer) error {
	s.streams.Add(1)
	if s.noStream.Load() {
		return s.UnimplementedBrokerServiceServer.FetchStream(stream)
	}
	if s.hangOnce.CompareAndSwap(true, false) {
		return serveFetchStream(stream, func(ctx context.Context, _ *pb.FetchRequest) (*pb.FetchResponse, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
	}
	return serveFetchStream(stream, s.Fetch)
}

// fetcherStreamClient is fetcherTestClient that can open FetchStreams, as
// the broker's own connections do.
type fetcherStreamClient struct{ fetcherTestClient }

func (c fetcherStreamClient) OpenFetchStream(ctx context.Context, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.FetchStream(ctx, append(opts, wire.CallOption())...)
}

func fetcherStreamDial(d *fetcherTestDialer) func(context.Context, int32, string) (pb.BrokerServiceClient, error) {
	return func(ctx context.Context, leaderID int32, addr string) (pb.BrokerServiceClient, error) {
		c, err := d.dial(ctx, leaderID, addr)
		if err != nil {
			return nil, err
		}
		return fetcherStreamClient{c.(fetcherTestClient)}, nil
	}
}

// fetcherStreamRun replicates 50 records and 5 more through the long poll
// from the leader srv serves to a follower fetching with cfg.
func fetcherStreamRun(t *testing.T, leader *Partition, srv *fetcherStreamServer, d *fetcherTestDialer, cfg FetcherConfig) {
	t.Helper()
	follower := fetcherTestPartition(t, 2)
	fetcherTestApply(t, fetcherTestState("t", 1, 1, 1, 2), follower)
	m := NewFetcherManager(2, func() int64 { return 7 }, fetcherStreamDial(d), cfg, nil, nil)
	t.Cleanup(m.Close)
	m.AddPartition(follower, 1, srv.addr, false)
	caughtUp := func() bool {
		end := leader.Log().LogEndOffset()
		return follower.Log().LogEndOffset() == end && leader.HighWatermark() == end && follower.HighWatermark() == end
	}
	fetcherTestWait(t, 10*time.Second, "the follower to catch up", caughtUp)
	fetcherTestProduce(t, leader, "b", 5, 0)
	fetcherTestWait(t, 10*time.Second, "the follower to catch up again", caughtUp)
	if got, want := fetcherTestValues(t, follower), fetcherTestValues(t, leader); !slices.Equal(got, want) {
		t.Fatalf("follower has %v, leader %v", got, want)
	}
}

func fetcherStreamLeader(t *testing.T) (*Partition, *fetcherStreamServer) {
	leader := fetcherTestPartition(t, 1)
	fetcherTestApply(t, fetcherTestState("t", 1, 1, 1, 2), leader)
	fetcherTestProduce(t, leader, "a", 50, 100)
	return leader, fetcherStreamServe(t, leader)
}

// A follower whose connection can open FetchStreams fetches every round on
// one stream, never with unary Fetch.
func TestFetcherStreamCatchesUp(t *testing.T) {
	leader, srv := fetcherStreamLeader(t)
	d := newFetcherTestDialer(t)
	fetcherStreamRun(t, leader, srv, d, FetcherConfig{MaxWait: 100 * time.Millisecond, PartitionMaxBytes: 1024, Backoff: 20 * time.Millisecond})
	srv.mu.Lock()
	rounds := len(srv.fetchOffsets)
	srv.mu.Unlock()
	if n := srv.streams.Load(); n != 1 || rounds < 5 || d.calls.Load() != 0 {
		t.Fatalf("%d streams for %d fetch rounds, %d unary calls: want 1 stream, several rounds, no unary call", n, rounds, d.calls.Load())
	}
}

// A leader without FetchStream (an older broker) answers Unimplemented: the
// source falls back to unary Fetch until StreamRetry has passed.
func TestFetcherStreamFallsBackToUnary(t *testing.T) {
	leader, srv := fetcherStreamLeader(t)
	srv.noStream.Store(true)
	d := newFetcherTestDialer(t)
	fetcherStreamRun(t, leader, srv, d, FetcherConfig{MaxWait: 100 * time.Millisecond, PartitionMaxBytes: 1024, Backoff: 20 * time.Millisecond})
	if n := srv.streams.Load(); n != 1 || d.calls.Load() < 5 {
		t.Fatalf("%d streams, %d unary fetches: want 1 stream tried, then unary", n, d.calls.Load())
	}
}

// A leader upgraded in place (same address) starts serving FetchStream: the
// source, fetching with unary Fetch since its first Unimplemented, tries the
// stream again after StreamRetry and stays on it.
func TestFetcherStreamRetriedAfterUpgrade(t *testing.T) {
	leader, srv := fetcherStreamLeader(t)
	srv.noStream.Store(true)
	d := newFetcherTestDialer(t)
	fetcherStreamRun(t, leader, srv, d, FetcherConfig{MaxWait: 50 * time.Millisecond, PartitionMaxBytes: 1024,
		Backoff: 20 * time.Millisecond, StreamRetry: 200 * time.Millisecond})
	srv.noStream.Store(false) // the upgrade
	tried := srv.streams.Load()
	fetcherTestWait(t, 10*time.Second, "a stream after the upgrade", func() bool { return srv.streams.Load() > tried })
	unary := d.calls.Load()
	time.Sleep(500 * time.Millisecond) // ten long polls, more than two StreamRetry
	if n, u := srv.streams.Load(), d.calls.Load(); n != tried+1 || u > unary+1 {
		t.Fatalf("after the upgrade %d streams opened and %d unary fetches: want 1 stream and no more unary", n-tried, u-unary)
	}
}

// A leader that stops answering on its stream without closing it: the round
// gives up after max_wait + the request timeout, cuts the stream, and the
// next round opens another.
func TestFetcherStreamCutAfterRequestTimeout(t *testing.T) {
	leader, srv := fetcherStreamLeader(t)
	srv.hangOnce.Store(true)
	d := newFetcherTestDialer(t)
	start := time.Now()
	fetcherStreamRun(t, leader, srv, d, FetcherConfig{MaxWait: 50 * time.Millisecond, RequestTimeout: 200 * time.Millisecond,
		PartitionMaxBytes: 1024, Backoff: 20 * time.Millisecond})
	if n := srv.streams.Load(); n != 2 || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("%d streams after %v: want the hung one cut after 250ms and one more", n, time.Since(start))
	}
}

// A leader whose connection never gets past the TCP handshake (it accepts
// and says nothing): opening the stream is bounded by the round's deadline,
// as a unary Fetch is, not by gRPC's 20 s connect timeout.
func TestFetcherStreamOpenBoundedByRound(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	cc, err := grpc.NewClient(lis.Addr().String(), append(wire.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &fetcherSource{ctx: ctx, client: replicaClient{pb.NewBrokerServiceClient(cc), cc}, logger: slog.New(slog.DiscardHandler)}
	round, cancelRound := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelRound()
	start := time.Now()
	_, _, err = s.rpcFetch(round, &pb.FetchRequest{ReplicaId: 2})
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Fatalf("fetch against a silent leader: %v after %v, want an error within the 300ms round", err, took)
	}
	if s.stream != nil || !s.streamless.IsZero() {
		t.Fatalf("stream %v, streamless %v after the failed round: want no stream and streams still tried", s.stream, s.streamless)
	}
}
