package broker_test

// Produce benchmarks on loopback (issue 4, "Performance"): throughput of one
// broker with RF=1 acks=1 and of three brokers with RF=3 acks=all
// (min.insync.replicas=2), and produce latency at a fixed, open-loop rate.
// scripts/bench-broker.sh runs them and prints the table.
//
//	go test -run '^$' -bench 'BenchmarkProduce$' -benchtime 2s ./broker/
//	go test -run '^$' -bench 'BenchmarkProduceLatency' -benchtime 1x ./broker/
//
// Records are 1 KiB values with no key; a batch is RecordBatch v2 bytes built
// once per producer goroutine and sent raw (ProducePartition.records), one
// partition per request, so MB/s counts batch bytes (1e6 bytes per MB, as
// the testing package does). MB/cpu-s is the same bytes per CPU second of
// the whole process (client, brokers and controller share it), a figure less
// sensitive than MB/s to other load on the machine. STRATA_BENCH_FETCH_WAIT_MS sets
// the replica fetchers' long-poll wait (default 500).

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/broker/brokertest"
	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage/record"
)

// benchCluster is a brokertest cluster for benchmarks: brokers dial each
// other directly (no link-cutting wrapper on the data path) and sessions are
// long, so a benchmark saturating two cores never gets a broker fenced (and
// its leaders moved) for a late heartbeat.
type benchCluster struct {
	*brokertest.Cluster
	tb testing.TB
}

func newBenchCluster(tb testing.TB, voters, brokers int) *benchCluster {
	tb.Helper()
	return &benchCluster{tb: tb, Cluster: brokertest.NewCluster(tb, brokertest.Options{
		Voters: voters, Brokers: brokers, SessionTimeout: 10 * time.Second, DirectDial: true,
		FetchMaxWait: time.Duration(envFloat(tb, "STRATA_BENCH_FETCH_WAIT_MS", 500)) * time.Millisecond,
	})}
}

// dial opens a new client connection to a broker (closed at cleanup).
func (c *benchCluster) dial(id int32) *grpc.ClientConn {
	cc, err := grpc.NewClient(c.Addr(id), append(wire.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(func() { cc.Close() })
	return cc
}

// createTopic creates a topic and returns each partition's leader once every
// broker knows every partition with an ISR of all rf replicas.
func (c *benchCluster) createTopic(name string, partitions, rf int32, configs map[string]string) []int32 {
	c.tb.Helper()
	c.CreateTopic(name, partitions, rf, configs)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leaders := make([]int32, partitions)
	// Every broker must know every leader: ask each, so a producer never
	// starts against a broker that has not applied the topic yet.
	for _, id := range c.IDs() {
		cl := pb.NewBrokerServiceClient(c.dial(id))
		for {
			resp, err := cl.Metadata(ctx, &pb.MetadataRequest{Topics: []string{name}})
			if err != nil {
				c.tb.Fatalf("metadata of %s from %d: %v", name, id, err)
			}
			ok := len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == int(partitions)
			for i := 0; ok && i < int(partitions); i++ {
				p := resp.Topics[0].Partitions[i]
				ok = p.LeaderId > 0 && len(p.Isr) == int(rf)
				leaders[i] = p.LeaderId
			}
			if ok {
				break
			}
			if ctx.Err() != nil {
				c.tb.Fatalf("topic %s not ready on broker %d", name, id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return leaders
}

// benchBatch builds one RecordBatch v2 of n records with 1 KiB random values.
func benchBatch(tb testing.TB, n int) []byte {
	bl := record.NewBuilder(record.BatchOptions{})
	val := make([]byte, 1024)
	for range n {
		for i := range val {
			val[i] = byte(rand.Uint32())
		}
		if err := bl.Append(time.Now().UnixMilli(), nil, val, nil); err != nil {
			tb.Fatal(err)
		}
	}
	out, err := bl.Build()
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Clone(out)
}

// benchSetup is one of the two configurations of the issue.
type benchSetup struct {
	name    string
	brokers int
	rf      int32
	acks    int32
	configs map[string]string
}

var benchSetups = []benchSetup{
	{name: "rf=1/acks=1", brokers: 1, rf: 1, acks: 1},
	{name: "rf=3/acks=all", brokers: 3, rf: 3, acks: -1, configs: map[string]string{"min.insync.replicas": "2"}},
}

// producer sends to one partition over its own connection.
type producer struct {
	cl   pb.BrokerServiceClient
	req  *pb.ProduceRequest
	size int
}

func newProducer(cl pb.BrokerServiceClient, topic string, partition, acks int32, batch []byte) *producer {
	return &producer{cl: cl, size: len(batch), req: &pb.ProduceRequest{Acks: acks, TimeoutMs: 10000, Topics: []*pb.ProduceTopic{{
		Topic: topic, Partitions: []*pb.ProducePartition{{Partition: partition, Records: batch}}}}}}
}

// warm sends until the first success: the metadata image names a leader a
// little before that broker's replica manager has made it one.
func (p *producer) warm(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := p.send(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// send produces the batch once and fails on any error, transport or Strata.
func (p *producer) send(ctx context.Context) error {
	resp, err := p.cl.Produce(ctx, p.req)
	if err != nil {
		return err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return fmt.Errorf("produce: malformed response %v", resp)
	}
	if r := resp.Topics[0].Partitions[0]; r.ErrorCode != pb.ErrorCode_NONE || r.BaseOffset < 0 {
		return fmt.Errorf("produce to partition %d: %v %s (base offset %d)", r.Partition, r.ErrorCode, r.ErrorMessage, r.BaseOffset)
	}
	return nil
}

var topicSeq atomic.Int64

// BenchmarkProduce measures produce throughput, closed loop: C goroutines,
// each with its own connection to its partition's leader, send batches of
// 1 KiB records to P partitions (goroutine i to partition i mod P) as fast
// as the broker answers. One op is one request of one batch.
func BenchmarkProduce(b *testing.B) {
	for _, s := range benchSetups {
		b.Run(s.name, func(b *testing.B) {
			c := newBenchCluster(b, 1, s.brokers)
			for _, parts := range []int32{1, 4} {
				for _, conc := range []int{4, 8} {
					for _, recs := range []int{16, 256} {
						name := fmt.Sprintf("p=%d/c=%d/batch=%dKiB", parts, conc, recs)
						var ps []*producer // set up on the first call, so -bench filters skip it
						b.Run(name, func(b *testing.B) {
							if ps == nil {
								topic := fmt.Sprintf("bench-%d", topicSeq.Add(1))
								leaders := c.createTopic(topic, parts, s.rf, s.configs)
								for i := range conc {
									part := int32(i) % parts
									p := newProducer(pb.NewBrokerServiceClient(c.dial(leaders[part])), topic, part, s.acks, benchBatch(b, recs))
									p.warm(b)
									ps = append(ps, p)
								}
							}
							runProduce(b, ps)
						})
					}
				}
			}
		})
	}
}

func runProduce(b *testing.B, ps []*producer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.SetBytes(int64(ps[0].size))
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(ps))
	cpu0 := cpuTime()
	b.ResetTimer()
	for _, p := range ps {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := p.send(ctx); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	// Bytes per CPU second of the whole process (client, brokers and
	// controller together): unlike MB/s it hardly depends on what else runs
	// on the machine, and nproc times it bounds MB/s on idle cores.
	if cpu := (cpuTime() - cpu0).Seconds(); cpu > 0 {
		b.ReportMetric(float64(b.N)*float64(ps[0].size)/1e6/cpu, "MB/cpu-s")
	}
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// envFloat reads a positive number from the environment, or returns def.
func envFloat(tb testing.TB, name string, def float64) float64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return f
}

// BenchmarkProduceLatency produces at a fixed rate, open loop, and reports
// the produce latency percentiles. Each request's latency runs from the
// moment the schedule says it is due (not from when it was actually sent),
// so a stalled broker is charged for the requests that queue up behind it
// (no coordinated omission). The run lasts a fixed time whatever b.N is; use
// -benchtime 1x. Knobs: STRATA_BENCH_RATE_MB (default 20 MB/s),
// STRATA_BENCH_SECONDS (default 4), STRATA_BENCH_BATCH_RECORDS (default 16).
func BenchmarkProduceLatency(b *testing.B) {
	rate := envFloat(b, "STRATA_BENCH_RATE_MB", 20) * 1e6
	dur := time.Duration(envFloat(b, "STRATA_BENCH_SECONDS", 4) * float64(time.Second))
	recs := int(envFloat(b, "STRATA_BENCH_BATCH_RECORDS", 16))
	const parts, conns = 4, 4
	for _, s := range benchSetups {
		b.Run(s.name, func(b *testing.B) {
			c := newBenchCluster(b, 1, s.brokers)
			topic := fmt.Sprintf("lat-%d", topicSeq.Add(1))
			leaders := c.createTopic(topic, parts, s.rf, s.configs)
			batch := benchBatch(b, recs)
			ps := make([]*producer, conns)
			for i := range ps {
				ps[i] = newProducer(pb.NewBrokerServiceClient(c.dial(leaders[i%parts])), topic, int32(i%parts), s.acks, batch)
			}
			// Warm up: connections, first segment, the followers' fetch sessions.
			for _, p := range ps {
				p.warm(b)
				for range 20 {
					if err := p.send(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ResetTimer()
			for range b.N {
				lat := produceAtRate(b, ps, rate, dur)
				slices.Sort(lat)
				q := func(f float64) float64 {
					return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))]) / float64(time.Millisecond)
				}
				b.ReportMetric(q(0.50), "ms-p50")
				b.ReportMetric(q(0.99), "ms-p99")
				b.ReportMetric(q(0.999), "ms-p99.9")
				b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "ms-max")
				b.ReportMetric(float64(len(lat)*len(batch))/dur.Seconds()/1e6, "MB/s")
				b.ReportMetric(float64(len(lat)), "requests")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// produceAtRate sends batches round-robin over ps at rate bytes/s for dur,
// each request in its own goroutine, and returns every request's latency.
func produceAtRate(b *testing.B, ps []*producer, rate float64, dur time.Duration) []time.Duration {
	interval := time.Duration(float64(ps[0].size) / rate * float64(time.Second))
	n := int(dur / interval)
	lat := make([]time.Duration, n)
	ctx, cancel := context.WithTimeout(context.Background(), dur+30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if failed.Load() != nil {
			break
		}
		p := ps[i%len(ps)]
		wg.Go(func() {
			if err := p.send(ctx); err != nil {
				failed.CompareAndSwap(nil, &err)
				return
			}
			lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return lat
}
