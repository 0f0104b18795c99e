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

// groupCluster starts a 3-broker cluster with topic "orders" (4 partitions,
// RF 2) and a Client on it.
func groupCluster(t *testing.T) (*brokertest.Cluster, *client.Client) {
	t.Helper()
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 3})
	c.CreateTopic("orders", 4, 2, nil)
	cl, err := client.New(client.Config{Bootstrap: c.Bootstrap(), RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return c, cl
}

// produceN sends values v<from>..v<from+n-1> round-robin over the
// partitions (key-less) and waits for them.
func produceN(t *testing.T, cl *client.Client, topic string, from, n int) {
	t.Helper()
	p, err := client.NewProducer(cl, client.ProducerConfig{Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer p.Close(ctx)
	var futs []*client.Future
	for i := from; i < from+n; i++ {
		futs = append(futs, p.Send(ctx, &client.Record{Topic: topic, Partition: int32(i % 4), Value: fmt.Appendf(nil, "v%d", i)}))
	}
	for _, f := range futs {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// collect polls members concurrently until want distinct values arrived in
// total (or 20 s pass), and returns what each member read.
func collect(t *testing.T, want int, members ...*client.GroupConsumer) []map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := make([]map[string]int, len(members))
	total := map[string]bool{}
	var wg sync.WaitGroup
	for i, m := range members {
		got[i] = map[string]int{}
		wg.Go(func() {
			for {
				recs, err := m.Poll(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				for _, r := range recs {
					got[i][string(r.Value)]++
					total[string(r.Value)] = true
				}
				if len(total) >= want {
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(total) < want {
		t.Fatalf("read %d distinct records of %d", len(total), want)
	}
	return got
}

func earliest(group string) client.GroupConsumerConfig {
	return client.GroupConsumerConfig{Group: group, Topics: []string{"orders"}, Consumer: client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest}}
}

// TestGroupsPubSubAndQueue: two groups on one topic each receive every
// record (pub/sub); one group of two members splits them, each record to
// one member (queue).
func TestGroupsPubSubAndQueue(t *testing.T) {
	_, cl := groupCluster(t)
	produceN(t, cl, "orders", 0, 200)

	g1 := newGroupConsumer(t, cl, earliest("billing"))
	audit := earliest("audit")
	audit.Assignor = client.AssignorRange
	g2 := newGroupConsumer(t, cl, audit)
	got := collect(t, 200, g1)
	got = append(got, collect(t, 200, g2)...)
	for i, m := range got {
		if len(m) != 200 {
			t.Fatalf("group %d read %d distinct records, want all 200", i+1, len(m))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := client.NewAdmin(cl).DescribeGroups(ctx, "billing", "audit")
	if err != nil || ds[0].Assignor != client.AssignorUniform || ds[1].Assignor != client.AssignorRange || ds[1].State != client.GroupStateStable {
		t.Fatalf("describe: %v %+v", err, ds)
	}

	// A queue: two members of "workers" share the partitions, 2 each.
	a := newGroupConsumer(t, cl, earliest("workers"))
	b := newGroupConsumer(t, cl, earliest("workers"))
	eventually(t, "two partitions each", func() bool { return len(a.Assignment()) == 2 && len(b.Assignment()) == 2 })
	split := collect(t, 200, a, b)
	for v, n := range split[0] {
		if split[1][v] > 0 || n > 1 {
			t.Fatalf("record %s read %d times by a and %d by b", v, n, split[1][v])
		}
	}
	if len(split[0]) == 0 || len(split[1]) == 0 || len(split[0])+len(split[1]) != 200 {
		t.Fatalf("a read %d, b %d: want 200 split between them", len(split[0]), len(split[1]))
	}
	for _, tp := range a.Assignment() {
		for _, tq := range b.Assignment() {
			if tp == tq {
				t.Fatalf("%v owned by both members", tp)
			}
		}
	}
}

// TestGroupResumeFromCommitted: a member that read part of the topic and
// closed (committing) hands over to a new member of the group, which
// starts exactly where it stopped; Admin sees the committed offsets and
// the lag.
func TestGroupResumeFromCommitted(t *testing.T) {
	_, cl := groupCluster(t)
	produceN(t, cl, "orders", 0, 40)
	first := newGroupConsumer(t, cl, earliest("resume"))
	seen := collect(t, 40, first)[0]
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	a := client.NewAdmin(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ds, err := a.DescribeGroups(ctx, "resume")
	if err != nil || ds[0].Err != nil {
		t.Fatalf("describe: %v %v", err, ds)
	}
	if ds[0].State != client.GroupStateEmpty || len(ds[0].Members) != 0 || len(ds[0].Offsets) != 4 {
		t.Fatalf("describe after Close: %+v", ds[0])
	}
	for _, o := range ds[0].Offsets {
		if o.Committed != 10 || o.Lag != 0 {
			t.Fatalf("offset %+v: want 10 committed, lag 0", o)
		}
	}

	produceN(t, cl, "orders", 40, 20)
	second := newGroupConsumer(t, cl, earliest("resume"))
	got := collect(t, 20, second)[0]
	for v := range got {
		if seen[v] > 0 {
			t.Fatalf("the second member read %s again: it should resume from the committed offsets", v)
		}
	}
	if len(got) != 20 {
		t.Fatalf("the second member read %d records, want the 20 new ones", len(got))
	}

	// Reset needs the group empty; the plan changes nothing.
	if _, err := a.ResetOffsets(ctx, client.ResetOffsetsRequest{Group: "resume", To: client.ResetToEarliest()}); !isCode(err, client.ErrNonEmptyGroup.Code) {
		t.Fatalf("reset with a member: %v", err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	plan, err := a.ResetOffsets(ctx, client.ResetOffsetsRequest{Group: "resume", To: client.ResetShiftBy(-3), Topics: []string{"orders"}})
	if err != nil || len(plan) != 4 || plan[0].Previous != 15 || plan[0].New != 12 {
		t.Fatalf("reset plan: %+v %v", plan, err)
	}
	offs, err := a.FetchGroupOffsets(ctx, "resume")
	if err != nil || offs[client.TopicPartition{Topic: "orders", Partition: 0}].Offset != 15 {
		t.Fatalf("offsets after a plan: %v %v", offs, err)
	}
	ls, err := a.ListGroups(ctx)
	if err != nil || len(ls) != 1 || ls[0].Group != "resume" || ls[0].State != client.GroupStateEmpty {
		t.Fatalf("ListGroups: %+v %v", ls, err)
	}
	// Bad input: typed errors, nothing changed.
	long := newGroupConsumer(t, cl, earliest(strings.Repeat("x", 300)))
	if _, err := long.Poll(ctx); !errors.Is(err, client.ErrInvalidGroupID) {
		t.Fatalf("Poll of a member of a group with a 300-character id: %v", err)
	}
	if err := a.CommitGroupOffsets(ctx, "resume", map[client.TopicPartition]int64{{Topic: "orders", Partition: 9}: 1}); !isCode(err, pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION) {
		t.Fatalf("commit of partition 9 of a 4-partition topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	res, err := a.DeleteGroups(ctx, "resume", "nope")
	if err != nil || res[0].Err != nil || !isCode(res[1].Err, client.ErrGroupIDNotFound.Code) {
		t.Fatalf("DeleteGroups: %+v %v", res, err)
	}
}

// TestGroupStaticRestart: a static member (InstanceID) that closes and
// comes back gets its partitions again without a rebalance: the other
// member's partitions never move.
func TestGroupStaticRestart(t *testing.T) {
	f := &groupFake{} // only for the owners tracker's event log
	_, cl := groupCluster(t)
	o := newOwners(t, f)
	static := func(name, instance string) client.GroupConsumerConfig {
		cfg := earliest("static")
		cfg.InstanceID = instance
		return o.config(name, cfg)
	}
	a := newGroupConsumer(t, cl, static("a", "i-a"))
	newGroupConsumer(t, cl, static("b", "i-b"))
	eventually(t, "two partitions each", func() bool { return len(o.of("a")) == 2 && len(o.of("b")) == 2 })
	aParts, bParts := o.of("a"), o.of("b")
	before := len(f.eventsCopy())
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	newGroupConsumer(t, cl, static("a2", "i-a"))
	eventually(t, "the new incarnation gets a's partitions", func() bool { return len(o.of("a2")) == 2 })
	if got := o.of("a2"); fmt.Sprint(got) != fmt.Sprint(aParts) {
		t.Fatalf("the restarted static member got %v, a had %v", got, aParts)
	}
	time.Sleep(500 * time.Millisecond)
	if got := o.of("b"); fmt.Sprint(got) != fmt.Sprint(bParts) {
		t.Fatalf("b's partitions moved from %v to %v over a static restart", bParts, got)
	}
	ev := f.eventsCopy()[before:]
	if indexOf(ev, "revoked b", 0) >= 0 || indexOf(ev, "assigned b", 0) >= 0 || indexOf(ev, "lost", 0) >= 0 {
		t.Fatalf("b saw a rebalance over a's static restart: %q", ev)
	}
}

// TestGroupCoordinatorFailover: the coordinator's broker dies; the member
// finds the new coordinator (the new leader of the group's offsets
// partition), keeps its partitions and epoch, goes on reading, and the
// committed offsets survive.
func TestGroupCoordinatorFailover(t *testing.T) {
	c, cl := groupCluster(t)
	produceN(t, cl, "orders", 0, 40)
	var lost atomic.Bool
	cfg := earliest("failover")
	cfg.OnLost = func(context.Context, []client.TopicPartition) { lost.Store(true) }
	g := newGroupConsumer(t, cl, cfg)
	collect(t, 40, g)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	g.Poll(pctx) // the 40 are processed
	pcancel()
	if err := g.CommitSync(ctx); err != nil {
		t.Fatal(err)
	}
	a := client.NewAdmin(cl)
	ds, err := a.DescribeGroups(ctx, "failover")
	if err != nil || ds[0].Err != nil {
		t.Fatalf("describe: %v %+v", err, ds)
	}
	coord, epoch := ds[0].CoordinatorID, g.MemberEpoch()
	c.Kill(coord)
	// Records produced now reach the member once the partitions' leaders
	// and the group's coordinator have moved.
	produceN(t, cl, "orders", 40, 20)
	got := collect(t, 20, g)[0]
	for v := range got {
		var i int
		fmt.Sscanf(v, "v%d", &i)
		if i < 40 {
			t.Fatalf("read %s again after the failover: the position was lost", v)
		}
	}
	if lost.Load() || g.MemberEpoch() != epoch || len(g.Assignment()) != 4 {
		t.Fatalf("after the failover: lost %v, epoch %d (was %d), assignment %v", lost.Load(), g.MemberEpoch(), epoch, g.Assignment())
	}
	ds, err = a.DescribeGroups(ctx, "failover")
	if err != nil || ds[0].Err != nil || ds[0].CoordinatorID == coord {
		t.Fatalf("describe after the failover: %v %+v", err, ds)
	}
	for _, o := range ds[0].Offsets {
		if o.Committed < 10 {
			t.Fatalf("offset %+v after the failover: want the 10 committed before", o)
		}
	}
}
