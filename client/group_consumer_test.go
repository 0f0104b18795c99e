package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// owners tracks partition ownership as the members' callbacks report it,
// and fails the test the moment two members own one partition.
type owners struct {
	t  *testing.T
	f  *groupFake
	mu sync.Mutex
	by map[client.TopicPartition]string
}

func newOwners(t *testing.T, f *groupFake) *owners {
	return &owners{t: t, f: f, by: map[client.TopicPartition]string{}}
}

// config returns callbacks for member name that keep o up to date and log
// into the fake's event list.
func (o *owners) config(name string, cfg client.GroupConsumerConfig) client.GroupConsumerConfig {
	cfg.OnAssigned = func(_ context.Context, tps []client.TopicPartition) {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, tp := range tps {
			if cur, ok := o.by[tp]; ok && cur != name {
				o.t.Errorf("%s assigned %v while %s owns it", name, tp, cur)
			}
			o.by[tp] = name
		}
		o.f.event("assigned %s %v", name, parts(tps))
	}
	release := func(what string) func(context.Context, []client.TopicPartition) {
		return func(_ context.Context, tps []client.TopicPartition) {
			o.mu.Lock()
			defer o.mu.Unlock()
			for _, tp := range tps {
				if o.by[tp] == name {
					delete(o.by, tp)
				}
			}
			o.f.event("%s %s %v", what, name, parts(tps))
		}
	}
	cfg.OnRevoked = release("revoked")
	cfg.OnLost = release("lost")
	return cfg
}

func (o *owners) of(name string) []int32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []int32
	for tp, n := range o.by {
		if n == name {
			out = append(out, tp.Partition)
		}
	}
	slices.Sort(out)
	return out
}

func parts(tps []client.TopicPartition) []int32 {
	out := make([]int32, len(tps))
	for i, tp := range tps {
		out[i] = tp.Partition
	}
	return out
}

func newGroupConsumer(t *testing.T, cl *client.Client, cfg client.GroupConsumerConfig) *client.GroupConsumer {
	t.Helper()
	g, err := client.NewGroupConsumer(cl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// eventually polls cond every 10 ms for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// pollAll polls until n records came (or fails after 10 s).
func pollAll(t *testing.T, g *client.GroupConsumer, n int) []client.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []client.Record
	for len(out) < n {
		recs, err := g.Poll(ctx)
		if err != nil {
			t.Fatalf("Poll after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}

func indexOf(events []string, prefix string, from int) int {
	for i := from; i < len(events); i++ {
		if strings.HasPrefix(events[i], prefix) {
			return i
		}
	}
	return -1
}

// TestGroupJoin: the member joins with epoch 0 and no member id, keeps the
// id and epoch answered, heartbeats with its owned partitions, starts each
// partition at the group's committed offset (or per AutoOffsetReset), and
// Close commits and leaves with epoch -1.
func TestGroupJoin(t *testing.T) {
	f := newGroupFake(t, 1, 3)
	for p := range int32(3) {
		f.produce(p, 10)
	}
	f.offsets["g"] = map[client.TopicPartition]int64{{Topic: "t", Partition: 1}: 7}
	o := newOwners(t, f)
	g := newGroupConsumer(t, f.client(t), o.config("a", client.GroupConsumerConfig{Group: "g", Topics: []string{"t"},
		Consumer: client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest}}))
	recs := pollAll(t, g, 23) // 10 + 3 + 10
	got := map[int32][]int64{}
	for _, r := range recs {
		got[r.Partition] = append(got[r.Partition], r.Offset)
	}
	if len(got[0]) != 10 || len(got[2]) != 10 || !slices.Equal(got[1], []int64{7, 8, 9}) {
		t.Fatalf("records per partition %v: want 0-9, 7-9 (committed 7), 0-9", got)
	}
	if g.MemberID() != "m1" || g.MemberEpoch() < 1 {
		t.Fatalf("member %q epoch %d", g.MemberID(), g.MemberEpoch())
	}
	if a := g.Assignment(); len(a) != 3 {
		t.Fatalf("assignment %v", a)
	}
	f.mu.Lock()
	first := f.hbs[0]
	f.mu.Unlock()
	if first.MemberId != "" || first.MemberEpoch != 0 || len(first.OwnedPartitions) != 0 || first.SubscribedTopicNames[0] != "t" {
		t.Fatalf("join heartbeat %v", first)
	}
	eventually(t, "a heartbeat reporting the three partitions owned", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		last := f.hbs[len(f.hbs)-1]
		return last.MemberId == "m1" && last.MemberEpoch >= 1 && len(last.OwnedPartitions) == 1 && len(last.OwnedPartitions[0].Partitions) == 3
	})
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[int32]int64{0: 10, 1: 10, 2: 10} {
		if off, _ := f.committed("g", client.TopicPartition{Topic: "t", Partition: p}); off != want {
			t.Errorf("committed %d of partition %d after Close, want %d", off, p, want)
		}
	}
	f.mu.Lock()
	last := f.hbs[len(f.hbs)-1]
	f.mu.Unlock()
	if last.MemberEpoch != -1 || last.MemberId != "m1" {
		t.Fatalf("last heartbeat %v: want the leave (epoch -1)", last)
	}
	ev := f.eventsCopy()
	if i, j := indexOf(ev, "revoked a", 0), indexOf(ev, "hb m1 epoch -1", 0); i < 0 || j < i {
		t.Fatalf("Close: OnRevoked at %d, leave at %d: %q", i, j, ev)
	}
	if _, err := g.Poll(context.Background()); !errors.Is(err, client.ErrConsumerClosed) {
		t.Fatalf("Poll after Close: %v", err)
	}
}

// TestGroupRevokeBeforeAssign: a second member joins; the first gives up
// half its partitions (stops fetching them, commits them, OnRevoked, then a
// heartbeat without them) before the second gets them, so no partition is
// ever owned twice; records keep flowing to whoever owns a partition.
func TestGroupRevokeBeforeAssign(t *testing.T) {
	f := newGroupFake(t, 1, 4)
	for p := range int32(4) {
		f.produce(p, 5)
	}
	o := newOwners(t, f)
	cl := f.client(t)
	cfg := client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}, Consumer: client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest}}
	a := newGroupConsumer(t, cl, o.config("a", cfg))
	pollAll(t, a, 20)
	eventually(t, "a owns 4", func() bool { return len(o.of("a")) == 4 })

	// a keeps polling in the background, as an application does.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	aGot := map[int32][]int64{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			recs, err := a.Poll(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			for _, r := range recs {
				aGot[r.Partition] = append(aGot[r.Partition], r.Offset)
			}
			mu.Unlock()
		}
	})
	b := newGroupConsumer(t, cl, o.config("b", cfg))
	eventually(t, "a owns 0,2 and b 1,3", func() bool {
		return slices.Equal(o.of("a"), []int32{0, 2}) && slices.Equal(o.of("b"), []int32{1, 3})
	})
	ev := f.eventsCopy()
	rev := indexOf(ev, "revoked a [1 3]", 0)
	if rev < 0 {
		t.Fatalf("no revocation of 1,3 by a: %q", ev)
	}
	release := indexOf(ev, "hb m1 epoch", rev)
	if release < 0 || !strings.HasSuffix(ev[release], "owned [0 2]") {
		t.Fatalf("the heartbeat after OnRevoked does not release 1,3: %q", ev[rev:])
	}
	for _, p := range []string{"commit m1 1@5", "commit m1 3@5"} {
		if i := indexOf(ev, p, 0); i < 0 || i > rev {
			t.Fatalf("%q missing or after OnRevoked: %q", p, ev)
		}
	}
	if i := indexOf(ev, "assigned b [1 3]", 0); i < release {
		t.Fatalf("b got 1,3 at event %d, before a released them at %d: %q", i, release, ev)
	}
	// New records: a reads only 0 and 2, b only 1 and 3.
	for p := range int32(4) {
		f.produce(p, 3)
	}
	bGot := pollAll(t, b, 6)
	for _, r := range bGot {
		if r.Partition != 1 && r.Partition != 3 || r.Offset < 5 {
			t.Fatalf("b read %d@%d: want partitions 1 and 3 from their committed 5", r.Partition, r.Offset)
		}
	}
	eventually(t, "a reads the new records of 0 and 2", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(aGot[0]) == 3 && len(aGot[2]) == 3
	})
	cancel()
	wg.Wait()
	if len(aGot[1])+len(aGot[3]) > 0 {
		t.Fatalf("a read records of partitions it gave up: %v", aGot)
	}
}

// TestGroupFencedRejoin: a fenced member loses its partitions (OnLost,
// nothing committed for them), joins again with epoch 0 and the same member
// id, and gets them back from the committed offsets.
func TestGroupFencedRejoin(t *testing.T) {
	f := newGroupFake(t, 1, 2)
	f.produce(0, 4)
	f.produce(1, 4)
	o := newOwners(t, f)
	g := newGroupConsumer(t, f.client(t), o.config("a", client.GroupConsumerConfig{Group: "g", Topics: []string{"t"},
		DisableAutoCommit: true, Consumer: client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest}}))
	pollAll(t, g, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Commit(ctx, map[client.TopicPartition]int64{{Topic: "t", Partition: 0}: 2}); err != nil {
		t.Fatal(err)
	}
	f.fence("m1")
	eventually(t, "OnLost and assigned again", func() bool {
		ev := f.eventsCopy()
		i := indexOf(ev, "lost a [0 1]", 0)
		return i >= 0 && indexOf(ev, "assigned a [0 1]", i) >= 0
	})
	ev := f.eventsCopy()
	lost := indexOf(ev, "lost a", 0)
	if j := indexOf(ev, "hb m1 epoch 0 owned []", lost); j < 0 {
		t.Fatalf("no rejoin with epoch 0 and the same member id after OnLost: %q", ev[lost:])
	}
	if indexOf(ev, "commit", lost) >= 0 {
		t.Fatalf("committed after losing the partitions: %q", ev[lost:])
	}
	recs := pollAll(t, g, 6) // 2-3 of partition 0 again, 0-3 of partition 1
	var p0 []int64
	for _, r := range recs {
		if r.Partition == 0 {
			p0 = append(p0, r.Offset)
		}
	}
	if !slices.Equal(p0, []int64{2, 3}) {
		t.Fatalf("partition 0 after rejoining: %v, want 2,3 (from the committed offset)", p0)
	}
	if g.MemberID() != "m1" {
		t.Fatalf("member id %q after rejoining, want m1", g.MemberID())
	}
}

// TestGroupCoordinatorMoves: NOT_COORDINATOR and
// COORDINATOR_LOAD_IN_PROGRESS make the member find the coordinator again
// and retry; it stays a member (no OnLost) and commits go to the new
// coordinator.
func TestGroupCoordinatorMoves(t *testing.T) {
	f := newGroupFake(t, 2, 2)
	f.produce(0, 3)
	o := newOwners(t, f)
	g := newGroupConsumer(t, f.client(t), o.config("a", client.GroupConsumerConfig{Group: "g", Topics: []string{"t"},
		Consumer: client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest}}))
	pollAll(t, g, 3)
	f.mu.Lock()
	finds := f.findN
	f.coord = 1
	loading := 3
	f.hbErr = func(*pb.GroupHeartbeatRequest) pb.ErrorCode {
		if loading > 0 {
			loading--
			return pb.ErrorCode_COORDINATOR_LOAD_IN_PROGRESS
		}
		return pb.ErrorCode_NONE
	}
	n := len(f.hbs)
	f.mu.Unlock()
	eventually(t, "heartbeats reaching the new coordinator", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.hbs) > n+2 && loading == 0
	})
	f.mu.Lock()
	if f.findN <= finds {
		t.Errorf("FindCoordinator not asked again after NOT_COORDINATOR")
	}
	f.mu.Unlock()
	f.produce(1, 2)
	pollAll(t, g, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pollCtx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	g.Poll(pollCtx) // marks the records processed; none come
	pcancel()
	if err := g.CommitSync(ctx); err != nil {
		t.Fatal(err)
	}
	if off, _ := f.committed("g", client.TopicPartition{Topic: "t", Partition: 1}); off != 2 {
		t.Fatalf("committed %d on the new coordinator, want 2", off)
	}
	if ev := f.eventsCopy(); indexOf(ev, "lost", 0) >= 0 {
		t.Fatalf("the member lost its partitions over a coordinator move: %q", ev)
	}
}

// TestGroupAutoCommitReturnedOnly: auto-commit commits only what Polls
// before the latest one returned (never records fetched ahead or still
// being processed); CommitSync commits everything returned; a
// STALE_MEMBER_EPOCH commit heartbeats and retries.
func TestGroupAutoCommitReturnedOnly(t *testing.T) {
	f := newGroupFake(t, 1, 1)
	f.produce(0, 5)
	g := newGroupConsumer(t, f.client(t), client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}, AutoCommitInterval: 20 * time.Millisecond,
		Consumer: client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest}})
	tp := client.TopicPartition{Topic: "t", Partition: 0}
	pollAll(t, g, 5)
	f.produce(0, 5) // fetched ahead, not returned
	time.Sleep(200 * time.Millisecond)
	if off, ok := f.committed("g", tp); ok {
		t.Fatalf("auto-committed %d while the first batch was still being processed", off)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := g.Poll(ctx) // the first batch is processed now
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1].Offset
	eventually(t, "auto-commit of the first batch", func() bool { off, _ := f.committed("g", tp); return off == 5 })
	time.Sleep(100 * time.Millisecond)
	if off, _ := f.committed("g", tp); off != 5 {
		t.Fatalf("auto-committed %d: past the processed records (5)", off)
	}
	stale := 1
	f.mu.Lock()
	f.commitErr = func(*pb.OffsetCommitRequest) pb.ErrorCode {
		if stale > 0 {
			stale--
			return pb.ErrorCode_STALE_MEMBER_EPOCH
		}
		return pb.ErrorCode_NONE
	}
	hbs := len(f.hbs)
	f.mu.Unlock()
	if err := g.CommitSync(ctx); err != nil {
		t.Fatal(err)
	}
	if off, _ := f.committed("g", tp); off != last+1 {
		t.Fatalf("CommitSync committed %d, want %d (after the last record returned)", off, last+1)
	}
	f.mu.Lock()
	if stale != 0 || len(f.hbs) == hbs {
		t.Errorf("STALE_MEMBER_EPOCH: %d stale answers left, %d heartbeats since", stale, len(f.hbs)-hbs)
	}
	f.mu.Unlock()

	done := make(chan error, 1)
	g.CommitAsync(func(_ map[client.TopicPartition]int64, err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestGroupStaticLeaveAndFatal: a static member leaves with epoch -2; a
// group that refuses a member for good makes Poll return the error.
func TestGroupStaticLeaveAndFatal(t *testing.T) {
	f := newGroupFake(t, 1, 1)
	g := newGroupConsumer(t, f.client(t), client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}, InstanceID: "i1"})
	eventually(t, "joined", func() bool { return g.MemberEpoch() > 0 })
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	last := f.hbs[len(f.hbs)-1]
	f.hbErr = func(*pb.GroupHeartbeatRequest) pb.ErrorCode { return pb.ErrorCode_GROUP_MAX_SIZE_REACHED }
	f.mu.Unlock()
	if last.MemberEpoch != -2 || last.InstanceId != "i1" {
		t.Fatalf("static leave %v: want epoch -2 with the instance id", last)
	}
	g2 := newGroupConsumer(t, f.client(t), client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g2.Poll(ctx); !errors.Is(err, client.ErrGroupMaxSizeReached) {
		t.Fatalf("Poll: %v, want GROUP_MAX_SIZE_REACHED", err)
	}
}

func TestGroupConsumerConfigErrors(t *testing.T) {
	f := newGroupFake(t, 1, 1)
	cl := f.client(t)
	for _, tc := range []struct {
		cfg  client.GroupConsumerConfig
		code pb.ErrorCode
	}{
		{client.GroupConsumerConfig{Topics: []string{"t"}}, pb.ErrorCode_INVALID_GROUP_ID},
		{client.GroupConsumerConfig{Group: "g"}, pb.ErrorCode_INVALID_REQUEST},
		{client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}, TopicRegex: "t.*"}, pb.ErrorCode_INVALID_REQUEST},
		{client.GroupConsumerConfig{Group: "g", Topics: []string{"t", "t"}}, pb.ErrorCode_INVALID_REQUEST},
		{client.GroupConsumerConfig{Group: "g", TopicRegex: "t("}, pb.ErrorCode_INVALID_REGULAR_EXPRESSION},
		{client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}, Assignor: "sticky"}, pb.ErrorCode_UNSUPPORTED_ASSIGNOR},
		{client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}, AutoCommitInterval: -1}, pb.ErrorCode_INVALID_REQUEST},
		{client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}, Consumer: client.ConsumerConfig{AutoOffsetReset: "start"}}, pb.ErrorCode_INVALID_REQUEST},
	} {
		t.Run(fmt.Sprint(tc.cfg.Group, tc.cfg.Topics, tc.cfg.TopicRegex, tc.cfg.Assignor), func(t *testing.T) {
			_, err := client.NewGroupConsumer(cl, tc.cfg)
			var e *client.Error
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("error %v, want %v", err, tc.code)
			}
		})
	}
}

// TestGroupMaxPollInterval: a member whose application stops calling Poll
// leaves the group after MaxPollInterval (committing what it processed,
// OnRevoked); the next Poll joins again with the same member id.
func TestGroupMaxPollInterval(t *testing.T) {
	f := newGroupFake(t, 1, 1)
	f.produce(0, 4)
	o := newOwners(t, f)
	g := newGroupConsumer(t, f.client(t), o.config("a", client.GroupConsumerConfig{Group: "g", Topics: []string{"t"},
		MaxPollInterval: 300 * time.Millisecond, Consumer: client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest}}))
	pollAll(t, g, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond) // a long Poll keeps the member in
	g.Poll(pctx)
	pcancel()
	if ev := f.eventsCopy(); indexOf(ev, "revoked", 0) >= 0 {
		t.Fatalf("left the group while a Poll was running: %q", ev)
	}
	eventually(t, "the member leaving for want of Polls", func() bool { return indexOf(f.eventsCopy(), "hb m1 epoch -1", 0) >= 0 })
	ev := f.eventsCopy()
	if i, j := indexOf(ev, "commit m1 0@4", 0), indexOf(ev, "revoked a [0]", 0); i < 0 || j < i || indexOf(ev, "hb m1 epoch -1", 0) < j {
		t.Fatalf("commit, OnRevoked, leave out of order: %q", ev)
	}
	if len(g.Assignment()) != 0 {
		t.Fatalf("assignment %v after leaving", g.Assignment())
	}
	f.produce(0, 2)
	recs := pollAll(t, g, 2)
	if recs[0].Offset != 4 || g.MemberID() != "m1" {
		t.Fatalf("after joining again: offset %d member %q, want 4 and m1", recs[0].Offset, g.MemberID())
	}
}
