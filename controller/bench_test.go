package controller_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/controller"
	"github.com/stratalog/strata/controller/controllertest"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Benchmarks of the controller quorum (3 voters on loopback, in one process,
// bbolt on the test's temp dir).
//
//	go test -run '^$' -bench 'Commit' -benchtime 3s ./controller/
//	go test -run '^$' -bench 'Failover' -benchtime 1x -v ./controller/
//
// Metrics: records/s (committed metadata records per second), ms p50/p90 for
// failovers.

func benchCluster(b *testing.B, opts controllertest.Options) *controllertest.Cluster {
	b.Helper()
	c := controllertest.NewCluster(b, opts)
	if _, err := c.Active(20 * time.Second); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkCommit measures metadata records committed per second through
// the gRPC API of the active controller.
//
//   - single/sequential: one client, one record per request (AllocateProducerIds).
//   - single/parallel-32: 32 clients, one record per request; the event loop
//     batches concurrent decisions into pipelined Raft entries.
//   - batched-100: one CreateTopics request of 100 partitions (101 records,
//     one Raft entry) per operation.
func BenchmarkCommit(b *testing.B) {
	// Production (default) Raft timeouts: the tuned test ones make a loaded
	// two-core machine change leaders mid-benchmark.
	c := benchCluster(b, controllertest.Options{SessionTimeout: time.Minute, Timeouts: controller.DefaultTimeouts()})
	ctx := context.Background()
	br := c.NewFakeBroker(1, "")
	if _, err := br.Register(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := br.Heartbeat(ctx, false); err != nil {
		b.Fatal(err)
	}
	active := c.MustActive()
	cl := c.Client(active)
	alloc := func() error {
		_, err := cl.AllocateProducerIds(ctx, &pb.AllocateProducerIdsRequest{BrokerId: 1, BrokerEpoch: br.Epoch()})
		return err
	}
	b.Run("single/sequential", func(b *testing.B) {
		for b.Loop() {
			if err := alloc(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("single/parallel-32", func(b *testing.B) {
		var n atomic.Int64
		n.Store(int64(b.N))
		var wg sync.WaitGroup
		b.ResetTimer()
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n.Add(-1) >= 0 {
					if err := alloc(); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("batched-100", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			r, err := cl.CreateTopics(ctx, &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{
				Name: "bench-" + strconv.Itoa(i) + "-" + b.Name()[len(b.Name())-3:], NumPartitions: 100, ReplicationFactor: 1}}})
			if err != nil || r.GetTopics()[0].GetErrorCode() != pb.ErrorCode_NONE {
				b.Fatal(err, r)
			}
		}
		b.ReportMetric(float64(b.N*101)/b.Elapsed().Seconds(), "records/s")
	})
}

// BenchmarkFailover kills the active controller (Close: Raft stops without
// handing leadership over, like a crash) and measures the time until a new
// active controller has committed a record, over several runs; the killed
// node is restarted between runs. Runs per profile: STRATA_FAILOVER_RUNS
// (default 7).
func BenchmarkFailover(b *testing.B) {
	runs := 7
	if s := os.Getenv("STRATA_FAILOVER_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	for _, prof := range []string{"default", "tuned"} {
		b.Run(prof, func(b *testing.B) {
			to, _ := controller.TimeoutsProfile(prof)
			b.Logf("raft timeouts (%s): %v", prof, to)
			fmt.Fprintf(os.Stderr, "BenchmarkFailover/%s: raft timeouts %v, %d runs\n", prof, to, runs)
			var samples []time.Duration
			for range b.N {
				c := benchCluster(b, controllertest.Options{Timeouts: to, SessionTimeout: time.Minute})
				for r := range runs {
					samples = append(samples, failoverOnce(b, c, r))
				}
				c.Close()
			}
			slices.Sort(samples)
			p := func(q float64) float64 {
				return float64(samples[int(q*float64(len(samples)-1)+0.5)].Microseconds()) / 1000
			}
			b.ReportMetric(p(0.5), "ms-p50")
			b.ReportMetric(p(0.9), "ms-p90")
			b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "ms-max")
			b.Logf("failover samples: %v", samples)
		})
	}
}

func failoverOnce(b *testing.B, c *controllertest.Cluster, run int) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	write := func(v string) error {
		return c.Call(ctx, func(cl pb.ControllerServiceClient) error {
			r, err := cl.AlterConfigs(ctx, &pb.AlterConfigsRequest{Resources: []*pb.AlterConfigsResource{{
				ResourceType: pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_BROKER,
				Configs:      []*pb.AlterableConfig{{Key: "num.partitions", Value: v}}}}})
			if err == nil && r.GetResults()[0].GetErrorCode() != pb.ErrorCode_NONE {
				return fmt.Errorf("%v", r)
			}
			return err
		})
	}
	if err := write("1"); err != nil { // a healthy quorum first
		b.Fatal(err)
	}
	// Every voter has the write: a clean starting point.
	off := c.Node(c.MustActive()).Image().Offset()
	for i := range c.Size() {
		if _, err := c.Node(i).WaitForOffset(ctx, off); err != nil {
			b.Fatal(err)
		}
	}
	victim := c.MustActive()
	start := time.Now()
	c.Stop(victim)
	if err := write(strconv.Itoa(run + 2)); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	c.Restart(victim)
	return d
}
