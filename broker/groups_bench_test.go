package broker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// BenchmarkGroupRebalance measures how long 100 members take to join a
// group over 10 topics x 100 partitions and all own their share (the group
// stable), on a one-broker in-process cluster. Reported as ms per whole
// rebalance (s/op would hide it).
//
//	go test -run '^$' -bench GroupRebalance -benchtime 3x ./broker/
func BenchmarkGroupRebalance(b *testing.B) {
	const members, topics, partitions = 100, 10, 100
	c := newTestCluster(b, 1, 1)
	var names []string
	for i := range topics {
		name := fmt.Sprintf("t%d", i)
		c.CreateTopic(name, partitions, 1, nil)
		names = append(names, name)
	}
	c.coordinator("warm-up") // creates __consumer_offsets
	b.ResetTimer()
	for i := range b.N {
		group := fmt.Sprintf("rebalance-%d", i)
		start := time.Now()
		ms := make([]*member, members)
		for j := range ms {
			ms[j] = c.join(group, names...)
		}
		want := make([]int, members)
		for j := range want {
			want[j] = topics * partitions / members
		}
		waitOwnership(b, ms, want, 60*time.Second)
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/rebalance")
		b.StopTimer()
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Add(1)
			go func() { defer wg.Done(); m.crash() }()
		}
		wg.Wait()
		b.StartTimer()
	}
}

// BenchmarkOffsetCommit measures offset commits per second at one
// coordinator: each op commits one partition's offset (acks=all on the
// offsets partition, RF=1), from 16 concurrent committers.
//
//	go test -run '^$' -bench OffsetCommit ./broker/
func BenchmarkOffsetCommit(b *testing.B) {
	c := newTestCluster(b, 1, 1)
	c.CreateTopic("orders", 16, 1, nil)
	_, gc := c.coordinator("committers")
	ctx := context.Background()
	b.SetParallelism(8) // x GOMAXPROCS goroutines
	var n sync.Mutex
	next := int32(0)
	b.ResetTimer()
	b.RunParallel(func(pb_ *testing.PB) {
		n.Lock()
		part := next % 16
		next++
		n.Unlock()
		off := int64(0)
		for pb_.Next() {
			off++
			_, err := gc.OffsetCommit(ctx, &pb.OffsetCommitRequest{GroupId: "committers", MemberEpoch: -1, Topics: []*pb.OffsetCommitTopic{{
				Topic: "orders", Partitions: []*pb.OffsetCommitPartition{{Partition: part, Offset: off}}}}})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}
