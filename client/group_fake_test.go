package client_test

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage/record"
)

// groupFake is a scripted cluster of fake brokers (ids 1, 2, ...) sharing
// one topic "t" (led by broker 1, records held in memory) and one group
// coordinator (on broker coord): a small KIP-848 coordinator that gives
// each member a round-robin share of the partitions in join order, and a
// partition to its new owner only once no other member reports owning it.
// Every heartbeat and commit is logged in order.
type groupFake struct {
	t       *testing.T
	addrs   []string
	parts   int32
	mu      sync.Mutex
	log     map[int32][]string // values per partition
	coord   int                // index into addrs of the coordinator
	members []*fakeMember      // join order
	nextID  int
	offsets map[string]map[client.TopicPartition]int64 // group -> committed
	events  []string
	hbs     []*pb.GroupHeartbeatRequest
	findN   int // FindCoordinator calls

	// hbErr, when set, may refuse a heartbeat (a code, NONE to go on).
	hbErr     func(req *pb.GroupHeartbeatRequest) pb.ErrorCode
	commitErr func(req *pb.OffsetCommitRequest) pb.ErrorCode
	// groups listed and described per broker by the admin RPCs.
	listed map[int][]*pb.GroupListing
}

type fakeMember struct {
	id, instance string
	epoch        int32 // as last answered
	bump         bool  // the target changed: the next answer carries epoch+1
	owned        map[client.TopicPartition]bool
	target       map[client.TopicPartition]bool
	sent         map[client.TopicPartition]bool // the last assignment answered
}

type fakeNode struct {
	pb.UnimplementedBrokerServiceServer
	pb.UnimplementedGroupServiceServer
	f  *groupFake
	ix int
}

func newGroupFake(t *testing.T, brokers int, parts int32) *groupFake {
	t.Helper()
	f := &groupFake{t: t, parts: parts, log: map[int32][]string{}, offsets: map[string]map[client.TopicPartition]int64{}, listed: map[int][]*pb.GroupListing{}}
	for i := range brokers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.addrs = append(f.addrs, ln.Addr().String())
		s := grpc.NewServer()
		n := &fakeNode{f: f, ix: i}
		pb.RegisterBrokerServiceServer(s, n)
		pb.RegisterGroupServiceServer(s, n)
		go s.Serve(ln)
		t.Cleanup(s.Stop)
	}
	return f
}

func (f *groupFake) client(t *testing.T) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Bootstrap: f.addrs[:1], RequestTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// produce appends values to a partition.
func (f *groupFake) produce(partition int32, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.log[partition] = append(f.log[partition], fmt.Sprintf("p%d-%d", partition, len(f.log[partition])))
	}
}

func (f *groupFake) event(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fmt.Sprintf(format, args...))
}

func (f *groupFake) eventsCopy() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

func (f *groupFake) committed(group string, tp client.TopicPartition) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	off, ok := f.offsets[group][tp]
	return off, ok
}

func groupErr(code pb.ErrorCode, msg string) error {
	st, _ := status.New(codes.FailedPrecondition, msg).WithDetails(&pb.ErrorInfo{Code: code, Message: msg})
	return st.Err()
}

func tpsString(m map[client.TopicPartition]bool) string {
	var s []string
	for tp := range m {
		s = append(s, strconv.Itoa(int(tp.Partition)))
	}
	sort.Strings(s)
	return fmt.Sprint(s)
}

func (n *fakeNode) Metadata(context.Context, *pb.MetadataRequest) (*pb.MetadataResponse, error) {
	f := n.f
	resp := &pb.MetadataResponse{ClusterId: "fake", MetadataOffset: 1}
	for i, a := range f.addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		resp.Brokers = append(resp.Brokers, &pb.BrokerNode{NodeId: int32(i + 1), Host: host, Port: int32(p)})
	}
	t := &pb.MetadataTopicResult{Name: "t"}
	for i := range f.parts {
		t.Partitions = append(t.Partitions, &pb.MetadataPartitionResult{Partition: i, LeaderId: 1, LeaderEpoch: 1, Replicas: []int32{1}, Isr: []int32{1}})
	}
	resp.Topics = []*pb.MetadataTopicResult{t}
	return resp, nil
}

func (n *fakeNode) ListOffsets(_ context.Context, req *pb.ListOffsetsRequest) (*pb.ListOffsetsResponse, error) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &pb.ListOffsetsResponse{}
	for _, t := range req.Topics {
		tr := &pb.ListOffsetsTopicResult{Topic: t.Topic}
		for _, p := range t.Partitions {
			off := int64(0)
			if p.TimestampMs == -1 {
				off = int64(len(f.log[p.Partition]))
			}
			tr.Partitions = append(tr.Partitions, &pb.ListOffsetsPartitionResult{Partition: p.Partition, Offset: off, TimestampMs: -1, LeaderEpoch: 1})
		}
		resp.Topics = append(resp.Topics, tr)
	}
	return resp, nil
}

// Fetch answers the records from each fetch offset on as one batch, waiting
// up to max_wait for some.
func (n *fakeNode) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	f := n.f
	deadline := time.Now().Add(time.Duration(req.MaxWaitMs) * time.Millisecond)
	for {
		f.mu.Lock()
		resp := &pb.FetchResponse{}
		any := false
		for _, t := range req.Topics {
			tr := &pb.FetchTopicResult{Topic: t.Topic}
			for _, p := range t.Partitions {
				vals := f.log[p.Partition]
				pr := &pb.FetchPartitionResult{Partition: p.Partition, HighWatermark: int64(len(vals)), LastStableOffset: int64(len(vals)),
					PreferredReadReplica: -1, NextFetchOffset: -1}
				if p.FetchOffset > int64(len(vals)) {
					pr.ErrorCode = pb.ErrorCode_OFFSET_OUT_OF_RANGE
				} else if p.FetchOffset < int64(len(vals)) {
					b := record.NewBuilder(record.BatchOptions{PartitionLeaderEpoch: 1})
					for _, v := range vals[p.FetchOffset:] {
						b.Append(time.Now().UnixMilli(), nil, []byte(v), nil)
					}
					batch, err := b.Build()
					if err != nil {
						f.mu.Unlock()
						return nil, err
					}
					record.Batch(batch).SetBaseOffset(p.FetchOffset)
					pr.Records = batch
					any = true
				}
				tr.Partitions = append(tr.Partitions, pr)
			}
			resp.Topics = append(resp.Topics, tr)
		}
		f.mu.Unlock()
		if any || time.Now().After(deadline) {
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (n *fakeNode) FindCoordinator(_ context.Context, req *pb.FindCoordinatorRequest) (*pb.FindCoordinatorResponse, error) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.findN++
	resp := &pb.FindCoordinatorResponse{}
	for _, g := range req.GroupIds {
		resp.Coordinators = append(resp.Coordinators, &pb.GroupCoordinator{GroupId: g, NodeId: int32(f.coord + 1), Address: f.addrs[f.coord]})
	}
	return resp, nil
}

// notCoordinatorLocked refuses requests on a broker that is not the coordinator.
func (n *fakeNode) notCoordinatorLocked() error {
	if n.ix != n.f.coord {
		return groupErr(pb.ErrorCode_NOT_COORDINATOR, "not the coordinator")
	}
	return nil
}

func (f *groupFake) memberLocked(id string) *fakeMember {
	for _, m := range f.members {
		if m.id == id {
			return m
		}
	}
	return nil
}

// retargetLocked deals the partitions round-robin over the members in join
// order; a member whose target changed gets a new epoch.
func (f *groupFake) retargetLocked() {
	for i, m := range f.members {
		next := map[client.TopicPartition]bool{}
		for p := int32(i); p < f.parts; p += int32(len(f.members)) {
			next[client.TopicPartition{Topic: "t", Partition: p}] = true
		}
		if tpsString(next) != tpsString(m.target) {
			m.target = next
			m.bump = true
		}
	}
}

// fence makes the member's next heartbeat FENCED_MEMBER_EPOCH (its epoch
// moves on without it).
func (f *groupFake) fence(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.memberLocked(id).epoch += 10
}

func (n *fakeNode) GroupHeartbeat(_ context.Context, req *pb.GroupHeartbeatRequest) (*pb.GroupHeartbeatResponse, error) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := n.notCoordinatorLocked(); err != nil {
		return nil, err
	}
	if f.hbErr != nil {
		if code := f.hbErr(req); code != pb.ErrorCode_NONE {
			return nil, groupErr(code, "scripted")
		}
	}
	owned := map[client.TopicPartition]bool{}
	for _, t := range req.OwnedPartitions {
		for _, p := range t.Partitions {
			owned[client.TopicPartition{Topic: t.Topic, Partition: p}] = true
		}
	}
	f.hbs = append(f.hbs, req)
	f.events = append(f.events, fmt.Sprintf("hb %s epoch %d owned %s", req.MemberId, req.MemberEpoch, tpsString(owned)))
	m := f.memberLocked(req.MemberId)
	switch {
	case req.MemberEpoch == 0:
		if m == nil {
			id := req.MemberId
			if id == "" {
				f.nextID++
				id = fmt.Sprintf("m%d", f.nextID)
			}
			m = &fakeMember{id: id, instance: req.InstanceId, owned: map[client.TopicPartition]bool{}}
			f.members = append(f.members, m)
		}
		m.owned = map[client.TopicPartition]bool{}
		f.retargetLocked()
	case req.MemberEpoch < 0:
		if m == nil {
			return nil, groupErr(pb.ErrorCode_UNKNOWN_MEMBER_ID, "unknown member")
		}
		for i, x := range f.members {
			if x == m {
				f.members = append(f.members[:i], f.members[i+1:]...)
				break
			}
		}
		f.retargetLocked()
		return &pb.GroupHeartbeatResponse{MemberId: m.id, MemberEpoch: req.MemberEpoch}, nil
	case m == nil:
		return nil, groupErr(pb.ErrorCode_UNKNOWN_MEMBER_ID, "unknown member")
	case req.MemberEpoch != m.epoch:
		return nil, groupErr(pb.ErrorCode_FENCED_MEMBER_EPOCH, fmt.Sprintf("epoch %d, member is at %d", req.MemberEpoch, m.epoch))
	default:
		m.owned = owned
	}
	// The assignment: the target partitions no other member holds (reports
	// owning, or was given and has not released yet).
	assign := map[client.TopicPartition]bool{}
	for tp := range m.target {
		free := true
		for _, o := range f.members {
			if o != m && (o.owned[tp] || o.sent[tp]) {
				free = false
			}
		}
		if free {
			assign[tp] = true
		}
	}
	m.sent = assign
	if m.bump || m.epoch == 0 {
		m.epoch, m.bump = m.epoch+1, false
	}
	resp := &pb.GroupHeartbeatResponse{MemberId: m.id, MemberEpoch: m.epoch, HeartbeatIntervalMs: 50}
	var ps []int32
	for tp := range assign {
		ps = append(ps, tp.Partition)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	if len(ps) > 0 {
		resp.Assignment = []*pb.TopicPartitions{{Topic: "t", Partitions: ps}}
	}
	return resp, nil
}

func (n *fakeNode) OffsetCommit(_ context.Context, req *pb.OffsetCommitRequest) (*pb.OffsetCommitResponse, error) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := n.notCoordinatorLocked(); err != nil {
		return nil, err
	}
	if f.commitErr != nil {
		if code := f.commitErr(req); code != pb.ErrorCode_NONE {
			return nil, groupErr(code, "scripted")
		}
	}
	if req.MemberId == "" {
		if len(f.members) > 0 {
			return nil, groupErr(pb.ErrorCode_NON_EMPTY_GROUP, "group has members")
		}
	} else {
		m := f.memberLocked(req.MemberId)
		switch {
		case m == nil:
			return nil, groupErr(pb.ErrorCode_UNKNOWN_MEMBER_ID, "unknown member")
		case req.MemberEpoch < m.epoch:
			return nil, groupErr(pb.ErrorCode_STALE_MEMBER_EPOCH, "stale")
		case req.MemberEpoch > m.epoch:
			return nil, groupErr(pb.ErrorCode_FENCED_MEMBER_EPOCH, "fenced")
		}
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				tp := client.TopicPartition{Topic: t.Topic, Partition: p.Partition}
				if !m.owned[tp] && !m.sent[tp] {
					return nil, groupErr(pb.ErrorCode_PARTITION_NOT_OWNED, fmt.Sprintf("%s does not own %d", m.id, p.Partition))
				}
			}
		}
	}
	if f.offsets[req.GroupId] == nil {
		f.offsets[req.GroupId] = map[client.TopicPartition]int64{}
	}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			f.offsets[req.GroupId][client.TopicPartition{Topic: t.Topic, Partition: p.Partition}] = p.Offset
			f.events = append(f.events, fmt.Sprintf("commit %s %d@%d", req.MemberId, p.Partition, p.Offset))
		}
	}
	return &pb.OffsetCommitResponse{}, nil
}

func (n *fakeNode) OffsetFetch(_ context.Context, req *pb.OffsetFetchRequest) (*pb.OffsetFetchResponse, error) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := n.notCoordinatorLocked(); err != nil {
		return nil, err
	}
	resp := &pb.OffsetFetchResponse{}
	offs := f.offsets[req.GroupId]
	for _, t := range req.Topics {
		ft := &pb.OffsetFetchTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			off, ok := offs[client.TopicPartition{Topic: t.Topic, Partition: p}]
			if !ok {
				off = -1
			}
			ft.Partitions = append(ft.Partitions, &pb.CommittedOffset{Partition: p, Offset: off, LeaderEpoch: -1})
		}
		resp.Topics = append(resp.Topics, ft)
	}
	if len(req.Topics) == 0 {
		for tp, off := range offs {
			resp.Topics = append(resp.Topics, &pb.OffsetFetchTopic{Topic: tp.Topic, Partitions: []*pb.CommittedOffset{{Partition: tp.Partition, Offset: off, CommitTimestampMs: 1}}})
		}
	}
	return resp, nil
}

func (n *fakeNode) ListGroups(context.Context, *pb.ListGroupsRequest) (*pb.ListGroupsResponse, error) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	return &pb.ListGroupsResponse{Groups: f.listed[n.ix]}, nil
}

func (n *fakeNode) DescribeGroups(_ context.Context, req *pb.DescribeGroupsRequest) (*pb.DescribeGroupsResponse, error) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := n.notCoordinatorLocked(); err != nil {
		return nil, err
	}
	resp := &pb.DescribeGroupsResponse{}
	for _, g := range req.GroupIds {
		offs, ok := f.offsets[g]
		if !ok {
			resp.Groups = append(resp.Groups, &pb.GroupDescription{GroupId: g, ErrorCode: pb.ErrorCode_GROUP_ID_NOT_FOUND, ErrorMessage: "no group " + g})
			continue
		}
		d := &pb.GroupDescription{GroupId: g, State: client.GroupStateEmpty, CoordinatorId: int32(f.coord + 1), Assignor: "uniform"}
		for tp, off := range offs {
			d.Offsets = append(d.Offsets, &pb.GroupOffset{Topic: tp.Topic, Partition: tp.Partition, CommittedOffset: off,
				LogEndOffset: int64(len(f.log[tp.Partition])), Lag: int64(len(f.log[tp.Partition])) - off})
		}
		resp.Groups = append(resp.Groups, d)
	}
	return resp, nil
}

func (n *fakeNode) DeleteGroups(_ context.Context, req *pb.DeleteGroupsRequest) (*pb.DeleteGroupsResponse, error) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := n.notCoordinatorLocked(); err != nil {
		return nil, err
	}
	resp := &pb.DeleteGroupsResponse{}
	for _, g := range req.GroupIds {
		r := &pb.DeleteGroupResult{GroupId: g}
		if _, ok := f.offsets[g]; !ok {
			r.ErrorCode, r.ErrorMessage = pb.ErrorCode_GROUP_ID_NOT_FOUND, "no group "+g
		} else {
			delete(f.offsets, g)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (n *fakeNode) ResetOffsets(_ context.Context, req *pb.ResetOffsetsRequest) (*pb.ResetOffsetsResponse, error) {
	f := n.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := n.notCoordinatorLocked(); err != nil {
		return nil, err
	}
	if len(f.members) > 0 {
		return nil, groupErr(pb.ErrorCode_NON_EMPTY_GROUP, "group has members")
	}
	offs := f.offsets[req.GroupId]
	resp := &pb.ResetOffsetsResponse{}
	for p := range f.parts {
		tp := client.TopicPartition{Topic: "t", Partition: p}
		prev, ok := offs[tp]
		if !ok {
			prev = -1
		}
		end := int64(len(f.log[p]))
		var next int64
		switch to := req.To.(type) {
		case *pb.ResetOffsetsRequest_ToEarliest:
			next = 0
		case *pb.ResetOffsetsRequest_ToLatest:
			next = end
		case *pb.ResetOffsetsRequest_ShiftBy:
			next = min(max(prev+to.ShiftBy, 0), end)
		default:
			return nil, groupErr(pb.ErrorCode_INVALID_REQUEST, "unsupported by the fake")
		}
		resp.Partitions = append(resp.Partitions, &pb.OffsetReset{Topic: "t", Partition: p, PreviousOffset: prev, NewOffset: next})
		if !req.DryRun {
			if f.offsets[req.GroupId] == nil {
				f.offsets[req.GroupId] = map[client.TopicPartition]int64{}
			}
			f.offsets[req.GroupId][tp] = next
		}
	}
	return resp, nil
}
