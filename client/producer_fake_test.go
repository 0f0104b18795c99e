package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage/record"
)

// fakeBroker is a scripted one-node BrokerService: topic "t" with
// partitions leaders on itself. failures decides each Produce partition's
// answer; successful records are kept per partition in arrival order.
type fakeBroker struct {
	pb.UnimplementedBrokerServiceServer
	addr       string
	partitions int32
	delay      time.Duration

	mu   sync.Mutex
	fail func(partition int32, attempt int) pb.ErrorCode // nil: always succeed
	// failAfter answers an error for records it stored (a lost answer, an
	// acks=all timeout): the producer resends what is stored already.
	failAfter func(partition int32, attempt int) pb.ErrorCode
	attempts  map[int32]int
	seqs      map[int32]*fakeSeqState // idempotent producers' state per partition
	pids      int64
	log       map[int32][]string
	inflight  int
	maxIn     int
	partIn    map[int32]int
	maxPart   int

	metadataCalls int
}

func newFakeBroker(t *testing.T, partitions int32) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBroker{addr: ln.Addr().String(), partitions: partitions, attempts: map[int32]int{}, log: map[int32][]string{}, partIn: map[int32]int{}, seqs: map[int32]*fakeSeqState{}}
	s := grpc.NewServer()
	pb.RegisterBrokerServiceServer(s, f)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return f
}

func (f *fakeBroker) Metadata(context.Context, *pb.MetadataRequest) (*pb.MetadataResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.metadataCalls++
	host, port, _ := net.SplitHostPort(f.addr)
	p, _ := strconv.Atoi(port)
	t := &pb.MetadataTopicResult{Name: "t"}
	for i := range f.partitions {
		t.Partitions = append(t.Partitions, &pb.MetadataPartitionResult{Partition: i, LeaderId: 1, LeaderEpoch: 1, Replicas: []int32{1}, Isr: []int32{1}})
	}
	return &pb.MetadataResponse{ClusterId: "fake", MetadataOffset: int64(f.metadataCalls), Brokers: []*pb.BrokerNode{{NodeId: 1, Host: host, Port: int32(p)}}, Topics: []*pb.MetadataTopicResult{t}}, nil
}

// fakeSeqState is one partition's idempotent producer state, as the
// broker keeps it (storage/producerstate.go), for one producer id.
type fakeSeqState struct {
	epoch  int16
	next   int32
	ranges []fakeRange // every stored batch
}

type fakeRange struct {
	epoch       int16
	first, last int32
	offset      int64
}

func (f *fakeBroker) InitProducerId(context.Context, *pb.InitProducerIdRequest) (*pb.InitProducerIdResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pids++
	return &pb.InitProducerIdResponse{ProducerId: 1000 + f.pids}, nil
}

// checkSeqLocked is the leader's sequence check for one partition's
// batches: a duplicate answers its first offset, a gap or old epoch an error.
func (f *fakeBroker) checkSeqLocked(part int32, batches []record.Batch) (dupOffset int64, code pb.ErrorCode) {
	st := f.seqs[part]
	b := batches[0]
	if b.ProducerID() == record.NoProducerID {
		return -1, pb.ErrorCode_NONE
	}
	if st != nil && b.ProducerEpoch() == st.epoch {
		for _, r := range st.ranges {
			if r.epoch == b.ProducerEpoch() && r.first == b.BaseSequence() {
				return r.offset, pb.ErrorCode_NONE
			}
		}
	}
	switch {
	case st == nil:
		if b.BaseSequence() != 0 {
			return -1, pb.ErrorCode_UNKNOWN_PRODUCER_ID
		}
	case b.ProducerEpoch() < st.epoch:
		return -1, pb.ErrorCode_INVALID_PRODUCER_EPOCH
	case b.ProducerEpoch() > st.epoch:
		if b.BaseSequence() != 0 {
			return -1, pb.ErrorCode_OUT_OF_ORDER_SEQUENCE_NUMBER
		}
	case b.BaseSequence() != st.next:
		return -1, pb.ErrorCode_OUT_OF_ORDER_SEQUENCE_NUMBER
	}
	return -1, pb.ErrorCode_NONE
}

func (f *fakeBroker) Produce(ctx context.Context, req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	f.mu.Lock()
	f.inflight++
	f.maxIn = max(f.maxIn, f.inflight)
	for _, t := range req.Topics {
		for _, pp := range t.Partitions {
			f.partIn[pp.Partition]++
			f.maxPart = max(f.maxPart, f.partIn[pp.Partition])
		}
	}
	f.mu.Unlock()
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight--
	resp := &pb.ProduceResponse{}
	for _, t := range req.Topics {
		tr := &pb.ProduceTopicResult{Topic: t.Topic}
		resp.Topics = append(resp.Topics, tr)
		for _, pp := range t.Partitions {
			f.partIn[pp.Partition]--
			f.attempts[pp.Partition]++
			attempt := f.attempts[pp.Partition]
			r := &pb.ProducePartitionResult{Partition: pp.Partition, BaseOffset: -1, LogAppendTimeMs: -1}
			tr.Partitions = append(tr.Partitions, r)
			if f.fail != nil {
				if code := f.fail(pp.Partition, attempt); code != pb.ErrorCode_NONE {
					r.ErrorCode, r.ErrorMessage = code, "scripted"
					continue
				}
			}
			var batches []record.Batch
			for buf := pp.Records; len(buf) > 0; {
				b, err := record.Parse(buf)
				if err != nil || b.Validate() != nil {
					return nil, fmt.Errorf("bad batch: %v", err)
				}
				batches = append(batches, b)
				buf = buf[len(b):]
			}
			// Like the broker, a batch ahead of its sequence waits a
			// moment for the requests before it (handlers run concurrently).
			dup, code := f.checkSeqLocked(pp.Partition, batches)
			for wait := time.Now().Add(300 * time.Millisecond); (code == pb.ErrorCode_OUT_OF_ORDER_SEQUENCE_NUMBER || code == pb.ErrorCode_UNKNOWN_PRODUCER_ID) && time.Now().Before(wait); {
				f.mu.Unlock()
				time.Sleep(time.Millisecond)
				f.mu.Lock()
				dup, code = f.checkSeqLocked(pp.Partition, batches)
			}
			if code != pb.ErrorCode_NONE {
				r.ErrorCode, r.ErrorMessage = code, "sequence"
				continue
			}
			if dup >= 0 {
				r.BaseOffset = dup
				continue
			}
			r.BaseOffset = int64(len(f.log[pp.Partition]))
			var it record.Iterator
			for _, b := range batches {
				if b.ProducerID() != record.NoProducerID {
					st := f.seqs[pp.Partition]
					if st == nil || st.epoch != b.ProducerEpoch() {
						st = &fakeSeqState{epoch: b.ProducerEpoch()}
						f.seqs[pp.Partition] = st
					}
					st.ranges = append(st.ranges, fakeRange{b.ProducerEpoch(), b.BaseSequence(), b.BaseSequence() + b.LastOffsetDelta(), int64(len(f.log[pp.Partition]))})
					st.next = b.BaseSequence() + b.LastOffsetDelta() + 1
				}
				it.Reset(b)
				for it.Next() {
					f.log[pp.Partition] = append(f.log[pp.Partition], string(it.Record().Value))
				}
			}
			if f.failAfter != nil {
				if code := f.failAfter(pp.Partition, attempt); code != pb.ErrorCode_NONE {
					r.BaseOffset, r.ErrorCode, r.ErrorMessage = -1, code, "scripted after the append"
				}
			}
		}
	}
	return resp, nil
}

func fakeProducer(t *testing.T, f *fakeBroker, cfg client.ProducerConfig) *client.Producer {
	t.Helper()
	return fakeProducerAge(t, f, cfg, 0)
}

func fakeProducerAge(t *testing.T, f *fakeBroker, cfg client.ProducerConfig, maxAge time.Duration) *client.Producer {
	t.Helper()
	cl, err := client.New(client.Config{Bootstrap: []string{f.addr}, RequestTimeout: 5 * time.Second, MetadataMaxAge: maxAge})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return prodNew(t, cl, cfg)
}

// TestProducerRetriesKeepOrder: without idempotence, retriable answers are
// retried with backoff and a partition's later batches wait behind the
// failing one (one request per partition in flight), so the log holds every
// goroutine's records in Send order, each once.
func TestProducerRetriesKeepOrder(t *testing.T) {
	f := newFakeBroker(t, 2)
	f.delay = 2 * time.Millisecond
	f.fail = func(_ int32, attempt int) pb.ErrorCode {
		switch attempt % 5 {
		case 1:
			return pb.ErrorCode_NOT_LEADER_OR_FOLLOWER
		case 3:
			return pb.ErrorCode_NOT_ENOUGH_REPLICAS
		}
		return pb.ErrorCode_NONE
	}
	p := fakeProducer(t, f, client.ProducerConfig{BatchSize: 512, MaxRequestSize: 1024, Linger: time.Millisecond, RetryBackoff: time.Millisecond, MaxInFlight: 2, DisableIdempotence: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	futs := make([][]*client.Future, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				futs[g] = append(futs[g], p.Send(ctx, &client.Record{Topic: "t", Partition: int32(g % 2), Value: fmt.Appendf(nil, "%d-%d", g, i)}))
			}
		})
	}
	wg.Wait()
	for g := range futs {
		for i, fu := range futs[g] {
			md, err := fu.Wait(ctx)
			if err != nil {
				t.Fatalf("%d-%d: %v", g, i, err)
			}
			f.mu.Lock()
			got := f.log[md.Partition][md.Offset]
			f.mu.Unlock()
			if want := fmt.Sprintf("%d-%d", g, i); got != want {
				t.Fatalf("offset %d-%d holds %q, want %q", md.Partition, md.Offset, got, want)
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for part, vals := range f.log {
		next := map[byte]int{}
		for _, v := range vals {
			var g, i int
			fmt.Sscanf(v, "%d-%d", &g, &i)
			if i != next[byte(g)] {
				t.Fatalf("partition %d: %s after %d-%d (order broken or duplicate)", part, v, g, next[byte(g)]-1)
			}
			next[byte(g)]++
		}
		if len(vals) != 600 {
			t.Fatalf("partition %d holds %d records, want 600", part, len(vals))
		}
	}
	for part, n := range f.attempts {
		if n < 3 {
			t.Fatalf("partition %d: %d requests, the script fails the 1st and 3rd of every 5", part, n)
		}
	}
	if f.maxPart > 1 {
		t.Fatalf("%d requests in flight for one partition", f.maxPart)
	}
	if f.maxIn > 2 {
		t.Fatalf("%d requests in flight to the broker, MaxInFlight 2", f.maxIn)
	}
}

// TestProducerErrorKinds: a non-retriable answer fails the batch at once;
// NoRetries fails on the first retriable answer; a capped retry count is
// honoured; retries stop at DeliveryTimeout with ErrDeliveryTimeout.
func TestProducerErrorKinds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name     string
		code     pb.ErrorCode
		cfg      client.ProducerConfig
		attempts int
		timeout  bool
	}{
		{"NonRetriable", pb.ErrorCode_CORRUPT_MESSAGE, client.ProducerConfig{}, 1, false},
		{"NoRetries", pb.ErrorCode_NOT_LEADER_OR_FOLLOWER, client.ProducerConfig{Retries: client.NoRetries}, 1, false},
		{"ThreeRetries", pb.ErrorCode_REQUEST_TIMED_OUT, client.ProducerConfig{Retries: 3, RetryBackoff: time.Millisecond}, 4, false},
		{"DeliveryTimeout", pb.ErrorCode_LEADER_NOT_AVAILABLE, client.ProducerConfig{RetryBackoff: 10 * time.Millisecond, DeliveryTimeout: 300 * time.Millisecond}, -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeBroker(t, 1)
			f.fail = func(int32, int) pb.ErrorCode { return tc.code }
			p := fakeProducer(t, f, tc.cfg)
			start := time.Now()
			_, err := p.SendSync(ctx, &client.Record{Topic: "t", Partition: 0, Value: []byte("v")})
			if prodCode(err) != tc.code {
				t.Fatalf("error %v, want code %v", err, tc.code)
			}
			if errors.Is(err, client.ErrDeliveryTimeout) != tc.timeout {
				t.Fatalf("error %v: ErrDeliveryTimeout %v, want %v", err, !tc.timeout, tc.timeout)
			}
			f.mu.Lock()
			n := f.attempts[0]
			f.mu.Unlock()
			if tc.attempts > 0 && n != tc.attempts {
				t.Fatalf("%d attempts, want %d", n, tc.attempts)
			}
			if tc.timeout && (n < 3 || time.Since(start) < 300*time.Millisecond) {
				t.Fatalf("%d attempts in %v before the delivery timeout", n, time.Since(start))
			}
		})
	}
}

// TestProducerMetadataRefresh: the metadata is refreshed every
// MetadataMaxAge (partitions added to a topic become usable) and after a
// NOT_LEADER_OR_FOLLOWER answer.
func TestProducerMetadataRefresh(t *testing.T) {
	f := newFakeBroker(t, 1)
	p := fakeProducerAge(t, f, client.ProducerConfig{RetryBackoff: 10 * time.Millisecond}, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.SendSync(ctx, &client.Record{Topic: "t", Partition: 0, Value: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.partitions = 3
	f.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := p.SendSync(ctx, &client.Record{Topic: "t", Partition: 2, Value: []byte("b")})
		if err == nil {
			break
		}
		if prodCode(err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION || time.Now().After(deadline) {
			t.Fatalf("partition 2 after the topic grew: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A second producer whose timer never fires within the test.
	f2 := newFakeBroker(t, 2)
	p2 := fakeProducerAge(t, f2, client.ProducerConfig{RetryBackoff: 10 * time.Millisecond}, time.Hour)
	if _, err := p2.SendSync(ctx, &client.Record{Topic: "t", Partition: 0, Value: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	f2.mu.Lock()
	before := f2.metadataCalls
	f2.fail = func(part int32, attempt int) pb.ErrorCode {
		if part == 1 && attempt == 1 {
			return pb.ErrorCode_NOT_LEADER_OR_FOLLOWER
		}
		return pb.ErrorCode_NONE
	}
	f2.mu.Unlock()
	if _, err := p2.SendSync(ctx, &client.Record{Topic: "t", Partition: 1, Value: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		f2.mu.Lock()
		calls, attempts := f2.metadataCalls, f2.attempts[1]
		f2.mu.Unlock()
		if attempts != 2 {
			t.Fatalf("%d attempts on partition 1, want 2", attempts)
		}
		if calls > before {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no metadata refresh after NOT_LEADER_OR_FOLLOWER")
		}
	}
}

// TestProducerCloseGivesUp: Close whose ctx ends before the records are
// acknowledged returns promptly; those records fail with ErrProducerClosed.
func TestProducerCloseGivesUp(t *testing.T) {
	f := newFakeBroker(t, 1)
	f.delay = 3 * time.Second
	p := fakeProducer(t, f, client.ProducerConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fut := p.Send(ctx, &client.Record{Topic: "t", Partition: 0, Value: []byte("slow")})
	cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer ccancel()
	start := time.Now()
	if err := p.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Close took %v", el)
	}
	if _, err := fut.Wait(ctx); !errors.Is(err, client.ErrProducerClosed) {
		t.Fatalf("record: %v, want ErrProducerClosed", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// checkLogOrder fails unless each partition of f's log holds every
// goroutine's records in Send order ("g-i"), each once, skipping none but
// those in skipped.
func checkLogOrder(t *testing.T, f *fakeBroker, perPartition int, skipped map[string]bool) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for part, vals := range f.log {
		next := map[int]int{}
		for _, v := range vals {
			var g, i int
			fmt.Sscanf(v, "%d-%d", &g, &i)
			for skipped[fmt.Sprintf("%d-%d", g, next[g])] {
				next[g]++
			}
			if i != next[g] {
				t.Fatalf("partition %d: %s after %d-%d (order broken, duplicate or hole)", part, v, g, next[g]-1)
			}
			next[g]++
		}
		if skipped == nil && len(vals) != perPartition {
			t.Fatalf("partition %d holds %d records, want %d", part, len(vals), perPartition)
		}
	}
}

// sendAll sends 300 records from each of 4 goroutines, goroutine g to
// partition g%2, and returns their futures.
func sendAll(ctx context.Context, p *client.Producer) [][]*client.Future {
	var wg sync.WaitGroup
	futs := make([][]*client.Future, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				futs[g] = append(futs[g], p.Send(ctx, &client.Record{Topic: "t", Partition: int32(g % 2), Value: fmt.Appendf(nil, "%d-%d", g, i)}))
			}
		})
	}
	wg.Wait()
	return futs
}

// TestIdempotentProducerPipelinesInOrder: the idempotent producer keeps
// several requests per partition in flight; failures before the append
// (NOT_LEADER_OR_FOLLOWER) and after it (REQUEST_TIMED_OUT for stored
// records) are retried, and the sequence numbers make the leader refuse
// what comes out of order and recognise what it stored already: the log
// holds every record once, in Send order, at the offset its future reports.
func TestIdempotentProducerPipelinesInOrder(t *testing.T) {
	f := newFakeBroker(t, 2)
	f.delay = 2 * time.Millisecond
	f.fail = func(_ int32, attempt int) pb.ErrorCode {
		if attempt%7 == 2 {
			return pb.ErrorCode_NOT_LEADER_OR_FOLLOWER
		}
		return pb.ErrorCode_NONE
	}
	f.failAfter = func(_ int32, attempt int) pb.ErrorCode {
		if attempt%5 == 4 {
			return pb.ErrorCode_REQUEST_TIMED_OUT
		}
		return pb.ErrorCode_NONE
	}
	p := fakeProducer(t, f, client.ProducerConfig{BatchSize: 512, MaxRequestSize: 1024, Linger: time.Millisecond, RetryBackoff: time.Millisecond, MaxInFlight: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	futs := sendAll(ctx, p)
	for g := range futs {
		for i, fu := range futs[g] {
			md, err := fu.Wait(ctx)
			if err != nil {
				t.Fatalf("%d-%d: %v", g, i, err)
			}
			f.mu.Lock()
			got := f.log[md.Partition][md.Offset]
			f.mu.Unlock()
			if want := fmt.Sprintf("%d-%d", g, i); got != want {
				t.Fatalf("offset %d-%d holds %q, want %q", md.Partition, md.Offset, got, want)
			}
		}
	}
	checkLogOrder(t, f, 600, nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	for part, n := range f.attempts {
		if n < 7 {
			t.Fatalf("partition %d: %d requests, too few for the script to fail some", part, n)
		}
	}
	if f.maxPart < 2 || f.maxPart > 5 {
		t.Fatalf("%d requests in flight for one partition, want 2..5", f.maxPart)
	}
	if f.pids != 1 {
		t.Fatalf("%d producer ids", f.pids)
	}
}

// TestIdempotentProducerResetsSequence: a unit that fails for good leaves a
// hole in the sequence, and a leader that lost the producer's state answers
// UNKNOWN_PRODUCER_ID; either way the partition starts over with the next
// epoch from sequence 0 and every other record is stored once, in order.
func TestIdempotentProducerResetsSequence(t *testing.T) {
	f := newFakeBroker(t, 2)
	f.delay = time.Millisecond
	failed := 0 // guarded by f.mu
	f.fail = func(part int32, attempt int) pb.ErrorCode {
		switch {
		case part == 0 && attempt == 3:
			return pb.ErrorCode_CORRUPT_MESSAGE // fails its records for good
		case part == 1 && failed == 0 && len(f.log[1]) >= 200:
			f.seqs[1] = nil // the leader forgets the producer (e.g. its records expired)
			failed++
		}
		return pb.ErrorCode_NONE
	}
	p := fakeProducer(t, f, client.ProducerConfig{BatchSize: 512, MaxRequestSize: 1024, Linger: time.Millisecond, RetryBackoff: time.Millisecond, MaxInFlight: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	futs := sendAll(ctx, p)
	skipped := map[string]bool{}
	for g := range futs {
		for i, fu := range futs[g] {
			md, err := fu.Wait(ctx)
			name := fmt.Sprintf("%d-%d", g, i)
			if err != nil {
				if g%2 != 0 || prodCode(err) != pb.ErrorCode_CORRUPT_MESSAGE {
					t.Fatalf("%s: %v", name, err)
				}
				skipped[name] = true
				continue
			}
			f.mu.Lock()
			got := f.log[md.Partition][md.Offset]
			f.mu.Unlock()
			if got != name {
				t.Fatalf("offset %d-%d holds %q, want %q", md.Partition, md.Offset, got, name)
			}
		}
	}
	if len(skipped) == 0 {
		t.Fatal("no record failed: the script did not run")
	}
	checkLogOrder(t, f, 600, skipped)
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.log[0]) + len(skipped); n != 600 {
		t.Fatalf("partition 0: %d stored + %d failed, want 600", len(f.log[0]), len(skipped))
	}
	if n := len(f.log[1]); n != 600 {
		t.Fatalf("partition 1 holds %d records, want 600", n)
	}
	if st := f.seqs[1]; st == nil || st.epoch < 1 || failed != 1 {
		t.Fatalf("partition 1 did not start a new epoch after losing its state: %+v", st)
	}
	if st := f.seqs[0]; st == nil || st.epoch < 1 {
		t.Fatalf("partition 0 did not start a new epoch after the hole: %+v", st)
	}
}
