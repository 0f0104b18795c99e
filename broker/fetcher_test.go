package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

// fetcherTestServer is a minimal leader-side BrokerService: Fetch and
// OffsetForLeaderEpoch served from leader Partitions with the real leader
// logic (UpdateFollowerFetch, ReadForFetch, OffsetForLeaderEpoch), with a
// crude long poll.
type fetcherTestServer struct {
	pb.UnimplementedBrokerServiceServer
	addr string
	srv  *grpc.Server

	mu           sync.Mutex
	parts        map[fetcherKey]*Partition
	fetchOffsets []int64 // fetch_offset of every partition fetched, in order
	epochAsks    int     // partitions asked about in OffsetForLeaderEpoch
	firstEvent   string  // "fetch" or "epoch"

	noLongPoll atomic.Bool // answer at once, ignoring max_wait
}

func fetcherTestServe(t *testing.T, parts ...*Partition) *fetcherTestServer {
	t.Helper()
	s := newFetcherTestServer(parts...)
	s.serve(t, s)
	return s
}

func newFetcherTestServer(parts ...*Partition) *fetcherTestServer {
	s := &fetcherTestServer{parts: map[fetcherKey]*Partition{}}
	for _, p := range parts {
		st, _ := p.State()
		s.parts[fetcherKey{st.Topic, st.Index}] = p
	}
	return s
}

// serve serves impl (s, or a type embedding it) on a new loopback port.
func (s *fetcherTestServer) serve(t *testing.T, impl pb.BrokerServiceServer) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr, s.srv = lis.Addr().String(), grpc.NewServer()
	pb.RegisterBrokerServiceServer(s.srv, impl)
	go s.srv.Serve(lis)
	t.Cleanup(s.srv.Stop)
}

func (s *fetcherTestServer) part(topic string, index int32) *Partition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parts[fetcherKey{topic, index}]
}

func fetcherTestCode(err error) pb.ErrorCode {
	switch {
	case errors.Is(err, ErrNotLeaderOrFollower):
		return pb.ErrorCode_NOT_LEADER_OR_FOLLOWER
	case errors.Is(err, ErrFencedLeaderEpoch):
		return pb.ErrorCode_FENCED_LEADER_EPOCH
	case errors.Is(err, ErrUnknownLeaderEpoch):
		return pb.ErrorCode_UNKNOWN_LEADER_EPOCH
	case errors.Is(err, storage.ErrOffsetOutOfRange):
		return pb.ErrorCode_OFFSET_OUT_OF_RANGE
	}
	return pb.ErrorCode_UNKNOWN_SERVER_ERROR
}

func (s *fetcherTestServer) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	s.mu.Lock()
	if s.firstEvent == "" {
		s.firstEvent = "fetch"
	}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			s.fetchOffsets = append(s.fetchOffsets, p.FetchOffset)
		}
	}
	s.mu.Unlock()
	deadline := time.Now().Add(time.Duration(req.MaxWaitMs) * time.Millisecond)
	for {
		resp, n, errored := s.fetchOnce(req)
		if n >= int(req.MinBytes) || errored || !time.Now().Before(deadline) || s.noLongPoll.Load() {
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (s *fetcherTestServer) fetchOnce(req *pb.FetchRequest) (*pb.FetchResponse, int, bool) {
	resp := &pb.FetchResponse{}
	n, errored := 0, false
	for _, t := range req.Topics {
		tr := &pb.FetchTopicResult{Topic: t.Topic}
		resp.Topics = append(resp.Topics, tr)
		for _, fp := range t.Partitions {
			r := &pb.FetchPartitionResult{Partition: fp.Partition, HighWatermark: -1, LastStableOffset: -1,
				LogStartOffset: -1, PreferredReadReplica: -1, NextFetchOffset: -1}
			tr.Partitions = append(tr.Partitions, r)
			p := s.part(t.Topic, fp.Partition)
			if p == nil {
				r.ErrorCode, errored = pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, true
				continue
			}
			maxBytes := int(fp.PartitionMaxBytes)
			if maxBytes <= 0 {
				maxBytes = 1 << 20
			}
			res, err := p.ReadForFetch(fp.FetchOffset, maxBytes, fp.CurrentLeaderEpoch, req.ReplicaId)
			if err == nil && req.ReplicaId >= 0 {
				_, _, err = p.UpdateFollowerFetch(req.ReplicaId, fp.FetchOffset, req.ReplicaEpoch)
			}
			var data []byte
			if err == nil {
				data, err = res.Region.Bytes(nil)
			}
			r.HighWatermark, r.LogStartOffset = p.HighWatermark(), p.Log().LogStartOffset()
			if err != nil {
				r.ErrorCode, r.ErrorMessage, errored = fetcherTestCode(err), err.Error(), true
				continue
			}
			r.Records = data
			n += len(data)
		}
	}
	return resp, n, errored
}

func (s *fetcherTestServer) OffsetForLeaderEpoch(ctx context.Context, req *pb.OffsetForLeaderEpochRequest) (*pb.OffsetForLeaderEpochResponse, error) {
	resp := &pb.OffsetForLeaderEpochResponse{}
	for _, t := range req.Topics {
		tr := &pb.OffsetForLeaderEpochTopicResult{Topic: t.Topic}
		resp.Topics = append(resp.Topics, tr)
		for _, q := range t.Partitions {
			s.mu.Lock()
			s.epochAsks++
			if s.firstEvent == "" {
				s.firstEvent = "epoch"
			}
			s.mu.Unlock()
			r := &pb.OffsetForLeaderEpochPartitionResult{Partition: q.Partition, LeaderEpoch: -1, EndOffset: -1}
			tr.Partitions = append(tr.Partitions, r)
			p := s.part(t.Topic, q.Partition)
			if p == nil {
				r.ErrorCode = pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION
				continue
			}
			e, end, err := p.OffsetForLeaderEpoch(q.CurrentLeaderEpoch, q.LeaderEpoch)
			if err != nil {
				r.ErrorCode, r.ErrorMessage = fetcherTestCode(err), err.Error()
				continue
			}
			r.LeaderEpoch, r.EndOffset = e, end
		}
	}
	return resp, nil
}

// fetcherTestDialer makes real loopback clients that count RPCs and the
// records bytes fetched per topic.
type fetcherTestDialer struct {
	calls atomic.Int64
	mu    sync.Mutex
	conns []*grpc.ClientConn
	bytes map[string]int64
}

func newFetcherTestDialer(t *testing.T) *fetcherTestDialer {
	d := &fetcherTestDialer{bytes: map[string]int64{}}
	t.Cleanup(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, c := range d.conns {
			c.Close()
		}
	})
	return d
}

func (d *fetcherTestDialer) dial(ctx context.Context, leaderID int32, addr string) (pb.BrokerServiceClient, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, cc)
	d.mu.Unlock()
	return fetcherTestClient{pb.NewBrokerServiceClient(cc), d}, nil
}

func (d *fetcherTestDialer) fetched(topic string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bytes[topic]
}

type fetcherTestClient struct {
	pb.BrokerServiceClient
	d *fetcherTestDialer
}

func (c fetcherTestClient) Fetch(ctx context.Context, req *pb.FetchRequest, opts ...grpc.CallOption) (*pb.FetchResponse, error) {
	c.d.calls.Add(1)
	resp, err := c.BrokerServiceClient.Fetch(ctx, req, opts...)
	if err == nil {
		c.d.mu.Lock()
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				c.d.bytes[t.Topic] += int64(len(p.Records))
			}
		}
		c.d.mu.Unlock()
	}
	return resp, err
}

func (c fetcherTestClient) OffsetForLeaderEpoch(ctx context.Context, req *pb.OffsetForLeaderEpochRequest, opts ...grpc.CallOption) (*pb.OffsetForLeaderEpochResponse, error) {
	c.d.calls.Add(1)
	return c.BrokerServiceClient.OffsetForLeaderEpoch(ctx, req, opts...)
}

// fetcherTestPartition opens a replica of topic-0 on broker in a temp dir.
func fetcherTestPartition(t *testing.T, broker int32) *Partition {
	t.Helper()
	cfg := storage.DefaultConfig()
	cfg.RetentionMs = -1
	cfg.MaxIndexSize = 64 << 10
	l, err := storage.Open(t.TempDir(), cfg, storage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return NewPartition(broker, l, PartitionConfig{MinInsyncReplicas: 1, ReplicaLagTimeMax: time.Minute}, nil)
}

func fetcherTestState(topic string, leader, epoch int32, isr ...int32) PartitionState {
	return PartitionState{Topic: topic, Index: 0, Replicas: []int32{1, 2, 3}, ISR: isr,
		Leader: leader, LeaderEpoch: epoch, PartitionEpoch: epoch}
}

// fetcherTestApply makes p leader or follower per st.
func fetcherTestApply(t *testing.T, st PartitionState, ps ...*Partition) {
	t.Helper()
	for _, p := range ps {
		var err error
		if p.broker == st.Leader {
			_, err = p.MakeLeader(st)
		} else {
			_, err = p.MakeFollower(st)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// fetcherTestProduce appends n one-record batches "tag-i" (padded to size
// bytes when size > 0) on leader p.
func fetcherTestProduce(t *testing.T, p *Partition, tag string, n, size int) {
	t.Helper()
	b := record.NewBuilder(record.BatchOptions{})
	for i := range n {
		b.Reset(record.BatchOptions{})
		v := fmt.Appendf(nil, "%s-%d", tag, i)
		if len(v) < size {
			v = append(v, bytes.Repeat([]byte{'.'}, size-len(v))...)
		}
		b.Append(int64(i), nil, v, nil)
		out, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.AppendAsLeader(bytes.Clone(out), 1); err != nil {
			t.Fatal(err)
		}
	}
}

// fetcherTestCopy replicates from's log into to (a follower) directly.
func fetcherTestCopy(t *testing.T, from, to *Partition) {
	t.Helper()
	for to.Log().LogEndOffset() < from.Log().LogEndOffset() {
		r, err := from.Log().Read(to.Log().LogEndOffset(), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		data, err := r.Bytes(nil)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := fetcherWholeBatches(data, to.Log().LogEndOffset())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := to.AppendAsFollower(whole, from.HighWatermark()); err != nil {
			t.Fatal(err)
		}
	}
}

// fetcherTestValues reads every record value of p's log.
func fetcherTestValues(t *testing.T, p *Partition) []string {
	t.Helper()
	var out []string
	var it record.Iterator
	l := p.Log()
	for off := l.LogStartOffset(); off < l.LogEndOffset(); {
		r, err := l.Read(off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		data, err := r.Bytes(nil)
		if err != nil {
			t.Fatal(err)
		}
		for len(data) > 0 {
			b, err := record.Parse(data)
			if err != nil {
				break
			}
			it.Reset(b)
			for it.Next() {
				v := string(it.Record().Value)
				if i := bytes.IndexByte([]byte(v), '.'); i >= 0 {
					v = v[:i]
				}
				out = append(out, v)
			}
			off = b.NextOffset()
			data = data[len(b):]
		}
	}
	return out
}

func fetcherTestWait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fetcherTestManager(t *testing.T, broker int32, d *fetcherTestDialer, cfg FetcherConfig, onAppend func(*Partition)) *FetcherManager {
	m := NewFetcherManager(broker, func() int64 { return 7 }, d.dial, cfg, nil, onAppend)
	t.Cleanup(m.Close)
	return m
}

// The follower catches up to the leader's log end and high watermark over
// several fetches, and the leader's HW advances because the follower's
// fetches report its log end.
func TestFetcherCatchesUp(t *testing.T) {
	leader, follower := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2)
	st := fetcherTestState("t", 1, 1, 1, 2)
	fetcherTestApply(t, st, leader, follower)
	fetcherTestProduce(t, leader, "a", 100, 100)
	if leader.HighWatermark() != 0 {
		t.Fatalf("leader HW %d before the follower fetched", leader.HighWatermark())
	}
	srv := fetcherTestServe(t, leader)
	d := newFetcherTestDialer(t)
	var appends atomic.Int64
	m := fetcherTestManager(t, 2, d, FetcherConfig{MaxWait: 100 * time.Millisecond, PartitionMaxBytes: 2048, Backoff: 20 * time.Millisecond},
		func(p *Partition) {
			if p == follower {
				appends.Add(1)
			}
		})
	m.AddPartition(follower, 1, srv.addr, false)
	if m.Partitions(1) != 1 {
		t.Fatalf("Partitions(1) = %d", m.Partitions(1))
	}
	caughtUp := func() bool {
		end := leader.Log().LogEndOffset()
		return follower.Log().LogEndOffset() == end && leader.HighWatermark() == end && follower.HighWatermark() == end
	}
	fetcherTestWait(t, 10*time.Second, "the follower to catch up", caughtUp)
	if got, want := fetcherTestValues(t, follower), fetcherTestValues(t, leader); !slices.Equal(got, want) {
		t.Fatalf("follower has %d records, leader %d", len(got), len(want))
	}
	srv.mu.Lock()
	offsets := slices.Clone(srv.fetchOffsets)
	srv.mu.Unlock()
	if len(offsets) < 5 || !slices.IsSorted(offsets) {
		t.Fatalf("fetch offsets %v: want several, non-decreasing", offsets)
	}
	if appends.Load() == 0 {
		t.Fatal("onAppend never ran")
	}
	// Records produced later arrive through the long poll.
	fetcherTestProduce(t, leader, "b", 5, 0)
	fetcherTestWait(t, 10*time.Second, "the follower to catch up again", caughtUp)
	if got := fetcherTestValues(t, follower); got[len(got)-1] != "b-4" {
		t.Fatalf("last record %q", got[len(got)-1])
	}
}

// KIP-101's divergence: the follower holds records of an older epoch the new
// leader never had. It truncates via OffsetForLeaderEpoch before it fetches
// and ends identical to the leader.
func TestFetcherTruncatesDivergentTail(t *testing.T) {
	a, b := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2)
	// Epoch 1, led by 2: m-0 reaches 1; old-0..2 do not.
	st1 := fetcherTestState("t", 2, 1, 1, 2)
	fetcherTestApply(t, st1, a, b)
	fetcherTestProduce(t, b, "m", 1, 0)
	fetcherTestCopy(t, b, a)
	fetcherTestProduce(t, b, "old", 3, 0)
	// Epoch 2, led by 1, which writes new-0, new-1 at offsets 1 and 2.
	st2 := fetcherTestState("t", 1, 2, 1, 2)
	fetcherTestApply(t, st2, a, b)
	fetcherTestProduce(t, a, "new", 2, 0)
	if b.Log().LogEndOffset() != 4 || a.Log().LogEndOffset() != 3 {
		t.Fatalf("setup: LEOs %d, %d", b.Log().LogEndOffset(), a.Log().LogEndOffset())
	}

	srv := fetcherTestServe(t, a)
	d := newFetcherTestDialer(t)
	m := fetcherTestManager(t, 2, d, FetcherConfig{MaxWait: 50 * time.Millisecond, Backoff: 20 * time.Millisecond}, nil)
	m.AddPartition(b, 1, srv.addr, false)
	want := []string{"m-0", "new-0", "new-1"}
	fetcherTestWait(t, 10*time.Second, "the follower to match the leader", func() bool {
		return b.Log().LogEndOffset() == 3 && b.HighWatermark() == 3
	})
	if got := fetcherTestValues(t, b); !slices.Equal(got, want) {
		t.Fatalf("follower has %v, want %v", got, want)
	}
	if got := fetcherTestValues(t, a); !slices.Equal(got, want) {
		t.Fatalf("leader has %v, want %v", got, want)
	}
	if e := b.LatestEpoch(); e != 2 {
		t.Fatalf("follower's latest epoch %d, want 2", e)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.firstEvent != "epoch" || srv.epochAsks == 0 {
		t.Fatalf("first request was %q (%d epoch asks): want OffsetForLeaderEpoch first", srv.firstEvent, srv.epochAsks)
	}
	if srv.fetchOffsets[0] != 1 {
		t.Fatalf("first fetch at %d, want 1 (after truncating the old tail)", srv.fetchOffsets[0])
	}
}

// The leader's log starts past the follower's end (it deleted what the
// follower lacks): the follower starts its log over at the leader's start.
func TestFetcherLeaderLogStartPastFollowerEnd(t *testing.T) {
	leader, follower := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2)
	// The follower once led epoch 0 and wrote 5 records.
	fetcherTestApply(t, fetcherTestState("t", 2, 0, 2), follower)
	fetcherTestProduce(t, follower, "x", 5, 0)
	// The leader's log starts at 50.
	if err := leader.Log().TruncateFullyAndStartAt(50); err != nil {
		t.Fatal(err)
	}
	st := fetcherTestState("t", 1, 1, 1, 2)
	fetcherTestApply(t, st, leader, follower)
	fetcherTestProduce(t, leader, "y", 10, 0)

	srv := fetcherTestServe(t, leader)
	d := newFetcherTestDialer(t)
	m := fetcherTestManager(t, 2, d, FetcherConfig{MaxWait: 50 * time.Millisecond, Backoff: 20 * time.Millisecond}, nil)
	m.AddPartition(follower, 1, srv.addr, false)
	fetcherTestWait(t, 10*time.Second, "the follower to restart at 50 and catch up", func() bool {
		return follower.Log().LogStartOffset() == 50 && follower.Log().LogEndOffset() == 60
	})
	if got, want := fetcherTestValues(t, follower), fetcherTestValues(t, leader); !slices.Equal(got, want) || len(got) != 10 {
		t.Fatalf("follower has %v, leader %v", got, want)
	}
}

// The leader dies: the fetcher backs off without spinning, and resumes when
// the partition moves to a new leader on another address.
func TestFetcherLeaderFailover(t *testing.T) {
	l1, f, l3 := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2), fetcherTestPartition(t, 3)
	st1 := fetcherTestState("t", 1, 1, 1, 2, 3)
	fetcherTestApply(t, st1, l1, f, l3)
	fetcherTestProduce(t, l1, "a", 20, 0)
	fetcherTestCopy(t, l1, l3)

	srv1 := fetcherTestServe(t, l1)
	d := newFetcherTestDialer(t)
	const backoff = 100 * time.Millisecond
	m := fetcherTestManager(t, 2, d, FetcherConfig{MaxWait: 100 * time.Millisecond, Backoff: backoff}, nil)
	m.AddPartition(f, 1, srv1.addr, false)
	fetcherTestWait(t, 10*time.Second, "the follower to catch up", func() bool { return f.Log().LogEndOffset() == 20 })

	srv1.srv.Stop()
	time.Sleep(150 * time.Millisecond)
	c0 := d.calls.Load()
	const window = 600 * time.Millisecond
	time.Sleep(window)
	calls := d.calls.Load() - c0
	if calls < 1 || calls > int64(2*window/backoff)+2 {
		t.Fatalf("%d RPCs in %v with the leader down and backoff %v: want a few, not a spin", calls, window, backoff)
	}
	if m.Partitions(1) != 1 {
		t.Fatal("the partition left its source on a transport error")
	}

	// 3 takes over in epoch 2 and writes more; metadata moves the partition.
	st2 := fetcherTestState("t", 3, 2, 2, 3)
	fetcherTestApply(t, st2, l3, f)
	fetcherTestProduce(t, l3, "b", 10, 0)
	srv3 := fetcherTestServe(t, l3)
	m.AddPartition(f, 3, srv3.addr, false)
	if m.Partitions(1) != 0 || m.Partitions(3) != 1 {
		t.Fatalf("Partitions: leader 1 %d, leader 3 %d", m.Partitions(1), m.Partitions(3))
	}
	fetcherTestWait(t, 10*time.Second, "the follower to catch up with the new leader", func() bool {
		return f.Log().LogEndOffset() == 30 && f.HighWatermark() == 30
	})
	if got, want := fetcherTestValues(t, f), fetcherTestValues(t, l3); !slices.Equal(got, want) {
		t.Fatalf("follower %v, leader %v", got, want)
	}
	m.RemovePartition(f)
	if m.Partitions(3) != 0 {
		t.Fatal("RemovePartition left the partition")
	}
}

// A leader epoch newer in the partition's state than the fetcher truncated
// under makes it truncate again, without AddPartition; meanwhile a fenced
// epoch keeps the partition and backs off.
func TestFetcherNewLeaderEpochRetruncates(t *testing.T) {
	leader, follower := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2)
	st1 := fetcherTestState("t", 1, 1, 1, 2)
	fetcherTestApply(t, st1, leader, follower)
	fetcherTestProduce(t, leader, "a", 3, 0)
	srv := fetcherTestServe(t, leader)
	d := newFetcherTestDialer(t)
	m := fetcherTestManager(t, 2, d, FetcherConfig{MaxWait: 50 * time.Millisecond, Backoff: 20 * time.Millisecond}, nil)
	m.AddPartition(follower, 1, srv.addr, false)
	fetcherTestWait(t, 10*time.Second, "catch up", func() bool { return follower.Log().LogEndOffset() == 3 })

	// The leader moves on to epoch 2 before the follower hears of it: FENCED.
	st2 := fetcherTestState("t", 1, 2, 1, 2)
	fetcherTestApply(t, st2, leader)
	fetcherTestProduce(t, leader, "b", 2, 0)
	time.Sleep(200 * time.Millisecond)
	if follower.Log().LogEndOffset() != 3 {
		t.Fatalf("fetched under a fenced epoch: LEO %d", follower.Log().LogEndOffset())
	}
	srv.mu.Lock()
	asks := srv.epochAsks
	srv.mu.Unlock()
	fetcherTestApply(t, st2, follower)
	fetcherTestWait(t, 10*time.Second, "catch up in epoch 2", func() bool { return follower.Log().LogEndOffset() == 5 })
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.epochAsks <= asks {
		t.Fatal("no OffsetForLeaderEpoch after the leader epoch changed")
	}
}

// Close returns promptly with a fetch in a long poll and a source backing off.
func TestFetcherCloseIsPrompt(t *testing.T) {
	leader, follower := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2)
	st := fetcherTestState("t", 1, 1, 1, 2)
	fetcherTestApply(t, st, leader, follower)
	fetcherTestProduce(t, leader, "a", 1, 0)
	srv := fetcherTestServe(t, leader)
	orphan := fetcherTestPartition(t, 2)
	fetcherTestApply(t, fetcherTestState("g", 9, 1, 9, 2), orphan)

	d := newFetcherTestDialer(t)
	m := NewFetcherManager(2, nil, d.dial, FetcherConfig{MaxWait: 5 * time.Second, Backoff: 10 * time.Second}, nil, nil)
	m.AddPartition(follower, 1, srv.addr, false)
	m.AddPartition(orphan, 9, "127.0.0.1:1", false) // nothing listens there
	fetcherTestWait(t, 10*time.Second, "catch up", func() bool { return follower.Log().LogEndOffset() == 1 })
	time.Sleep(100 * time.Millisecond) // now in a 5 s long poll, and in a 10 s backoff
	start := time.Now()
	m.Close()
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Close took %v", el)
	}
	m.Close()
	m.AddPartition(follower, 1, srv.addr, false)
	if m.Partitions(1) != 0 {
		t.Fatal("AddPartition after Close started a fetcher")
	}
}

// The throttle holds throttled partitions to its rate while the others
// replicate at full speed. A bound check on a rate limiter, with generous
// margins; not a performance assertion.
func TestFetcherThrottle(t *testing.T) {
	slowL, slowF := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2)
	fastL, fastF := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2)
	fetcherTestApply(t, fetcherTestState("slow", 1, 1, 1, 2), slowL, slowF)
	fetcherTestApply(t, fetcherTestState("fast", 1, 1, 1, 2), fastL, fastF)
	fetcherTestProduce(t, slowL, "s", 300, 1000)
	fetcherTestProduce(t, fastL, "f", 300, 1000)
	srv := fetcherTestServe(t, slowL, fastL)
	d := newFetcherTestDialer(t)
	const rate = 64 << 10
	// The default MaxWait: the source long-polls for the caught-up fast
	// partition while the slow one waits for tokens.
	m := fetcherTestManager(t, 2, d, FetcherConfig{Backoff: 20 * time.Millisecond,
		PartitionMaxBytes: 64 << 10, ThrottleBytesPerSec: rate}, nil)
	start := time.Now()
	m.AddPartition(slowF, 1, srv.addr, true)
	m.AddPartition(fastF, 1, srv.addr, false)
	fetcherTestWait(t, 10*time.Second, "the unthrottled partition to catch up", func() bool {
		return fastF.Log().LogEndOffset() == fastL.Log().LogEndOffset()
	})
	time.Sleep(time.Second - time.Since(start))
	el := time.Since(start).Seconds()
	got := d.fetched("slow")
	// The rate over the interval, the bucket's burst, a batch per fetch.
	burst := m.cfg.MaxWait + fetcherThrottleSlack
	hi := 1.5*rate*el + burst.Seconds()*rate + 8<<10
	lo := 0.1 * rate * el // anything but a stall; the machine may be loaded
	t.Logf("throttled: %d bytes in %.2fs at %d B/s (allowed %.0f..%.0f)", got, el, rate, lo, hi)
	if float64(got) > hi || float64(got) < lo {
		t.Fatalf("throttled partition fetched %d bytes in %.2fs at %d B/s; want between %.0f and %.0f", got, el, rate, lo, hi)
	}
	if slowF.Log().LogEndOffset() >= slowL.Log().LogEndOffset() {
		t.Fatal("the throttled partition caught up already")
	}
}

// The bucket in isolation, on a fake clock.
func TestFetcherThrottleBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := newFetchThrottle(1000, 250*time.Millisecond, func() time.Time { return now })
	if got := tb.reserve(600); got != 250 { // starts full: a quarter second
		t.Fatalf("first reserve %d, want 250", got)
	}
	if got := tb.reserve(10); got != 0 {
		t.Fatalf("empty bucket gave %d", got)
	}
	tb.settle(250, 450) // a batch larger than reserved: 200 bytes of debt
	if d := tb.delay(); d != 201*time.Millisecond {
		t.Fatalf("delay %v, want 201ms", d)
	}
	now = now.Add(300 * time.Millisecond)
	if got := tb.reserve(1000); got != 100 {
		t.Fatalf("after repaying the debt got %d, want 100", got)
	}
	tb.settle(100, 0) // unused bytes go back
	if got := tb.reserve(1000); got != 100 {
		t.Fatalf("refund: got %d, want 100", got)
	}
	now = now.Add(time.Hour)
	if got := tb.reserve(1000); got != 250 {
		t.Fatalf("the bucket holds at most its burst: got %d", got)
	}
}

// fetcherWholeBatches drops a trailing partial batch and batches before the offset.
func TestFetcherWholeBatches(t *testing.T) {
	var all []byte
	b := record.NewBuilder(record.BatchOptions{})
	for i := range 3 {
		b.Reset(record.BatchOptions{})
		b.Append(0, nil, []byte("v"), nil)
		out, _ := b.Build()
		out.SetBaseOffset(int64(i))
		all = append(all, out...)
	}
	one := len(all) / 3
	for _, tc := range []struct {
		data   []byte
		offset int64
		want   []byte
	}{
		{all, 0, all},
		{all[:len(all)-5], 0, all[:2*one]},
		{all, 2, all[2*one:]},
		{all[:one-1], 0, all[:0]},
		{nil, 0, nil},
	} {
		got, err := fetcherWholeBatches(tc.data, tc.offset)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Fatalf("len %d offset %d: got %d bytes (%v), want %d", len(tc.data), tc.offset, len(got), err, len(tc.want))
		}
	}
	bad := slices.Clone(all)
	bad[one+record.MagicOffset] = 9
	if _, err := fetcherWholeBatches(bad, 0); !errors.Is(err, record.ErrCorruptRecord) {
		t.Fatalf("corrupt magic: %v", err)
	}
}

// A fetch answer larger than gRPC's default 4 MiB receive limit still
// arrives: the fetcher raises the limit per call to what it asked for.
func TestFetcherLargeResponse(t *testing.T) {
	leader, follower := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2)
	st := fetcherTestState("t", 1, 1, 1, 2)
	fetcherTestApply(t, st, leader, follower)
	fetcherTestProduce(t, leader, "big", 60, 100<<10) // 6 MiB
	srv := fetcherTestServe(t, leader)
	d := newFetcherTestDialer(t)
	m := fetcherTestManager(t, 2, d, FetcherConfig{MaxWait: 50 * time.Millisecond, Backoff: 20 * time.Millisecond,
		PartitionMaxBytes: 8 << 20}, nil)
	m.AddPartition(follower, 1, srv.addr, false)
	fetcherTestWait(t, 10*time.Second, "the follower to catch up", func() bool {
		return follower.Log().LogEndOffset() == leader.Log().LogEndOffset()
	})
	if d.fetched("t") < leader.Log().Size() || leader.Log().Size() < 6e6 {
		t.Fatalf("fetched %d bytes of a %d-byte log", d.fetched("t"), leader.Log().Size())
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.fetchOffsets[0] != 0 || len(srv.fetchOffsets) > 3 {
		t.Fatalf("fetch offsets %v: want the whole log in one answer", srv.fetchOffsets)
	}
}

// A leader that answers empty fetches at once (no long poll) does not make
// the fetcher spin.
func TestFetcherNoSpinWithoutLongPoll(t *testing.T) {
	leader, follower := fetcherTestPartition(t, 1), fetcherTestPartition(t, 2)
	st := fetcherTestState("t", 1, 1, 1, 2)
	fetcherTestApply(t, st, leader, follower)
	fetcherTestProduce(t, leader, "a", 3, 0)
	srv := fetcherTestServe(t, leader)
	srv.noLongPoll.Store(true)
	d := newFetcherTestDialer(t)
	const backoff = 100 * time.Millisecond
	m := fetcherTestManager(t, 2, d, FetcherConfig{MaxWait: time.Second, Backoff: backoff}, nil)
	m.AddPartition(follower, 1, srv.addr, false)
	fetcherTestWait(t, 10*time.Second, "catch up", func() bool { return follower.HighWatermark() == 3 })
	c0 := d.calls.Load()
	const window = 500 * time.Millisecond
	time.Sleep(window)
	if n := d.calls.Load() - c0; n > int64(fetcherFastEmptyLimit+1)*int64(window/backoff+1) {
		t.Fatalf("%d fetches in %v against a leader that does not long-poll", n, window)
	}
	// New records still arrive.
	fetcherTestProduce(t, leader, "b", 1, 0)
	fetcherTestWait(t, 10*time.Second, "the new record", func() bool { return follower.Log().LogEndOffset() == 4 })
}
