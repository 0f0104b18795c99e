package broker_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// acked is one acknowledged record: where the broker said it went.
type acked struct {
	offset int64
	value  string
}

// ackProducer sends one-record batches with acks=all to whoever leads the
// partition, following leadership changes, and keeps what was acknowledged.
type ackProducer struct {
	c     *testCluster
	topic string
	mu    sync.Mutex
	acks  []acked
	errs  map[pb.ErrorCode]int
	next  int // the next record's number: values are unique across runs
}

// run produces records until n have been acknowledged in all runs.
func (p *ackProducer) run(ctx context.Context, n int) {
	if p.errs == nil {
		p.errs = map[pb.ErrorCode]int{}
	}
	leader := p.c.leaderOf(p.topic, 0, 1)
	for i := p.next; i < n && ctx.Err() == nil; {
		v := fmt.Sprintf("r%05d", i)
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		r, err := produce(rctx, p.c.client(leader), p.topic, 0, -1, batchOf(p.c.t, v))
		cancel()
		if err == nil && r.ErrorCode == pb.ErrorCode_NONE {
			p.mu.Lock()
			p.acks = append(p.acks, acked{r.BaseOffset, v})
			p.mu.Unlock()
			i++
			p.next = i
			continue
		}
		p.mu.Lock()
		if err != nil {
			p.errs[pb.ErrorCode_BROKER_NOT_AVAILABLE]++
		} else {
			p.errs[r.ErrorCode]++
		}
		p.mu.Unlock()
		if err == nil && !retriable(r.ErrorCode) {
			p.c.t.Errorf("produce %s: non-retriable %v %s", v, r.ErrorCode, r.ErrorMessage)
			return
		}
		time.Sleep(20 * time.Millisecond)
		leader = p.c.leaderOf(p.topic, 0, 1)
	}
}

func retriable(code pb.ErrorCode) bool {
	switch code {
	case pb.ErrorCode_NOT_LEADER_OR_FOLLOWER, pb.ErrorCode_NOT_ENOUGH_REPLICAS, pb.ErrorCode_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
		pb.ErrorCode_REQUEST_TIMED_OUT, pb.ErrorCode_FENCED_LEADER_EPOCH, pb.ErrorCode_UNKNOWN_LEADER_EPOCH,
		pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, pb.ErrorCode_LEADER_NOT_AVAILABLE:
		return true
	}
	return false
}

// checkAcked reads the partition from its leader and checks every
// acknowledged record is there, once, at its acknowledged offset.
func (p *ackProducer) checkAcked(t *testing.T) {
	t.Helper()
	leader := p.c.leaderOf(p.topic, 0, 1)
	p.mu.Lock()
	acks := slices.Clone(p.acks)
	p.mu.Unlock()
	var got map[int64]string
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = consume(t, p.c.client(leader), p.topic, 0, true)
		missing := 0
		for _, a := range acks {
			if got[a.offset] != a.value {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, a := range acks {
				if got[a.offset] != a.value {
					t.Errorf("acknowledged %s at offset %d, leader has %q there", a.value, a.offset, got[a.offset])
				}
			}
			t.Fatalf("%d of %d acknowledged records lost", missing, len(acks))
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[string]int64{}
	for _, a := range acks {
		if o, dup := seen[a.value]; dup {
			t.Fatalf("%s acknowledged twice (offsets %d and %d)", a.value, o, a.offset)
		}
		seen[a.value] = a.offset
	}
}

// TestAcksAllSurvivesLeaderDeath kills the partition leader mid-stream:
// every record acknowledged with acks=all is readable from the new leader
// at its original offset; the ackProducer only ever sees retriable errors.
func TestAcksAllSurvivesLeaderDeath(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("pay", 1, 3, map[string]string{"min.insync.replicas": "2"})
	first := c.leaderOf("pay", 0, 3)
	p := &ackProducer{c: c, topic: "pay"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, 300) }()
	for {
		p.mu.Lock()
		n := len(p.acks)
		p.mu.Unlock()
		if n >= 100 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Kill(first)
	<-done
	if ctx.Err() != nil {
		t.Fatalf("ackProducer did not finish: %d acknowledged, errors %v", len(p.acks), p.errs)
	}
	if next := c.leaderOf("pay", 0, 1); next == first {
		t.Fatal("the dead broker still leads")
	}
	p.checkAcked(t)
	t.Logf("acknowledged %d, retriable errors %v", len(p.acks), p.errs)
}

// TestMinISRNotMet: with two of three brokers down, acks=all is refused
// with NOT_ENOUGH_REPLICAS and nothing is appended; acks=1 still works.
func TestMinISRNotMet(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("strict", 1, 3, map[string]string{"min.insync.replicas": "2"})
	leader := c.leaderOf("strict", 0, 3)
	for _, id := range c.IDs() {
		if id != leader {
			c.Kill(id)
		}
	}
	// The controller fences the dead brokers and shrinks the ISR to the leader.
	deadline := time.Now().Add(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		r, err := produce(ctx, c.client(leader), "strict", 0, -1, batchOf(t, "x"))
		if err == nil && r.ErrorCode == pb.ErrorCode_NOT_ENOUGH_REPLICAS {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acks=all with one live replica: %v %v", err, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	leo := c.Broker(leader).LogEndOffset("strict", 0)
	r, err := produce(ctx, c.client(leader), "strict", 0, -1, batchOf(t, "y"))
	if err != nil || r.ErrorCode != pb.ErrorCode_NOT_ENOUGH_REPLICAS || c.Broker(leader).LogEndOffset("strict", 0) != leo {
		t.Fatalf("NOT_ENOUGH_REPLICAS must append nothing: %v %v, log end %d -> %d", err, r, leo, c.Broker(leader).LogEndOffset("strict", 0))
	}
	if r, err := produce(ctx, c.client(leader), "strict", 0, 1, batchOf(t, "z")); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("acks=1: %v %v", err, r)
	}
}

// TestPausedFollowerLeavesAndRejoins cuts one follower off its leader:
// acks=all stalls at most about replica.lag.time.max.ms, the follower
// leaves the ISR and produce goes on; healed, it catches up and rejoins.
func TestPausedFollowerLeavesAndRejoins(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("lag", 1, 3, map[string]string{"min.insync.replicas": "2"})
	leader := c.leaderOf("lag", 0, 3)
	var paused int32
	for _, id := range c.IDs() {
		if id != leader {
			paused = id
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if r, err := produce(ctx, c.client(leader), "lag", 0, -1, batchOf(t, "before")); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("produce: %v %v", err, r)
	}
	c.Ctrl.Net.Cut([]string{c.Addr(paused)}, []string{c.Addr(leader)})
	start := time.Now()
	r, err := produce(ctx, c.client(leader), "lag", 0, -1, batchOf(t, "during"))
	stall := time.Since(start)
	if err != nil || r.ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("acks=all while a follower is paused: %v %v (after %v)", err, r, stall)
	}
	if stall > c.lagMax+3*time.Second {
		t.Fatalf("acks=all stalled %v, replica.lag.time.max.ms is %v", stall, c.lagMax)
	}
	isr := c.isr("lag", 0)
	if slices.Contains(isr, paused) {
		t.Fatalf("paused follower %d still in the ISR %v", paused, isr)
	}
	// Produce goes on without stalling now.
	start = time.Now()
	for i := range 20 {
		if r, err := produce(ctx, c.client(leader), "lag", 0, -1, batchOf(t, fmt.Sprint("after", i))); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
			t.Fatalf("produce after the shrink: %v %v", err, r)
		}
	}
	if d := time.Since(start); d > c.lagMax {
		t.Fatalf("20 produces after the shrink took %v", d)
	}
	c.Ctrl.Net.HealAll()
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(c.isr("lag", 0), paused) {
		if time.Now().After(deadline) {
			t.Fatalf("healed follower did not rejoin the ISR: %v", c.isr("lag", 0))
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.waitFollowerLEO(paused, "lag", 0, c.Broker(leader).LogEndOffset("lag", 0))
	t.Logf("acks=all stalled %v while the follower was cut off", stall)
}

// isr is the partition's ISR in the active controller's image.
func (c *testCluster) isr(topic string, partition int32) []int32 {
	c.t.Helper()
	i, err := c.Ctrl.Active(5 * time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	t := c.Ctrl.Node(i).Image().Topic(topic)
	if t == nil || t.Partition(partition) == nil {
		return nil
	}
	return slices.Clone(t.Partition(partition).ISR)
}

// TestControlledShutdownMovesLeaders: a broker that is closed (SIGTERM in
// the binary) hands every leadership to another ISR member before it exits.
func TestControlledShutdownMovesLeaders(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("many", 6, 3, nil)
	var victim int32 = 101
	led := 0
	for i := range int32(6) {
		if c.leaderOf("many", i, 3) == victim {
			led++
		}
	}
	if led == 0 {
		t.Fatalf("broker %d leads nothing; placement should spread leaders", victim)
	}
	b := c.Broker(victim)
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	took := time.Since(start)
	if took > 9*time.Second {
		t.Fatalf("controlled shutdown took %v (it timed out instead of being granted?)", took)
	}
	// The controller granted the shutdown only after moving the leaderships:
	// its own metadata shows none left on the victim, with a live leader each.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Ctrl.Call(ctx, func(cl pb.ControllerServiceClient) error {
		resp, err := cl.FetchMetadata(ctx, &pb.FetchMetadataRequest{BrokerId: -1, FromOffset: 1 << 40})
		_ = resp
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	img := c.Ctrl.Node(0).Image()
	topic := img.Topic("many")
	for i, p := range topic.Partitions() {
		if p.Leader == victim || p.Leader < 0 {
			t.Fatalf("partition %d led by %d after the controlled shutdown of %d", i, p.Leader, victim)
		}
		if slices.Contains(p.ISR, victim) {
			t.Fatalf("partition %d: shut-down broker still in the ISR %v", i, p.ISR)
		}
	}
	t.Logf("controlled shutdown moved %d leaderships in %v", led, took)
}

// TestLeaderEpochRestarts runs the restarts that lose data under a
// high-watermark-only design: the follower restarts (its HW on disk is
// behind), the leader dies, the follower leads; then the old leader returns
// as a follower and later leads again. No acknowledged record is lost and
// the replicas never diverge.
func TestLeaderEpochRestarts(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := c.Ctrl.Call(ctx, func(cl pb.ControllerServiceClient) error {
		resp, err := cl.CreateTopics(ctx, &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{Name: "kip", NumPartitions: -1, ReplicationFactor: -1,
			Assignments: []*pb.ReplicaAssignment{{Partition: 0, BrokerIds: []int32{101, 102}}}}}})
		if err == nil && resp.Topics[0].ErrorCode != pb.ErrorCode_NONE {
			err = fmt.Errorf("%v %s", resp.Topics[0].ErrorCode, resp.Topics[0].ErrorMessage)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if l := c.leaderOf("kip", 0, 2); l != 101 {
		t.Fatalf("leader %d, want 101", l)
	}
	p := &ackProducer{c: c, topic: "kip"}
	p.run(ctx, 20)
	// The follower restarts from its disk (HW checkpoint behind: it was killed).
	c.Kill(102)
	c.Start(102)
	for !slices.Contains(c.isr("kip", 0), 102) {
		if ctx.Err() != nil {
			t.Fatalf("restarted follower never rejoined the ISR")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The leader dies; the restarted follower takes over with every acknowledged record.
	c.Kill(101)
	if l := c.leaderOf("kip", 0, 1); l != 102 {
		t.Fatalf("leader %d, want 102", l)
	}
	p.checkAcked(t)
	p.run(ctx, 30) // 10 more under the new leader (r00020..r00029)
	// The old leader returns as a follower, truncates by epoch, catches up,
	// and after the new leader dies serves exactly the same records.
	c.Start(101)
	for !slices.Contains(c.isr("kip", 0), 101) {
		if ctx.Err() != nil {
			t.Fatalf("returning broker never rejoined the ISR")
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := consume(t, c.client(102), "kip", 0, false)
	c.Kill(102)
	if l := c.leaderOf("kip", 0, 1); l != 101 {
		t.Fatalf("leader %d, want 101", l)
	}
	got := consume(t, c.client(101), "kip", 0, false)
	if len(got) != len(want) {
		t.Fatalf("replicas diverge: %d records vs %d", len(got), len(want))
	}
	for o, v := range want {
		if got[o] != v {
			t.Fatalf("replicas diverge at offset %d: %q vs %q", o, got[o], v)
		}
	}
	p.checkAcked(t)
}
