package broker_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stratalog/strata/broker"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// gauge returns the value of the series of family name whose labels include
// want, and whether there is one.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func (c *testCluster) registry(id int32) *prometheus.Registry {
	c.t.Helper()
	reg := prometheus.NewRegistry()
	if err := c.Broker(id).RegisterMetrics(reg); err != nil {
		c.t.Fatal(err)
	}
	return reg
}

// waitMetric waits until ok(value of the series) holds.
func waitMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string, what string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, found := metricValue(t, reg, name, labels)
		if found && ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v: got %v (present %v), want %s", name, labels, v, found, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrokerMetrics: after replicated produce and a consumer fetch, the
// leader counts bytes and records in and out for the topic, the follower
// counts replication bytes in, the leader replication bytes out; a follower
// cut off from its leader shows as an ISR shrink and an under-replicated
// partition, and back as an ISR expansion.
func TestBrokerMetrics(t *testing.T) {
	c := newTestCluster(t, 1, 2)
	c.CreateTopic("m", 1, 2, nil)
	leader := c.leaderOf("m", 0, 2)
	follower := c.IDs()[0]
	if follower == leader {
		follower = c.IDs()[1]
	}
	lreg, freg := c.registry(leader), c.registry(follower)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	batch := batchOf(t, "a", "b", "c")
	for range 2 {
		if r, err := produce(ctx, c.client(leader), "m", 0, -1, batch); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
			t.Fatalf("produce: %v %v", err, r)
		}
	}
	fr, err := c.client(leader).Fetch(ctx, &pb.FetchRequest{ReplicaId: -1, MaxWaitMs: 10,
		Topics: []*pb.FetchTopic{{Topic: "m", Partitions: []*pb.FetchPartition{{Partition: 0, CurrentLeaderEpoch: -1}}}}})
	if err != nil || len(fr.Topics[0].Partitions[0].Records) != 2*len(batch) {
		t.Fatalf("fetch: %v %v", err, fr)
	}
	topic := map[string]string{"topic": "m"}
	eq := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
	for _, m := range []struct {
		reg  *prometheus.Registry
		name string
		want float64
	}{
		{lreg, "strata_broker_topic_bytes_in_total", float64(2 * len(batch))},
		{lreg, "strata_broker_topic_records_in_total", 6},
		{lreg, "strata_broker_topic_bytes_out_total", float64(2 * len(batch))},
		{lreg, "strata_broker_topic_records_out_total", 6},
		{freg, "strata_broker_topic_replication_bytes_in_total", float64(2 * len(batch))},
		{freg, "strata_broker_topic_bytes_in_total", 0},
	} {
		waitMetric(t, m.reg, m.name, topic, "exactly that", eq(m.want))
	}
	waitMetric(t, lreg, "strata_broker_topic_replication_bytes_out_total", topic, ">= the batches", func(v float64) bool { return v >= float64(2*len(batch)) })
	waitMetric(t, lreg, "strata_broker_log_size_bytes", topic, ">= the batches", func(v float64) bool { return v >= float64(2*len(batch)) })
	waitMetric(t, lreg, "strata_broker_log_segments", topic, "1", eq(1))
	waitMetric(t, lreg, "strata_broker_leader_partitions", nil, "1", eq(1))
	waitMetric(t, freg, "strata_broker_leader_partitions", nil, "0", eq(0))
	waitMetric(t, freg, "strata_broker_partitions", nil, "1", eq(1))
	waitMetric(t, lreg, "strata_broker_under_replicated_partitions", nil, "0", eq(0))
	waitMetric(t, lreg, "strata_broker_metadata_lag", nil, "0", eq(0))
	waitMetric(t, lreg, "strata_broker_metadata_offset", nil, "> 0", func(v float64) bool { return v > 0 })
	waitMetric(t, lreg, "strata_broker_ready", nil, "1", eq(1))
	for _, method := range []string{"Produce", "Fetch"} {
		waitMetric(t, lreg, "strata_rpc_requests_total", map[string]string{"server": "broker", "method": method, "code": "OK"}, ">= 1", func(v float64) bool { return v >= 1 })
	}
	waitMetric(t, lreg, "strata_rpc_request_duration_seconds", map[string]string{"method": "Produce"}, "2 observations", func(v float64) bool { return v >= 2 })

	// A long poll waits in the fetch purgatory.
	go c.client(leader).Fetch(ctx, &pb.FetchRequest{ReplicaId: -1, MaxWaitMs: 5000, MinBytes: 1 << 20,
		Topics: []*pb.FetchTopic{{Topic: "m", Partitions: []*pb.FetchPartition{{Partition: 0, CurrentLeaderEpoch: -1}}}}})
	waitMetric(t, lreg, "strata_broker_purgatory_size", map[string]string{"purgatory": "fetch"}, ">= 1", func(v float64) bool { return v >= 1 })

	// Cut the follower off its leader: the ISR shrinks, then expands again.
	c.Ctrl.Net.Cut([]string{c.Addr(follower)}, []string{c.Addr(leader)})
	waitMetric(t, lreg, "strata_broker_isr_shrinks_total", nil, ">= 1", func(v float64) bool { return v >= 1 })
	waitMetric(t, lreg, "strata_broker_under_replicated_partitions", nil, "1", eq(1))
	c.Ctrl.Net.HealAll()
	waitMetric(t, lreg, "strata_broker_isr_expands_total", nil, ">= 1", func(v float64) bool { return v >= 1 })
	waitMetric(t, lreg, "strata_broker_under_replicated_partitions", nil, "0", eq(0))
	if isr := c.isr("m", 0); !slices.Contains(isr, follower) {
		t.Fatalf("ISR %v without the healed follower", isr)
	}
}

// TestReadinessFollowsFencing: a broker cut off from the controllers is
// fenced by the active controller after its session times out, and stops
// being ready (/readyz) at the latest then, though no heartbeat answer told
// it so; healed, it is unfenced and ready again.
func TestReadinessFollowsFencing(t *testing.T) {
	c := newTestCluster(t, 1, 2)
	var victim int32 = 101
	b := c.Broker(victim)
	reg := c.registry(victim)
	if !b.Ready() {
		t.Fatal("broker not ready at the start")
	}
	c.Ctrl.Net.Cut([]string{c.Addr(victim)}, c.Ctrl.Addrs)
	fencedAt := time.Time{}
	deadline := time.Now().Add(20 * time.Second)
	for b.Ready() || fencedAt.IsZero() {
		img := c.Ctrl.Node(c.Ctrl.MustActive()).Image()
		if br := img.Broker(victim); br != nil && br.Fenced && fencedAt.IsZero() {
			fencedAt = time.Now()
		}
		if !fencedAt.IsZero() && time.Since(fencedAt) > time.Second && b.Ready() {
			t.Fatal("broker still ready 1 s after the controller fenced it")
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready %v, fenced at %v after 20 s", b.Ready(), fencedAt)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v, _ := metricValue(t, reg, "strata_broker_ready", nil); v != 0 {
		t.Fatalf("strata_broker_ready = %v while fenced", v)
	}
	c.Ctrl.Net.HealAll()
	deadline = time.Now().Add(20 * time.Second)
	for !b.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("broker not ready 20 s after the link healed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitMetric(t, reg, "strata_broker_ready", nil, "1", func(v float64) bool { return v == 1 })
	waitMetric(t, reg, "strata_broker_fenced", nil, "0", func(v float64) bool { return v == 0 })
}

// TestGroupMetrics: the coordinator of a group reports its committed
// offsets and its lag against the partition's end.
func TestGroupMetrics(t *testing.T) {
	c := newTestCluster(t, 1, 2)
	c.CreateTopic("orders", 2, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader := c.leaderOf("orders", 0, 2)
	if r, err := produce(ctx, c.client(leader), "orders", 0, -1, batchOf(t, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("produce: %v %v", err, r)
	}
	coord, gc := c.coordinator("ops")
	if _, err := gc.OffsetCommit(ctx, &pb.OffsetCommitRequest{GroupId: "ops", MemberEpoch: -1, Topics: []*pb.OffsetCommitTopic{{
		Topic: "orders", Partitions: []*pb.OffsetCommitPartition{{Partition: 0, Offset: 3}, {Partition: 1, Offset: 0}}}}}); err != nil {
		t.Fatal(err)
	}
	reg := c.registry(coord)
	p0 := map[string]string{"group": "ops", "topic": "orders", "partition": "0"}
	p1 := map[string]string{"group": "ops", "topic": "orders", "partition": "1"}
	eq := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
	waitMetric(t, reg, "strata_group_committed_offset", p0, "3", eq(3))
	waitMetric(t, reg, "strata_group_lag", p0, "7", eq(7))
	waitMetric(t, reg, "strata_group_lag", p1, "0", eq(0))
	waitMetric(t, reg, "strata_group_members", map[string]string{"group": "ops"}, "0", eq(0))
	for _, id := range c.IDs() {
		if id == coord {
			continue
		}
		if _, found := metricValue(t, c.registry(id), "strata_group_lag", p0); found {
			t.Errorf("broker %d, not the coordinator, reports the group's lag", id)
		}
	}
}

// TestAddCollector: a component's collector added before or after
// RegisterMetrics ends up in the node's registry, and the same collector
// twice is refused; a broker that never started is not ready.
func TestAddCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{NodeID: 1, DataDir: t.TempDir(), Controllers: []string{"127.0.0.1:1"}, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Kill()
	before := prometheus.NewGauge(prometheus.GaugeOpts{Name: "strata_test_before"})
	after := prometheus.NewGauge(prometheus.GaugeOpts{Name: "strata_test_after"})
	if err := b.AddCollector(before); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := b.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := b.AddCollector(after); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"strata_test_before", "strata_test_after", "strata_broker_ready", "strata_broker_partitions"} {
		if _, ok := metricValue(t, reg, name, nil); !ok {
			t.Errorf("%s missing", name)
		}
	}
	if v, _ := metricValue(t, reg, "strata_broker_ready", nil); v != 0 {
		t.Errorf("a broker that never started is ready: %v", v)
	}
	if err := b.AddCollector(after); err == nil {
		t.Error("the same collector registered twice")
	}
}
