package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/broker/brokertest"
	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

func prodClient(t *testing.T, c *brokertest.Cluster) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Bootstrap: c.Bootstrap(), RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func prodNew(t *testing.T, cl *client.Client, cfg client.ProducerConfig) *client.Producer {
	t.Helper()
	p, err := client.NewProducer(cl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

func prodCode(err error) pb.ErrorCode {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return -1
}

// readPartition fetches every record of a partition up to its high
// watermark from the current leader (decode=true): offset -> value.
func readPartition(t *testing.T, cl *client.Client, topic string, partition int32) map[int64]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := map[int64]string{}
	next := int64(0)
	for {
		bc, _, err := cl.LeaderClient(ctx, topic, partition)
		if err == nil {
			var fr *pb.FetchResponse
			fr, err = bc.Fetch(ctx, &pb.FetchRequest{ReplicaId: -1, Decode: true, MaxWaitMs: 10,
				Topics: []*pb.FetchTopic{{Topic: topic, Partitions: []*pb.FetchPartition{{Partition: partition, FetchOffset: next, CurrentLeaderEpoch: -1}}}}})
			if err == nil {
				r := fr.Topics[0].Partitions[0]
				if r.ErrorCode != pb.ErrorCode_NONE {
					err = fmt.Errorf("fetch: %v %s", r.ErrorCode, r.ErrorMessage)
				} else {
					for _, rec := range r.DecodedRecords {
						out[rec.Offset] = string(rec.Value)
						next = rec.Offset + 1
					}
					if next >= r.HighWatermark {
						return out
					}
					continue
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("read %s-%d: %v", topic, partition, err)
		}
		cl.RefreshMetadata(ctx)
		time.Sleep(50 * time.Millisecond)
	}
}

type sent struct {
	g, i int
	f    *client.Future
}

// TestProducerConcurrent: many goroutines send keyed and keyless records;
// every future resolves with a distinct offset holding its value, and each
// goroutine's records to one partition are stored in Send order.
func TestProducerConcurrent(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 3})
	c.CreateTopic("orders", 3, 3, map[string]string{"min.insync.replicas": "2"})
	cl := prodClient(t, c)
	p := prodNew(t, cl, client.ProducerConfig{BatchSize: 4 << 10, Linger: 2 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	const goroutines, perG = 8, 400
	var mu sync.Mutex
	var all []sent
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				rec := &client.Record{Topic: "orders", Partition: client.AnyPartition, Value: fmt.Appendf(nil, "g%d-%d", g, i)}
				if i%2 == 0 {
					rec.Key = fmt.Appendf(nil, "key-%d", i%7)
				}
				f := p.Send(ctx, rec)
				mu.Lock()
				all = append(all, sent{g, i, f})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	type key struct {
		part   int32
		offset int64
	}
	seen := map[key]string{}
	last := map[[2]int]int64{} // (goroutine, partition) -> last offset in Send order
	byG := make([][]sent, goroutines)
	for _, s := range all {
		byG[s.g] = append(byG[s.g], s)
	}
	for g := range byG {
		// all was appended per goroutine in Send order under mu.
		for _, s := range byG[g] {
			select {
			case <-s.f.Done():
			default:
				t.Fatalf("future g%d-%d not done after Flush", s.g, s.i)
			}
			md, err := s.f.Wait(ctx)
			if err != nil {
				t.Fatalf("g%d-%d: %v", s.g, s.i, err)
			}
			k := key{md.Partition, md.Offset}
			if prev, dup := seen[k]; dup {
				t.Fatalf("offset %v given to %s and g%d-%d", k, prev, s.g, s.i)
			}
			seen[k] = fmt.Sprintf("g%d-%d", s.g, s.i)
			lk := [2]int{s.g, int(md.Partition)}
			if prev, ok := last[lk]; ok && md.Offset <= prev {
				t.Fatalf("g%d-%d at %d-%d after offset %d: order broken", s.g, s.i, md.Partition, md.Offset, prev)
			}
			last[lk] = md.Offset
			if s.i%2 == 0 {
				if want := client.KeyPartition(fmt.Appendf(nil, "key-%d", s.i%7), 3); md.Partition != want {
					t.Fatalf("keyed record on partition %d, murmur2 says %d", md.Partition, want)
				}
			}
		}
	}
	total := 0
	for part := range int32(3) {
		got := readPartition(t, cl, "orders", part)
		total += len(got)
		for off, v := range got {
			if want := seen[key{part, off}]; want != v {
				t.Fatalf("%d-%d holds %q, future said %q", part, off, v, want)
			}
		}
	}
	if total != goroutines*perG {
		t.Fatalf("stored %d records, sent %d", total, goroutines*perG)
	}
}

// TestProducerLeaderKilled: the partition leader crashes mid-stream; the
// producer retries through the election and every acknowledged record is
// stored at the offset its future reported.
func TestProducerLeaderKilled(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 3})
	c.CreateTopic("pay", 1, 3, map[string]string{"min.insync.replicas": "2"})
	cl := prodClient(t, c)
	p := prodNew(t, cl, client.ProducerConfig{Linger: time.Millisecond, RetryBackoff: 20 * time.Millisecond, DeliveryTimeout: 20 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	m, err := cl.RefreshMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := m.Topics["pay"][0].Leader

	const n = 3000
	futures := make([]*client.Future, n)
	var acked atomic.Int64
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for acked.Load() < 500 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		c.Kill(leader)
	}()
	for i := range n {
		futures[i] = p.Send(ctx, &client.Record{Topic: "pay", Partition: 0, Value: fmt.Appendf(nil, "v%d", i)})
		go func(f *client.Future) {
			if _, err := f.Wait(ctx); err == nil {
				acked.Add(1)
			}
		}(futures[i])
		if i%50 == 0 {
			time.Sleep(2 * time.Millisecond) // a stream, not one burst
		}
	}
	<-killed
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	offsets := map[int64]int{}
	prev := int64(-1)
	for i, f := range futures {
		md, err := f.Wait(ctx)
		if err != nil {
			t.Fatalf("record %d: %v (retriable errors must be retried until DeliveryTimeout)", i, err)
		}
		if md.Offset <= prev {
			t.Fatalf("record %d at offset %d after %d: order broken", i, md.Offset, prev)
		}
		prev = md.Offset
		offsets[md.Offset] = i
	}
	got := readPartition(t, cl, "pay", 0)
	for off, i := range offsets {
		if want := fmt.Sprintf("v%d", i); got[off] != want {
			t.Fatalf("offset %d holds %q, acknowledged as %q", off, got[off], want)
		}
	}
	// The idempotent producer's resends of records the old leader had
	// replicated are recognised by the new one: each record is stored once.
	if len(got) != n {
		t.Fatalf("%d records stored for %d sent: resends duplicated records", len(got), n)
	}
	t.Logf("%d records acknowledged, each stored once; leader %d killed", n, leader)
}

// TestProducerBackpressure: with the only replica gone, Send blocks up to
// MaxBlock once BufferMemory is used up, then fails with ErrBufferFull;
// the records that were accepted fail after DeliveryTimeout.
func TestProducerBackpressure(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 1})
	c.CreateTopic("slow", 1, 1, nil)
	cl := prodClient(t, c)
	p := prodNew(t, cl, client.ProducerConfig{BufferMemory: 4 << 10, MaxBlock: 300 * time.Millisecond, DeliveryTimeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := p.SendSync(ctx, &client.Record{Topic: "slow", Partition: client.AnyPartition, Value: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	c.Kill(101)
	value := make([]byte, 1000)
	var accepted []*client.Future
	for i := 0; ; i++ {
		start := time.Now()
		f := p.Send(ctx, &client.Record{Topic: "slow", Partition: client.AnyPartition, Value: value})
		select {
		case <-f.Done():
			_, err := f.Wait(ctx)
			if !errors.Is(err, client.ErrBufferFull) {
				t.Fatalf("send %d: %v, want ErrBufferFull", i, err)
			}
			if el := time.Since(start); el < 300*time.Millisecond || el > 3*time.Second {
				t.Fatalf("Send blocked %v, want MaxBlock (300ms)", el)
			}
			if i != 3 {
				t.Errorf("buffer full after %d records of 1 KiB in 4 KiB", i)
			}
			t.Logf("send %d: %v", i, err)
			for _, f := range accepted {
				if _, err := f.Wait(ctx); !errors.Is(err, client.ErrDeliveryTimeout) {
					t.Fatalf("accepted record: %v, want ErrDeliveryTimeout", err)
				}
			}
			return
		default:
			accepted = append(accepted, f)
		}
		if i > 10 {
			t.Fatal("Send never blocked")
		}
	}
}

// TestProducerBadInput: typed errors for an unknown topic or partition, a
// record over MaxRequestSize or the topic's max.message.bytes, a closed
// producer.
func TestProducerBadInput(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 1})
	c.CreateTopic("small", 2, 1, map[string]string{"max.message.bytes": "2000"})
	cl := prodClient(t, c)
	p := prodNew(t, cl, client.ProducerConfig{MaxRequestSize: 64 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	start := time.Now()
	_, err := p.SendSync(ctx, &client.Record{Topic: "no-such-topic", Partition: client.AnyPartition, Value: []byte("x")})
	if prodCode(err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION || time.Since(start) > 5*time.Second {
		t.Fatalf("unknown topic: %v after %v", err, time.Since(start))
	}
	if _, err := p.SendSync(ctx, &client.Record{Topic: "small", Partition: 2, Value: []byte("x")}); prodCode(err) != pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION {
		t.Fatalf("partition 2 of 2: %v", err)
	}
	if _, err := p.SendSync(ctx, &client.Record{Topic: "small", Partition: 0, Value: make([]byte, 100<<10)}); prodCode(err) != pb.ErrorCode_MESSAGE_TOO_LARGE {
		t.Fatalf("record over MaxRequestSize: %v", err)
	}
	// Over the topic's max.message.bytes: the broker refuses it, not retried;
	// a small record in the same partition still gets through.
	big := p.Send(ctx, &client.Record{Topic: "small", Partition: 0, Value: make([]byte, 5000)})
	if _, err := big.Wait(ctx); prodCode(err) != pb.ErrorCode_MESSAGE_TOO_LARGE {
		t.Fatalf("record over max.message.bytes: %v", err)
	}
	if md, err := p.SendSync(ctx, &client.Record{Topic: "small", Partition: 0, Value: []byte("ok")}); err != nil || md.Offset != 0 {
		t.Fatalf("small record after: %+v %v", md, err)
	}
	// A batch over max.message.bytes whose records each fit is split until
	// they do (Kafka's producer does the same); only the record that is too
	// large by itself fails, and order holds.
	lp := prodNew(t, cl, client.ProducerConfig{Linger: 200 * time.Millisecond})
	var futs []*client.Future
	for i := range 9 {
		v := make([]byte, 400)
		if i == 4 {
			v = make([]byte, 5000)
		}
		copy(v, fmt.Sprint("r", i))
		futs = append(futs, lp.Send(ctx, &client.Record{Topic: "small", Partition: 1, Value: v}))
	}
	if err := lp.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	prev := int64(-1)
	for i, f := range futs {
		md, err := f.Wait(ctx)
		if i == 4 {
			if prodCode(err) != pb.ErrorCode_MESSAGE_TOO_LARGE {
				t.Fatalf("record over max.message.bytes in a split batch: %v", err)
			}
			continue
		}
		if err != nil || md.Offset <= prev {
			t.Fatalf("record %d of a split batch: %+v %v (previous offset %d)", i, md, err, prev)
		}
		prev = md.Offset
	}
	got := readPartition(t, cl, "small", 1)
	if len(got) != 8 {
		t.Fatalf("partition 1 holds %d records, want 8", len(got))
	}
	for i, f := range futs {
		if md, err := f.Wait(ctx); err == nil && !strings.HasPrefix(got[md.Offset], fmt.Sprint("r", i)) {
			t.Fatalf("record %d at %d holds %.3q", i, md.Offset, got[md.Offset])
		}
	}
	if _, err := p.SendSync(ctx, &client.Record{Partition: 0, Value: []byte("x")}); prodCode(err) != pb.ErrorCode_INVALID_REQUEST {
		t.Fatalf("no topic: %v", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SendSync(ctx, &client.Record{Topic: "small", Partition: 0, Value: []byte("x")}); !errors.Is(err, client.ErrProducerClosed) {
		t.Fatalf("send after close: %v", err)
	}
}
