package broker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// groupCode is the Strata error code of a GroupService error.
func groupCode(err error) pb.ErrorCode {
	if err == nil {
		return pb.ErrorCode_NONE
	}
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*pb.ErrorInfo); ok {
			return info.Code
		}
	}
	return pb.ErrorCode_UNKNOWN_SERVER_ERROR
}

// groupConn is a GroupService client to an address.
func (c *testCluster) groupConn(addr string) pb.GroupServiceClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.conns[addr]
	if cc == nil {
		var err error
		if cc, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			c.t.Fatal(err)
		}
		c.conns[addr] = cc
	}
	return pb.NewGroupServiceClient(cc)
}

// coordinator asks the running brokers which broker coordinates group id,
// until one answers a coordinator that is running.
func (c *testCluster) coordinator(id string) (int32, pb.GroupServiceClient) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, b := range c.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := c.groupConn(c.Addr(b)).FindCoordinator(ctx, &pb.FindCoordinatorRequest{GroupIds: []string{id}})
			cancel()
			if err != nil {
				continue
			}
			gc := resp.Coordinators[0]
			if gc.ErrorCode != pb.ErrorCode_NONE || c.Broker(gc.NodeId) == nil {
				continue
			}
			// The coordinator serves once its own metadata names it and it
			// has loaded the group's partition.
			cl := c.groupConn(gc.Address)
			ctx, cancel = context.WithTimeout(context.Background(), time.Second)
			_, err = cl.OffsetFetch(ctx, &pb.OffsetFetchRequest{GroupId: id})
			cancel()
			if err == nil {
				return gc.NodeId, cl
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no coordinator for group %q", id)
	return -1, nil
}

// member is a well-behaved group member over raw gRPC: it heartbeats,
// releases what it is told to give up at once, and records what it owns.
type member struct {
	c     *testCluster
	group string
	mu    sync.Mutex
	id    string
	epoch int32
	owned []*pb.TopicPartitions
	stop  chan struct{}
	done  chan struct{}
}

func (c *testCluster) join(group string, topics ...string) *member {
	m := &member{c: c, group: group, stop: make(chan struct{}), done: make(chan struct{})}
	go m.run(topics)
	return m
}

func (m *member) run(topics []string) {
	defer close(m.done)
	var gc pb.GroupServiceClient
	for {
		select {
		case <-m.stop:
			return
		default:
		}
		if gc == nil {
			_, gc = m.c.coordinator(m.group)
		}
		m.mu.Lock()
		req := &pb.GroupHeartbeatRequest{GroupId: m.group, MemberId: m.id, MemberEpoch: m.epoch,
			SubscribedTopicNames: topics, OwnedPartitions: m.owned, RebalanceTimeoutMs: 5000}
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := gc.GroupHeartbeat(ctx, req)
		cancel()
		wait := 50 * time.Millisecond
		switch code := groupCode(err); code {
		case pb.ErrorCode_NONE:
			m.mu.Lock()
			m.id, m.epoch, m.owned = resp.MemberId, resp.MemberEpoch, resp.Assignment
			m.mu.Unlock()
			wait = time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond
		case pb.ErrorCode_UNKNOWN_MEMBER_ID, pb.ErrorCode_FENCED_MEMBER_EPOCH:
			m.mu.Lock()
			m.epoch, m.owned = 0, nil
			m.mu.Unlock()
		default:
			gc = nil // find the coordinator again
		}
		select {
		case <-m.stop:
			return
		case <-time.After(wait):
		}
	}
}

// crash stops heartbeating without leaving (the process died).
func (m *member) crash() { close(m.stop); <-m.done }

func (m *member) snapshot() (string, int32, map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bool{}
	for _, t := range m.owned {
		for _, p := range t.Partitions {
			out[fmt.Sprintf("%s-%d", t.Topic, p)] = true
		}
	}
	return m.id, m.epoch, out
}

// watchOwnership samples the members' ownership until stop and fails on any
// partition two members own at once.
func watchOwnership(t testing.TB, members func() []*member, stop <-chan struct{}) <-chan error {
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			owner := map[string]string{}
			for _, m := range members() {
				id, _, owned := m.snapshot()
				for tp := range owned {
					if o, ok := owner[tp]; ok {
						errc <- fmt.Errorf("%s owned by %s and %s at once", tp, o, id)
						return
					}
					owner[tp] = id
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return errc
}

// waitOwnership waits until the members own want partitions each.
func waitOwnership(t testing.TB, ms []*member, want []int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var got []int
		ok := true
		for i, m := range ms {
			_, _, owned := m.snapshot()
			got = append(got, len(owned))
			ok = ok && len(owned) == want[i]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members own %v partitions, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGroupSplitsPartitionsAndMovesThemOnMemberDeath(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("orders", 6, 3, nil)
	var mu sync.Mutex
	var ms []*member
	list := func() []*member { mu.Lock(); defer mu.Unlock(); return append([]*member(nil), ms...) }
	stop := make(chan struct{})
	errc := watchOwnership(t, list, stop)
	for range 3 {
		m := c.join("billing", "orders")
		mu.Lock()
		ms = append(ms, m)
		mu.Unlock()
		t.Cleanup(func() {
			select {
			case <-m.stop:
			default:
				m.crash()
			}
		})
	}
	waitOwnership(t, list(), []int{2, 2, 2}, 30*time.Second)
	start := time.Now()
	ms[2].crash()
	mu.Lock()
	ms = ms[:2]
	mu.Unlock()
	waitOwnership(t, list(), []int{3, 3}, 15*time.Second)
	t.Logf("partitions of the dead member moved in %v (session timeout 3 s)", time.Since(start).Round(10*time.Millisecond))
	close(stop)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestGroupMovesWithItsCoordinator(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("orders", 2, 3, nil)
	m := c.join("audit", "orders")
	t.Cleanup(m.crash)
	waitOwnership(t, []*member{m}, []int{2}, 30*time.Second)
	id, epoch, _ := m.snapshot()
	coord, gc := c.coordinator("audit")
	ctx := context.Background()
	commit := &pb.OffsetCommitRequest{GroupId: "audit", MemberId: id, MemberEpoch: epoch, Topics: []*pb.OffsetCommitTopic{{
		Topic: "orders", Partitions: []*pb.OffsetCommitPartition{{Partition: 0, Offset: 42}, {Partition: 1, Offset: 7, Metadata: "m"}}}}}
	if _, err := gc.OffsetCommit(ctx, commit); err != nil {
		t.Fatal(err)
	}
	c.Kill(coord)
	newCoord, gc := c.coordinator("audit")
	if newCoord == coord {
		t.Fatalf("coordinator still %d after it was killed", coord)
	}
	var resp *pb.OffsetFetchResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		resp, err = gc.OffsetFetch(ctx, &pb.OffsetFetchRequest{GroupId: "audit"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offset fetch at the new coordinator %d: %v", newCoord, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := fmt.Sprint(resp.Topics)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 2 || resp.Topics[0].Partitions[0].Offset != 42 ||
		resp.Topics[0].Partitions[1].Offset != 7 || resp.Topics[0].Partitions[1].Metadata != "m" {
		t.Fatalf("offsets after failover: %s", got)
	}
	// The member carries on at the new coordinator with its epoch.
	time.Sleep(time.Second)
	id2, epoch2, owned := m.snapshot()
	if id2 != id || epoch2 != epoch || len(owned) != 2 {
		t.Fatalf("member after failover: id %s epoch %d owned %v (was %s, %d)", id2, epoch2, owned, id, epoch)
	}
}

func TestGroupServiceRefusesBadInput(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("orders", 2, 3, nil)
	coord, gc := c.coordinator("g1")
	ctx := context.Background()
	for _, id := range c.Running() {
		if id == coord {
			continue
		}
		// Until its metadata has __consumer_offsets a broker answers
		// COORDINATOR_NOT_AVAILABLE; then NOT_COORDINATOR.
		var err error
		for range 100 {
			_, err = c.groupConn(c.Addr(id)).OffsetFetch(ctx, &pb.OffsetFetchRequest{GroupId: "g1"})
			if groupCode(err) != pb.ErrorCode_COORDINATOR_NOT_AVAILABLE {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code := groupCode(err); code != pb.ErrorCode_NOT_COORDINATOR {
			t.Errorf("broker %d (not the coordinator): %v, want NOT_COORDINATOR", id, err)
		}
	}
	commitOne := func(member string, epoch int32) pb.ErrorCode {
		_, err := gc.OffsetCommit(ctx, &pb.OffsetCommitRequest{GroupId: "g1", MemberId: member, MemberEpoch: epoch, Topics: []*pb.OffsetCommitTopic{{
			Topic: "orders", Partitions: []*pb.OffsetCommitPartition{{Partition: 0, Offset: 1}}}}})
		return groupCode(err)
	}
	checks := []struct {
		name string
		want pb.ErrorCode
		do   func() pb.ErrorCode
	}{
		{"over-long group id", pb.ErrorCode_INVALID_GROUP_ID, func() pb.ErrorCode {
			_, err := gc.GroupHeartbeat(ctx, &pb.GroupHeartbeatRequest{GroupId: strings.Repeat("x", 300), SubscribedTopicNames: []string{"orders"}})
			return groupCode(err)
		}},
		{"unknown member", pb.ErrorCode_UNKNOWN_MEMBER_ID, func() pb.ErrorCode {
			_, err := gc.GroupHeartbeat(ctx, &pb.GroupHeartbeatRequest{GroupId: "g1", MemberId: "ghost", MemberEpoch: 3})
			return groupCode(err)
		}},
		{"join without a subscription", pb.ErrorCode_INVALID_REQUEST, func() pb.ErrorCode {
			_, err := gc.GroupHeartbeat(ctx, &pb.GroupHeartbeatRequest{GroupId: "g1"})
			return groupCode(err)
		}},
		{"commit by an unknown member", pb.ErrorCode_UNKNOWN_MEMBER_ID, func() pb.ErrorCode { return commitOne("ghost", 1) }},
		{"delete an unknown group", pb.ErrorCode_GROUP_ID_NOT_FOUND, func() pb.ErrorCode {
			resp, err := gc.DeleteGroups(ctx, &pb.DeleteGroupsRequest{GroupIds: []string{"g1"}})
			if err != nil {
				return groupCode(err)
			}
			return resp.Results[0].ErrorCode
		}},
	}
	for _, ch := range checks {
		if got := ch.do(); got != ch.want {
			t.Errorf("%s: %s, want %s", ch.name, got, ch.want)
		}
	}
	d, err := gc.DescribeGroups(ctx, &pb.DescribeGroupsRequest{GroupIds: []string{"g1"}})
	if err != nil || d.Groups[0].ErrorCode != pb.ErrorCode_GROUP_ID_NOT_FOUND {
		t.Fatalf("refused requests created the group: %v %v", d, err)
	}
}

func TestGroupDescribeLagAndResetOffsets(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("orders", 1, 3, nil)
	leader := c.leaderOf("orders", 0, 1)
	ctx := context.Background()
	var vals []string
	for i := range 10 {
		vals = append(vals, fmt.Sprint("v", i))
	}
	if r, err := produce(ctx, c.client(leader), "orders", 0, -1, batchOf(t, vals...)); err != nil || r.ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("produce: %v %v", r, err)
	}
	_, gc := c.coordinator("ops")
	commit := func(off int64) {
		t.Helper()
		if _, err := gc.OffsetCommit(ctx, &pb.OffsetCommitRequest{GroupId: "ops", MemberEpoch: -1, Topics: []*pb.OffsetCommitTopic{{
			Topic: "orders", Partitions: []*pb.OffsetCommitPartition{{Partition: 0, Offset: off}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	committed := func() int64 {
		t.Helper()
		resp, err := gc.OffsetFetch(ctx, &pb.OffsetFetchRequest{GroupId: "ops"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].Offset
	}
	commit(3)
	d, err := gc.DescribeGroups(ctx, &pb.DescribeGroupsRequest{GroupIds: []string{"ops"}})
	if err != nil {
		t.Fatal(err)
	}
	g := d.Groups[0]
	if g.State != "empty" || len(g.Offsets) != 1 || g.Offsets[0].CommittedOffset != 3 || g.Offsets[0].LogEndOffset != 10 || g.Offsets[0].Lag != 7 {
		t.Fatalf("describe: %v", g)
	}
	reset := func(req *pb.ResetOffsetsRequest) *pb.OffsetReset {
		t.Helper()
		req.GroupId = "ops"
		resp, err := gc.ResetOffsets(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Partitions[0]
	}
	if r := reset(&pb.ResetOffsetsRequest{To: &pb.ResetOffsetsRequest_ToEarliest{ToEarliest: true}, DryRun: true}); r.PreviousOffset != 3 || r.NewOffset != 0 {
		t.Fatalf("dry run plan: %v", r)
	}
	if got := committed(); got != 3 {
		t.Fatalf("dry run committed %d", got)
	}
	steps := []struct {
		req  *pb.ResetOffsetsRequest
		want int64
	}{
		{&pb.ResetOffsetsRequest{To: &pb.ResetOffsetsRequest_ShiftBy{ShiftBy: 5}}, 8},
		{&pb.ResetOffsetsRequest{To: &pb.ResetOffsetsRequest_ShiftBy{ShiftBy: 50}}, 10},  // clamped to the end
		{&pb.ResetOffsetsRequest{To: &pb.ResetOffsetsRequest_ToOffset{ToOffset: -4}}, 0}, // clamped to the start
		{&pb.ResetOffsetsRequest{To: &pb.ResetOffsetsRequest_ToLatest{ToLatest: true}}, 10},
		{&pb.ResetOffsetsRequest{To: &pb.ResetOffsetsRequest_ToTimestampMs{ToTimestampMs: 0}, Topics: []*pb.TopicPartitions{{Topic: "orders"}}}, 0},
		{&pb.ResetOffsetsRequest{To: &pb.ResetOffsetsRequest_ToTimestampMs{ToTimestampMs: time.Now().Add(time.Hour).UnixMilli()}}, 10},
	}
	for _, s := range steps {
		if r := reset(s.req); r.NewOffset != s.want || committed() != s.want {
			t.Fatalf("reset %v: plan %v, committed %d, want %d", s.req.To, r, committed(), s.want)
		}
	}
	// With a member in the group, resets are refused and change nothing.
	m := c.join("ops", "orders")
	t.Cleanup(m.crash)
	waitOwnership(t, []*member{m}, []int{1}, 20*time.Second)
	_, err = gc.ResetOffsets(ctx, &pb.ResetOffsetsRequest{GroupId: "ops", To: &pb.ResetOffsetsRequest_ToEarliest{ToEarliest: true}})
	if groupCode(err) != pb.ErrorCode_NON_EMPTY_GROUP || committed() != 10 {
		t.Fatalf("reset with a member: %v, committed %d", err, committed())
	}
	_, err = gc.ResetOffsets(ctx, &pb.ResetOffsetsRequest{GroupId: "ops"})
	if groupCode(err) != pb.ErrorCode_INVALID_REQUEST {
		t.Fatalf("reset without a target: %v", err)
	}
}
