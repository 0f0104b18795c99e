package group

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// fakeLog is a Writer that keeps the records (and can be told to fail).
type fakeLog struct {
	recs []Record
	fail error
}

func (l *fakeLog) Append(recs []Record) (int64, error) {
	if l.fail != nil {
		return -1, l.fail
	}
	l.recs = append(l.recs, recs...)
	return int64(len(l.recs)), nil
}

// fakeMeta is a fixed set of topics.
type fakeMeta struct {
	version int64
	topics  map[string]int32
}

func (m *fakeMeta) Version() int64                { return m.version }
func (m *fakeMeta) Partitions(topic string) int32 { return m.topics[topic] }
func (m *fakeMeta) Topics() []string {
	var out []string
	for t := range m.topics {
		out = append(out, t)
	}
	return out
}

type fixture struct {
	t     *testing.T
	now   time.Time
	log   *fakeLog
	meta  *fakeMeta
	shard *Shard
}

func newFixture(t *testing.T, topics map[string]int32) *fixture {
	f := &fixture{t: t, now: time.Unix(1_700_000_000, 0), log: &fakeLog{}, meta: &fakeMeta{version: 1, topics: topics}}
	f.shard = f.open()
	return f
}

func (f *fixture) cfg() Config {
	return Config{SessionTimeout: 10 * time.Second, HeartbeatInterval: time.Second, RebalanceTimeout: 30 * time.Second,
		OffsetsRetention: time.Hour, Now: func() time.Time { return f.now }}
}

// open loads a new shard from the log so far (what a new leader does).
func (f *fixture) open() *Shard {
	s := NewShard(0, f.cfg(), f.meta, f.log)
	for _, r := range f.log.recs {
		if err := s.Replay(r.Key, r.Value); err != nil {
			f.t.Fatal(err)
		}
	}
	s.Loaded()
	return s
}

// consumer models a well-behaved member: it owns what it was last told,
// and releases what it must give up at once.
type consumer struct {
	id, instance string
	epoch        int32
	owned        []*pb.TopicPartitions
	topics       []string
}

func (f *fixture) heartbeat(c *consumer) (*pb.GroupHeartbeatResponse, error) {
	req := &pb.GroupHeartbeatRequest{GroupId: "g", MemberId: c.id, MemberEpoch: c.epoch, InstanceId: c.instance,
		SubscribedTopicNames: c.topics, OwnedPartitions: c.owned}
	resp, _, err := f.shard.Heartbeat(req)
	if err != nil {
		return nil, err
	}
	c.id, c.epoch, c.owned = resp.MemberId, resp.MemberEpoch, resp.Assignment
	return resp, nil
}

func (f *fixture) mustHeartbeat(c *consumer) {
	f.t.Helper()
	if _, err := f.heartbeat(c); err != nil {
		f.t.Fatalf("heartbeat %s: %v", c.id, err)
	}
}

// checkNoDoubleOwnership fails when two consumers believe they own one partition.
func checkNoDoubleOwnership(t *testing.T, cs []*consumer) {
	t.Helper()
	owner := map[TP]string{}
	for _, c := range cs {
		for tp := range setOf(c.owned) {
			if o, ok := owner[tp]; ok {
				t.Fatalf("%s-%d owned by %s and %s", tp.Topic, tp.Partition, o, c.id)
			}
			owner[tp] = c.id
		}
	}
}

// converge heartbeats every consumer round after round until the group is
// stable, checking ownership after each heartbeat.
func (f *fixture) converge(cs []*consumer) int {
	f.t.Helper()
	for round := 1; round <= 20; round++ {
		for _, c := range cs {
			f.mustHeartbeat(c)
			checkNoDoubleOwnership(f.t, cs)
		}
		if d, err := f.shard.Describe("g"); err == nil && d.State == StateStable {
			return round
		}
	}
	d, _ := f.shard.Describe("g")
	f.t.Fatalf("group not stable after 20 rounds: %v", d)
	return 0
}

func count(tps []*pb.TopicPartitions) int { return len(setOf(tps)) }

func TestThreeMembersSplitSixPartitions(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders": 6})
	var cs []*consumer
	for range 3 {
		c := &consumer{topics: []string{"orders"}}
		cs = append(cs, c)
		f.mustHeartbeat(c) // join one at a time: earlier members must give up partitions
		checkNoDoubleOwnership(t, cs)
	}
	f.converge(cs)
	for _, c := range cs {
		if n := count(c.owned); n != 2 {
			t.Fatalf("member %s owns %d partitions, want 2", c.id, n)
		}
	}
	// One member dies silently: after the session timeout its partitions
	// go to the other two.
	dead := cs[2]
	f.now = f.now.Add(6 * time.Second)
	f.mustHeartbeat(cs[0])
	f.mustHeartbeat(cs[1])
	f.now = f.now.Add(6 * time.Second)
	if _, err := f.shard.Expire(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.heartbeat(dead); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("expired member heartbeat: %v, want ErrUnknownMember", err)
	}
	dead.owned = nil // it learnt it lost them
	f.converge(cs[:2])
	if a, b := count(cs[0].owned), count(cs[1].owned); a != 3 || b != 3 {
		t.Fatalf("after expiry: %d and %d partitions, want 3 and 3", a, b)
	}
}

func TestPartitionGivenOnlyAfterRevocation(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders": 4})
	a := &consumer{topics: []string{"orders"}}
	f.mustHeartbeat(a)
	if count(a.owned) != 4 {
		t.Fatalf("first member owns %v", a.owned)
	}
	b := &consumer{topics: []string{"orders"}}
	f.mustHeartbeat(b)
	if count(b.owned) != 0 {
		t.Fatalf("new member got %v while the first still owns everything", b.owned)
	}
	// a's next answer takes two partitions away; until a reports them gone
	// they stay a's (pending revocation), and b does not get them.
	ownedBefore := a.owned
	resp, _, err := f.shard.Heartbeat(&pb.GroupHeartbeatRequest{GroupId: "g", MemberId: a.id, MemberEpoch: a.epoch, OwnedPartitions: ownedBefore})
	if err != nil {
		t.Fatal(err)
	}
	if count(resp.Assignment) != 2 {
		t.Fatalf("a told to keep %v, want 2 partitions", resp.Assignment)
	}
	f.mustHeartbeat(b)
	if count(b.owned) != 0 {
		t.Fatalf("b got %v before a released them", b.owned)
	}
	// a releases (reports owning only its two), then b gets them.
	a.owned, a.epoch = resp.Assignment, resp.MemberEpoch
	f.mustHeartbeat(a)
	f.mustHeartbeat(b)
	if count(b.owned) != 2 {
		t.Fatalf("b owns %v after a released, want 2 partitions", b.owned)
	}
	checkNoDoubleOwnership(t, []*consumer{a, b})
}

func TestRebalanceTimeoutFencesAMemberThatDoesNotRelease(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders": 2})
	a := &consumer{topics: []string{"orders"}}
	f.mustHeartbeat(a)
	b := &consumer{topics: []string{"orders"}}
	f.mustHeartbeat(b)
	stubborn := a.owned
	for range 3 { // a keeps reporting both partitions
		f.now = f.now.Add(5 * time.Second)
		if _, _, err := f.shard.Heartbeat(&pb.GroupHeartbeatRequest{GroupId: "g", MemberId: a.id, MemberEpoch: a.epoch, OwnedPartitions: stubborn}); err != nil {
			t.Fatal(err)
		}
		f.mustHeartbeat(b)
	}
	if count(b.owned) != 0 {
		t.Fatalf("b got %v while a still holds them", b.owned)
	}
	f.now = f.now.Add(20 * time.Second) // past a's 30 s rebalance timeout
	f.mustHeartbeat(b)
	if _, err := f.shard.Expire(); err != nil {
		t.Fatal(err)
	}
	f.mustHeartbeat(b)
	if count(b.owned) != 2 {
		t.Fatalf("b owns %v after a was fenced, want both", b.owned)
	}
}

func TestCommitFencing(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders": 2, "other": 1})
	a := &consumer{topics: []string{"orders"}}
	f.mustHeartbeat(a)
	commit := func(member string, epoch int32, topic string, part int32, off int64) error {
		_, err := f.shard.CommitOffsets(&pb.OffsetCommitRequest{GroupId: "g", MemberId: member, MemberEpoch: epoch,
			Topics: []*pb.OffsetCommitTopic{{Topic: topic, Partitions: []*pb.OffsetCommitPartition{{Partition: part, Offset: off}}}}})
		return err
	}
	if err := commit(a.id, a.epoch, "orders", 0, 10); err != nil {
		t.Fatal(err)
	}
	records := len(f.log.recs)
	cases := []struct {
		name string
		err  error
		do   func() error
	}{
		{"unknown member", ErrUnknownMember, func() error { return commit("nobody", 1, "orders", 0, 11) }},
		{"future epoch", ErrFencedMemberEpoch, func() error { return commit(a.id, a.epoch+5, "orders", 0, 11) }},
		{"stale epoch", ErrStaleMemberEpoch, func() error { return commit(a.id, a.epoch-5, "orders", 0, 11) }},
		{"not owned", ErrPartitionNotOwned, func() error { return commit(a.id, a.epoch, "other", 0, 11) }},
		{"outside commit to a group with members", ErrNonEmptyGroup, func() error { return commit("", -1, "orders", 0, 11) }},
		{"negative offset", ErrInvalidRequest, func() error { return commit(a.id, a.epoch, "orders", 0, -3) }},
		{"outside commit to a partition that does not exist", ErrUnknownPartition, func() error {
			_, err := f.shard.SetOffsets("empty-group", map[TP]int64{{"orders", 9}: 1})
			return err
		}},
		{"outside commit to a topic that does not exist", ErrUnknownPartition, func() error {
			_, err := f.shard.SetOffsets("empty-group", map[TP]int64{{"nope", 0}: 1})
			return err
		}},
		{"over-long group id", ErrInvalidGroupID, func() error {
			_, err := f.shard.CommitOffsets(&pb.OffsetCommitRequest{GroupId: strings.Repeat("g", 300), MemberEpoch: -1,
				Topics: []*pb.OffsetCommitTopic{{Topic: "orders", Partitions: []*pb.OffsetCommitPartition{{Offset: 1}}}}})
			return err
		}},
		{"heartbeat with a wrong epoch", ErrFencedMemberEpoch, func() error {
			_, _, err := f.shard.Heartbeat(&pb.GroupHeartbeatRequest{GroupId: "g", MemberId: a.id, MemberEpoch: a.epoch + 7})
			return err
		}},
		{"unknown assignor", ErrUnsupportedAssignor, func() error {
			_, _, err := f.shard.Heartbeat(&pb.GroupHeartbeatRequest{GroupId: "g", SubscribedTopicNames: []string{"x"}, ServerAssignor: "magic"})
			return err
		}},
		{"bad regex", ErrInvalidRegex, func() error {
			_, _, err := f.shard.Heartbeat(&pb.GroupHeartbeatRequest{GroupId: "g", SubscribedTopicRegex: "ord(ers"})
			return err
		}},
		{"delete a group with members", ErrNonEmptyGroup, func() error { _, err := f.shard.Delete("g"); return err }},
		{"describe an unknown group", ErrGroupNotFound, func() error { _, err := f.shard.Describe("nope"); return err }},
	}
	for _, c := range cases {
		if err := c.do(); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
	}
	if len(f.log.recs) != records {
		t.Fatalf("refused requests wrote %d records", len(f.log.recs)-records)
	}
	offs, _ := f.shard.FetchOffsets("g", nil)
	if len(offs) != 1 || offs[0].Partitions[0].Offset != 10 {
		t.Fatalf("offsets changed: %v", offs)
	}
}

func TestFailedWriteChangesNothing(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders": 2})
	a := &consumer{topics: []string{"orders"}}
	f.mustHeartbeat(a)
	before, _ := f.shard.Describe("g")
	f.log.fail = errors.New("disk on fire")
	if _, err := f.heartbeat(&consumer{topics: []string{"orders"}}); err == nil {
		t.Fatal("join succeeded with a failing log")
	}
	f.log.fail = nil
	after, _ := f.shard.Describe("g")
	if !proto.Equal(before, after) {
		t.Fatalf("state changed by a failed write:\n%v\n%v", before, after)
	}
}

// TestLoadRebuildsTheSameState replays the log into a new shard, as a new
// coordinator does after a failover, and compares everything.
func TestLoadRebuildsTheSameState(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders": 6, "audit": 3})
	cs := []*consumer{{topics: []string{"orders"}}, {topics: []string{"orders", "audit"}}, {topics: []string{"audit"}, instance: "static-1"}}
	for _, c := range cs {
		f.mustHeartbeat(c)
	}
	f.converge(cs)
	for _, c := range cs {
		for _, tp := range c.owned {
			for _, p := range tp.Partitions {
				if _, err := f.shard.CommitOffsets(&pb.OffsetCommitRequest{GroupId: "g", MemberId: c.id, MemberEpoch: c.epoch,
					Topics: []*pb.OffsetCommitTopic{{Topic: tp.Topic, Partitions: []*pb.OffsetCommitPartition{{Partition: p, Offset: int64(100 + p)}}}}}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	want, _ := f.shard.Describe("g")
	f.shard = f.open()
	got, _ := f.shard.Describe("g")
	for _, m := range append(want.Members, got.Members...) {
		m.LastHeartbeatMs = 0 // session clocks restart on load
	}
	if !proto.Equal(want, got) {
		t.Fatalf("loaded state differs:\nwant %v\ngot  %v", want, got)
	}
	// The members carry on with the new coordinator without a rebalance.
	for _, c := range cs {
		epoch := c.epoch
		f.mustHeartbeat(c)
		if c.epoch != epoch {
			t.Fatalf("member %s moved from epoch %d to %d after the load", c.id, epoch, c.epoch)
		}
	}
}

func TestStaticMemberRestartsWithoutRebalance(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders": 4})
	a := &consumer{topics: []string{"orders"}, instance: "pod-a"}
	b := &consumer{topics: []string{"orders"}, instance: "pod-b"}
	f.mustHeartbeat(a)
	f.mustHeartbeat(b)
	f.converge([]*consumer{a, b})
	groupEpoch := mustDescribe(t, f.shard).GroupEpoch
	owned := setOf(a.owned)
	// a leaves for a restart (-2) and comes back as a new process.
	if _, _, err := f.shard.Heartbeat(&pb.GroupHeartbeatRequest{GroupId: "g", MemberId: a.id, MemberEpoch: StaticLeaveEpoch, InstanceId: "pod-a"}); err != nil {
		t.Fatal(err)
	}
	a2 := &consumer{topics: []string{"orders"}, instance: "pod-a"}
	f.mustHeartbeat(a2)
	if !setOf(a2.owned).equal(owned) {
		t.Fatalf("restarted static member got %v, had %v", a2.owned, a.owned)
	}
	if d := mustDescribe(t, f.shard); d.GroupEpoch != groupEpoch || len(d.Members) != 2 {
		t.Fatalf("static restart rebalanced: epoch %d -> %d, %d members", groupEpoch, d.GroupEpoch, len(d.Members))
	}
	if _, err := f.heartbeat(a); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("old incarnation: %v, want ErrUnknownMember", err)
	}
}

func mustDescribe(t *testing.T, s *Shard) *pb.GroupDescription {
	t.Helper()
	d, err := s.Describe("g")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOffsetsExpireAndDeleteTombstones(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders": 1})
	if _, err := f.shard.SetOffsets("g", map[TP]int64{{"orders", 0}: 5}); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(30 * time.Minute)
	f.shard.Expire()
	if offs, _ := f.shard.FetchOffsets("g", nil); len(offs) != 1 {
		t.Fatalf("offset expired early: %v", offs)
	}
	f.now = f.now.Add(31 * time.Minute)
	f.shard.Expire()
	if offs, _ := f.shard.FetchOffsets("g", nil); len(offs) != 0 {
		t.Fatalf("offset kept past retention: %v", offs)
	}
	if _, err := f.shard.Describe("g"); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("empty expired group still there: %v", err)
	}
	// Delete: tombstones for the offsets and the group; a reload agrees.
	f.shard.SetOffsets("h", map[TP]int64{{"orders", 0}: 7})
	if _, err := f.shard.Delete("h"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.open().Describe("h"); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("deleted group came back on load: %v", err)
	}
}

func TestRegexSubscriptionFollowsNewTopics(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders.eu": 1})
	c := &consumer{}
	resp, _, err := f.shard.Heartbeat(&pb.GroupHeartbeatRequest{GroupId: "g", SubscribedTopicRegex: `orders\..*`})
	if err != nil {
		t.Fatal(err)
	}
	c.id, c.epoch, c.owned = resp.MemberId, resp.MemberEpoch, resp.Assignment
	if count(c.owned) != 1 {
		t.Fatalf("owned %v", c.owned)
	}
	f.meta.topics["orders.us"] = 2
	f.meta.topics["billing"] = 3
	f.meta.version++
	f.mustHeartbeat(c)
	if got := fmt.Sprint(c.owned); count(c.owned) != 3 || strings.Contains(got, "billing") {
		t.Fatalf("after new topics: %v", c.owned)
	}
}

func TestUnloadedShardRefuses(t *testing.T) {
	f := newFixture(t, map[string]int32{"orders": 1})
	s := NewShard(0, f.cfg(), f.meta, f.log)
	if _, _, err := s.Heartbeat(&pb.GroupHeartbeatRequest{GroupId: "g", SubscribedTopicNames: []string{"orders"}}); !errors.Is(err, ErrLoadInProgress) {
		t.Fatalf("loading shard: %v", err)
	}
	f.shard.Unload()
	if _, err := f.shard.FetchOffsets("g", nil); !errors.Is(err, ErrNotCoordinator) {
		t.Fatalf("unloaded shard: %v", err)
	}
}
