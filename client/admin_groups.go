package client

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Group states as the coordinator reports them.
const (
	GroupStateEmpty       = "empty"
	GroupStateAssigning   = "assigning"
	GroupStateReconciling = "reconciling"
	GroupStateStable      = "stable"
	GroupStateDead        = "dead"
)

// GroupListing is one group as ListGroups reports it.
type GroupListing struct {
	Group         string
	State         string
	Members       int
	CoordinatorID int32
}

// ListGroups lists the groups of the cluster (only those in states, if
// any are named): every broker lists the groups it coordinates, and the
// answers are merged, sorted by group. A broker that does not answer makes
// the error name it; the groups of the others are still returned.
func (a *Admin) ListGroups(ctx context.Context, states ...string) ([]GroupListing, error) {
	for _, s := range states {
		switch s {
		case GroupStateEmpty, GroupStateAssigning, GroupStateReconciling, GroupStateStable:
		default:
			return nil, invalid("group state %q: want empty, assigning, reconciling or stable", s)
		}
	}
	m, err := a.c.RefreshMetadata(ctx)
	if err != nil {
		return nil, err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	byGroup := map[string]GroupListing{}
	for _, b := range m.Brokers {
		wg.Go(func() {
			var resp *pb.ListGroupsResponse
			gs, err := a.c.groupService(b.Addr)
			if err == nil {
				rctx, cancel := context.WithTimeout(ctx, a.c.cfg.RequestTimeout)
				resp, err = gs.ListGroups(rctx, &pb.ListGroupsRequest{States: states})
				cancel()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				e := &Error{Code: pb.ErrorCode_BROKER_NOT_AVAILABLE, Retriable: true}
				if !errors.As(FromError(err), &e) {
					e.Message = err.Error()
				}
				errs = append(errs, &Error{Code: e.Code, Retriable: e.Retriable,
					Message: fmt.Sprintf("broker %d (%s) did not list its groups: %s", b.ID, b.Addr, e.Message)})
				return
			}
			for _, l := range resp.Groups {
				// During a coordinator move two brokers may list a group:
				// the one with members is the live one.
				if old, ok := byGroup[l.GroupId]; ok && old.Members >= int(l.Members) {
					continue
				}
				byGroup[l.GroupId] = GroupListing{Group: l.GroupId, State: l.State, Members: int(l.Members), CoordinatorID: l.CoordinatorId}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	out := make([]GroupListing, 0, len(byGroup))
	for _, l := range byGroup {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, errors.Join(errs...)
}

// GroupDescription is one group as its coordinator describes it.
type GroupDescription struct {
	Group           string
	State           string
	GroupEpoch      int32
	AssignmentEpoch int32
	Assignor        string
	CoordinatorID   int32
	Members         []GroupMemberDescription
	// Offsets are the committed offsets with the partitions' log ends and
	// the lag, sorted by topic and partition.
	Offsets []GroupOffset
	Err     error // GROUP_ID_NOT_FOUND, ...; nil: described
}

// GroupMemberDescription is one member of a group.
type GroupMemberDescription struct {
	MemberID         string
	InstanceID       string
	ClientID         string
	Rack             string
	MemberEpoch      int32
	State            string // stable, unrevoked_partitions, unreleased_partitions
	SubscribedTopics []string
	SubscribedRegex  string
	// Assigned: owned now; PendingRevocation: to give up; Target: what it
	// will own once the hand-over is done.
	Assigned          []TopicPartition
	PendingRevocation []TopicPartition
	Target            []TopicPartition
	LastHeartbeat     time.Time
}

// GroupOffset is one partition of a group: committed, or owned by a member.
type GroupOffset struct {
	TopicPartition
	Committed int64  // -1: none committed yet
	LogEnd    int64  // -1 when the partition's leader did not answer
	Lag       int64  // -1 unknown
	MemberID  string // the member owning the partition, "" none
}

// DescribeGroups describes groups (state, members and their partitions,
// committed offsets and lag), each on its coordinator. A group the
// coordinator does not know carries GROUP_ID_NOT_FOUND in its Err.
// Results come in the order asked.
func (a *Admin) DescribeGroups(ctx context.Context, groups ...string) ([]GroupDescription, error) {
	if err := checkGroupIDs(groups); err != nil {
		return nil, err
	}
	res := make(map[string]*pb.GroupDescription, len(groups))
	failed := map[string]error{}
	err := a.perCoordinator(ctx, groups, func(ctx context.Context, gs pb.GroupServiceClient, ids []string) (map[string]error, error) {
		resp, err := gs.DescribeGroups(ctx, &pb.DescribeGroupsRequest{GroupIds: ids})
		if err != nil {
			return nil, err
		}
		out := map[string]error{}
		for _, d := range resp.Groups {
			res[d.GroupId] = d
			out[d.GroupId] = itemError(d.ErrorCode, d.ErrorMessage)
		}
		return out, nil
	}, func(g string, err error) { failed[g] = err })
	if err != nil {
		return nil, err
	}
	out := make([]GroupDescription, 0, len(groups))
	for _, g := range groups {
		d := res[g]
		if failed[g] != nil || d == nil {
			out = append(out, GroupDescription{Group: g, Err: cmpOr(failed[g], error(ErrGroupIDNotFound))})
			continue
		}
		gd := GroupDescription{Group: g, State: d.State, GroupEpoch: d.GroupEpoch, AssignmentEpoch: d.AssignmentEpoch, Assignor: d.Assignor,
			CoordinatorID: d.CoordinatorId, Err: groupItemError(g, d.ErrorCode, d.ErrorMessage)}
		for _, m := range d.Members {
			md := GroupMemberDescription{MemberID: m.MemberId, InstanceID: m.InstanceId, ClientID: m.ClientId, Rack: m.RackId,
				MemberEpoch: m.MemberEpoch, State: m.State, SubscribedTopics: m.SubscribedTopicNames, SubscribedRegex: m.SubscribedTopicRegex,
				Assigned: flatParts(m.Assigned), PendingRevocation: flatParts(m.PendingRevocation), Target: flatParts(m.Target)}
			if m.LastHeartbeatMs > 0 {
				md.LastHeartbeat = time.UnixMilli(m.LastHeartbeatMs)
			}
			gd.Members = append(gd.Members, md)
		}
		sort.Slice(gd.Members, func(i, j int) bool { return gd.Members[i].MemberID < gd.Members[j].MemberID })
		for _, o := range d.Offsets {
			gd.Offsets = append(gd.Offsets, GroupOffset{TopicPartition: TopicPartition{o.Topic, o.Partition}, Committed: o.CommittedOffset,
				LogEnd: o.LogEndOffset, Lag: o.Lag, MemberID: o.MemberId})
		}
		sortTopicPartitions(gd.Offsets, func(o GroupOffset) TopicPartition { return o.TopicPartition })
		out = append(out, gd)
	}
	return out, nil
}

// GroupResult is the outcome of a per-group request for one group.
type GroupResult struct {
	Group string
	Err   error // nil: done
}

// DeleteGroups deletes groups without members and their committed offsets.
// A group with members is refused (NON_EMPTY_GROUP), an unknown one is
// GROUP_ID_NOT_FOUND. Results come in the order asked.
func (a *Admin) DeleteGroups(ctx context.Context, groups ...string) ([]GroupResult, error) {
	if err := checkGroupIDs(groups); err != nil {
		return nil, err
	}
	res := make(map[string]error, len(groups))
	err := a.perCoordinator(ctx, groups, func(ctx context.Context, gs pb.GroupServiceClient, ids []string) (map[string]error, error) {
		resp, err := gs.DeleteGroups(ctx, &pb.DeleteGroupsRequest{GroupIds: ids})
		if err != nil {
			return nil, err
		}
		out := map[string]error{}
		for _, r := range resp.Results {
			out[r.GroupId] = groupItemError(r.GroupId, r.ErrorCode, r.ErrorMessage)
			res[r.GroupId] = out[r.GroupId]
		}
		return out, nil
	}, func(g string, err error) { res[g] = err })
	if err != nil {
		return nil, err
	}
	out := make([]GroupResult, 0, len(groups))
	for _, g := range groups {
		out = append(out, GroupResult{Group: g, Err: res[g]})
	}
	return out, nil
}

// ResetTo says where ResetOffsets moves offsets; make one with
// ResetToEarliest, ResetToLatest, ResetToTime, ResetShiftBy or ResetToOffset.
type ResetTo struct {
	kind int // 1 earliest, 2 latest, 3 time, 4 shift, 5 offset
	n    int64
}

// ResetToEarliest moves to the log start offsets.
func ResetToEarliest() ResetTo { return ResetTo{kind: 1} }

// ResetToLatest moves to the log ends (high watermarks).
func ResetToLatest() ResetTo { return ResetTo{kind: 2} }

// ResetToTime moves to the first offset with a timestamp at or after t (the
// log end when there is none).
func ResetToTime(t time.Time) ResetTo { return ResetTo{kind: 3, n: max(0, t.UnixMilli())} }

// ResetShiftBy moves the committed offsets by n (negative: back), kept
// within the log.
func ResetShiftBy(n int64) ResetTo { return ResetTo{kind: 4, n: n} }

// ResetToOffset moves every named partition to offset, kept within the log.
func ResetToOffset(offset int64) ResetTo { return ResetTo{kind: 5, n: offset} }

// ResetOffsetsRequest asks to move a group's committed offsets.
type ResetOffsetsRequest struct {
	Group string
	// Topics (every partition) and Partitions to move; none: every
	// partition the group has an offset for.
	Topics     []string
	Partitions []TopicPartition
	To         ResetTo
	// Execute commits the new offsets; false only answers the plan.
	Execute bool
}

// OffsetResetResult is one partition of a reset's plan (or outcome).
type OffsetResetResult struct {
	TopicPartition
	Previous int64 // -1: the group had no offset
	New      int64
}

// ResetOffsets computes (and, with Execute, commits) new committed offsets
// for a group without members; a group with members is refused
// (NON_EMPTY_GROUP: stop its consumers first). Results are sorted by topic
// and partition.
func (a *Admin) ResetOffsets(ctx context.Context, req ResetOffsetsRequest) ([]OffsetResetResult, error) {
	if err := checkGroupIDs([]string{req.Group}); err != nil {
		return nil, err
	}
	preq := &pb.ResetOffsetsRequest{GroupId: req.Group, DryRun: !req.Execute}
	switch req.To.kind {
	case 1:
		preq.To = &pb.ResetOffsetsRequest_ToEarliest{ToEarliest: true}
	case 2:
		preq.To = &pb.ResetOffsetsRequest_ToLatest{ToLatest: true}
	case 3:
		preq.To = &pb.ResetOffsetsRequest_ToTimestampMs{ToTimestampMs: req.To.n}
	case 4:
		preq.To = &pb.ResetOffsetsRequest_ShiftBy{ShiftBy: req.To.n}
	case 5:
		if req.To.n < 0 {
			return nil, invalid("reset to offset %d: want an offset >= 0", req.To.n)
		}
		preq.To = &pb.ResetOffsetsRequest_ToOffset{ToOffset: req.To.n}
	default:
		return nil, invalid("say where to reset the offsets to: ResetToEarliest, ResetToLatest, ResetToTime, ResetShiftBy or ResetToOffset")
	}
	seen := map[string]bool{}
	for _, t := range req.Topics {
		if t == "" || seen[t] {
			return nil, invalid("reset topics %q: every topic once, none empty", req.Topics)
		}
		seen[t] = true
		preq.Topics = append(preq.Topics, &pb.TopicPartitions{Topic: t})
	}
	for _, tp := range req.Partitions {
		if tp.Topic == "" || tp.Partition < 0 || seen[tp.Topic] {
			return nil, invalid("reset partition %s: a topic named whole, or not a partition", tp.name())
		}
	}
	preq.Topics = append(preq.Topics, groupByTopic(req.Partitions)...)
	var resp *pb.ResetOffsetsResponse
	r := &groupRouter{cl: a.c, group: req.Group}
	err := r.do(ctx, func(ctx context.Context, gs pb.GroupServiceClient) (err error) {
		resp, err = gs.ResetOffsets(ctx, preq)
		return err
	})
	if err != nil {
		return nil, groupError(req.Group, err)
	}
	out := make([]OffsetResetResult, 0, len(resp.Partitions))
	for _, p := range resp.Partitions {
		out = append(out, OffsetResetResult{TopicPartition: TopicPartition{p.Topic, p.Partition}, Previous: p.PreviousOffset, New: p.NewOffset})
	}
	sortTopicPartitions(out, func(r OffsetResetResult) TopicPartition { return r.TopicPartition })
	return out, nil
}

// CommittedOffset is a group's committed offset of one partition.
type CommittedOffset struct {
	Offset      int64 // the next offset to read; -1: none committed
	LeaderEpoch int32
	Metadata    string
	CommitTime  time.Time
}

// FetchGroupOffsets returns a group's committed offsets of partitions (all
// of them when none are named). It is how a Consumer using Assign resumes
// where a group left off.
func (a *Admin) FetchGroupOffsets(ctx context.Context, group string, partitions ...TopicPartition) (map[TopicPartition]CommittedOffset, error) {
	if err := checkGroupIDs([]string{group}); err != nil {
		return nil, err
	}
	var resp *pb.OffsetFetchResponse
	r := &groupRouter{cl: a.c, group: group}
	err := r.do(ctx, func(ctx context.Context, gs pb.GroupServiceClient) (err error) {
		resp, err = gs.OffsetFetch(ctx, &pb.OffsetFetchRequest{GroupId: group, Topics: groupByTopic(partitions)})
		return err
	})
	if err != nil {
		return nil, groupError(group, err)
	}
	out := map[TopicPartition]CommittedOffset{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			co := CommittedOffset{Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata}
			if p.CommitTimestampMs > 0 {
				co.CommitTime = time.UnixMilli(p.CommitTimestampMs)
			}
			out[TopicPartition{t.Topic, p.Partition}] = co
		}
	}
	return out, nil
}

// CommitGroupOffsets commits offsets (the next offset to read) for a group
// from outside it: for consumers that Assign partitions and keep their
// offsets in a group. The coordinator accepts it only while the group has
// no members (NON_EMPTY_GROUP otherwise); a partition that does not exist
// is refused (UNKNOWN_TOPIC_OR_PARTITION) before anything is sent.
func (a *Admin) CommitGroupOffsets(ctx context.Context, group string, offsets map[TopicPartition]int64) error {
	if err := checkGroupIDs([]string{group}); err != nil {
		return err
	}
	if len(offsets) == 0 {
		return invalid("no offsets to commit")
	}
	tps := make([]TopicPartition, 0, len(offsets))
	for tp, off := range offsets {
		if off < 0 || tp.Topic == "" || tp.Partition < 0 {
			return invalid("commit offset %d of %s: want a partition and an offset >= 0", off, tp.name())
		}
		tps = append(tps, tp)
	}
	sortTopicPartitions(tps, func(tp TopicPartition) TopicPartition { return tp })
	// The coordinator keeps whatever it is given: refuse partitions that do
	// not exist here.
	m, err := a.c.RefreshMetadata(ctx)
	if err != nil {
		return err
	}
	var topics []*pb.OffsetCommitTopic
	for _, tp := range tps {
		if n := len(m.Topics[tp.Topic]); int(tp.Partition) >= n {
			return itemError(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, fmt.Sprintf("commit offset of %s: the topic has %d partitions", tp.name(), n))
		}
		if len(topics) == 0 || topics[len(topics)-1].Topic != tp.Topic {
			topics = append(topics, &pb.OffsetCommitTopic{Topic: tp.Topic})
		}
		t := topics[len(topics)-1]
		t.Partitions = append(t.Partitions, &pb.OffsetCommitPartition{Partition: tp.Partition, Offset: offsets[tp], LeaderEpoch: -1})
	}
	r := &groupRouter{cl: a.c, group: group}
	err = r.do(ctx, func(ctx context.Context, gs pb.GroupServiceClient) error {
		_, err := gs.OffsetCommit(ctx, &pb.OffsetCommitRequest{GroupId: group, MemberEpoch: -1, Topics: topics})
		return err
	})
	return groupError(group, err)
}

// perCoordinator sends a multi-group request to each group's coordinator
// (one request per coordinator with its groups) and sends again the groups
// whose answer or lookup says the coordinator moved, until the client's
// RequestTimeout. Groups that keep failing get failed(group, err).
func (a *Admin) perCoordinator(ctx context.Context, groups []string,
	send func(ctx context.Context, gs pb.GroupServiceClient, ids []string) (map[string]error, error),
	failed func(group string, err error)) error {
	pending := append([]string(nil), groups...)
	last := map[string]error{}
	deadline := time.Now().Add(a.c.cfg.RequestTimeout)
	backoff := 50 * time.Millisecond
	for len(pending) > 0 {
		found, lookupErrs, err := a.c.findCoordinators(ctx, pending)
		if err != nil {
			return err
		}
		var retry []string
		byAddr := map[string][]string{}
		for _, g := range pending {
			if e := lookupErrs[g]; e != nil {
				last[g] = e
				if coordinatorError(e) {
					retry = append(retry, g)
				} else {
					failed(g, groupError(g, e))
				}
				continue
			}
			byAddr[found[g]] = append(byAddr[found[g]], g)
		}
		for addr, ids := range byAddr {
			gs, err := a.c.groupService(addr)
			var errs map[string]error
			if err == nil {
				rctx, cancel := context.WithTimeout(ctx, a.c.cfg.RequestTimeout)
				errs, err = send(rctx, gs, ids)
				cancel()
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				err = FromError(err)
				if !coordinatorError(err) {
					return err
				}
				for _, g := range ids {
					last[g] = err
				}
				retry = append(retry, ids...)
				continue
			}
			for _, g := range ids {
				e, answered := errs[g]
				switch {
				case !answered:
					last[g] = &Error{Code: pb.ErrorCode_UNKNOWN_SERVER_ERROR, Message: "the coordinator did not answer for the group"}
					failed(g, last[g])
				case coordinatorError(e):
					last[g] = e
					retry = append(retry, g)
				}
			}
		}
		pending = retry
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, g := range pending {
				failed(g, groupError(g, last[g]))
			}
			break
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, time.Second)
	}
	return nil
}

// checkGroupIDs refuses an empty list or an empty group id before sending.
func checkGroupIDs(groups []string) error {
	if len(groups) == 0 {
		return invalid("name at least one group")
	}
	for _, g := range groups {
		if g == "" {
			return &Error{Code: pb.ErrorCode_INVALID_GROUP_ID, Message: "a group id is empty"}
		}
	}
	return nil
}

// groupHints say what to do about a group error.
// (The coordinator's NON_EMPTY_GROUP message already says to stop the
// members.)
var groupHints = map[pb.ErrorCode]string{
	pb.ErrorCode_GROUP_ID_NOT_FOUND: "check the name (strata groups list)",
}

// groupItemError is a per-group result's error, naming the group.
func groupItemError(group string, code pb.ErrorCode, msg string) error {
	if code == pb.ErrorCode_NONE {
		return nil
	}
	if msg == "" {
		msg = fmt.Sprintf("group %q", group)
	}
	if h := groupHints[code]; h != "" {
		msg += "; " + h
	}
	return codeError(code, msg)
}

// groupError adds the hint to a request-level group error.
func groupError(group string, err error) error {
	var e *Error
	if !errors.As(err, &e) || groupHints[e.Code] == "" {
		return err
	}
	return groupItemError(group, e.Code, e.Message)
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// flatParts turns the protocol's per-topic lists into sorted partitions.
func flatParts(tps []*pb.TopicPartitions) []TopicPartition {
	return sortedParts(partsOf(tps))
}
