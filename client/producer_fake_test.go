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

	mu       sync.Mutex
	fail     func(partition int32, attempt int) pb.ErrorCode // nil: always succeed
	attempts map[int32]int
	log      map[int32][]string
	inflight int
	maxIn    int
	partIn   map[int32]int
	maxPart  int

	metadataCalls int
}

func newFakeBroker(t *testing.T, partitions int32) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBroker{addr: ln.Addr().String(), partitions: partitions, attempts: map[int32]int{}, log: map[int32][]string{}, partIn: map[int32]int{}}
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
			r := &pb.ProducePartitionResult{Partition: pp.Partition, BaseOffset: -1, LogAppendTimeMs: -1}
			tr.Partitions = append(tr.Partitions, r)
			if f.fail != nil {
				if code := f.fail(pp.Partition, f.attempts[pp.Partition]); code != pb.ErrorCode_NONE {
					r.ErrorCode, r.ErrorMessage = code, "scripted"
					continue
				}
			}
			r.BaseOffset = int64(len(f.log[pp.Partition]))
			var it record.Iterator
			for buf := pp.Records; len(buf) > 0; {
				b, err := record.Parse(buf)
				if err != nil || b.Validate() != nil {
					return nil, fmt.Errorf("bad batch: %v", err)
				}
				it.Reset(b)
				for it.Next() {
					f.log[pp.Partition] = append(f.log[pp.Partition], string(it.Record().Value))
				}
				buf = buf[len(b):]
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

// TestProducerRetriesKeepOrder: retriable answers are retried with backoff
// and a partition's later batches wait behind the failing one, so the log
// holds every goroutine's records in Send order, each once.
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
	p := fakeProducer(t, f, client.ProducerConfig{BatchSize: 512, MaxRequestSize: 1024, Linger: time.Millisecond, RetryBackoff: time.Millisecond, MaxInFlight: 2})
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
