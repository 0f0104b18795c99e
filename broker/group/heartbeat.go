package group

import (
	"fmt"
	"slices"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Member epochs with a meaning of their own in GroupHeartbeat.
const (
	JoinEpoch        = 0
	LeaveEpoch       = -1
	StaticLeaveEpoch = -2
)

// Heartbeat serves GroupHeartbeat: join, stay or leave.
func (s *Shard) Heartbeat(req *pb.GroupHeartbeatRequest) (*pb.GroupHeartbeatResponse, int64, error) {
	if err := validateHeartbeat(req); err != nil {
		return nil, -1, err
	}
	if err := s.lockServing(req.GetGroupId()); err != nil {
		return nil, -1, err
	}
	defer s.mu.Unlock()
	t := s.begin(req.GetGroupId())
	id := req.GetMemberId()
	switch epoch := req.GetMemberEpoch(); {
	case epoch == LeaveEpoch || epoch == StaticLeaveEpoch:
		return s.leave(t, req)
	case epoch == JoinEpoch:
		var err error
		if id, err = s.join(t, req); err != nil {
			return nil, -1, err
		}
	default:
		v := t.member(id)
		if v == nil {
			return nil, -1, fmt.Errorf("%w: %q is not a member of group %q; join again with member epoch 0", ErrUnknownMember, id, req.GetGroupId())
		}
		if epoch != v.GetMemberEpoch() && epoch != v.GetPreviousMemberEpoch() {
			return nil, -1, fmt.Errorf("%w: member %q sent epoch %d, its epoch is %d; drop its partitions and join again with member epoch 0",
				ErrFencedMemberEpoch, id, epoch, v.GetMemberEpoch())
		}
		if v.GetLeftStatic() {
			v = clone(v)
			v.LeftStatic = false
			t.setMember(id, v)
		}
		s.updateSubscription(t, id, req)
	}
	if t.g == nil || t.g.metaVersion != s.md.Version() || t.rebal {
		if t.rebal || t.targetStale() {
			t.rebalance()
		}
	}
	t.reconcile(id, ownedOf(req))
	next, err := s.write(t.records())
	if err != nil {
		return nil, -1, err
	}
	g := s.groups[req.GetGroupId()]
	g.metaVersion = s.md.Version()
	m := g.members[id]
	m.lastSeen = s.cfg.Now()
	interval := s.cfg.HeartbeatInterval
	if m.state(g.meta.GetAssignmentEpoch()) != MemberStable {
		interval = s.cfg.ReconcileHeartbeatInterval
	}
	return &pb.GroupHeartbeatResponse{
		MemberId: id, MemberEpoch: m.v.GetMemberEpoch(),
		HeartbeatIntervalMs: int32(interval.Milliseconds()),
		Assignment:          m.assigned().list(),
	}, next, nil
}

// ownedOf is the request's owned partitions (never nil: a heartbeat always
// reports them).
func ownedOf(req *pb.GroupHeartbeatRequest) tpSet { return setOf(req.GetOwnedPartitions()) }

func validateHeartbeat(req *pb.GroupHeartbeatRequest) error {
	epoch := req.GetMemberEpoch()
	switch {
	case epoch < StaticLeaveEpoch:
		return fmt.Errorf("%w: member epoch %d (0 joins, -1 leaves, -2 leaves a static member's place)", ErrInvalidRequest, epoch)
	case epoch != JoinEpoch && req.GetMemberId() == "":
		return fmt.Errorf("%w: member epoch %d needs the member id", ErrInvalidRequest, epoch)
	case epoch == StaticLeaveEpoch && req.GetInstanceId() == "":
		return fmt.Errorf("%w: member epoch -2 is for static members (instance id set)", ErrInvalidRequest)
	case req.GetRebalanceTimeoutMs() < 0:
		return fmt.Errorf("%w: negative rebalance timeout", ErrInvalidRequest)
	case len(req.GetSubscribedTopicNames()) > 0 && req.GetSubscribedTopicRegex() != "":
		return fmt.Errorf("%w: subscribe by topic names or by a regex, not both", ErrInvalidRequest)
	case epoch == JoinEpoch && len(req.GetSubscribedTopicNames()) == 0 && req.GetSubscribedTopicRegex() == "":
		return fmt.Errorf("%w: joining needs a subscription (topic names or a regex)", ErrInvalidRequest)
	}
	for _, kind := range []struct{ name, id string }{{"member", req.GetMemberId()}, {"instance", req.GetInstanceId()}} {
		if kind.id != "" {
			if err := ValidID(kind.name, kind.id); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalidRequest, err)
			}
		}
	}
	for _, topic := range req.GetSubscribedTopicNames() {
		if topic == "" {
			return fmt.Errorf("%w: empty topic name in the subscription", ErrInvalidRequest)
		}
	}
	if re := req.GetSubscribedTopicRegex(); re != "" {
		if _, err := compileSubscription(re); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidRegex, err)
		}
	}
	if a := req.GetServerAssignor(); a != "" {
		if _, ok := AssignorByName(a); !ok {
			return fmt.Errorf("%w: %q (have %v)", ErrUnsupportedAssignor, a, assignorNames())
		}
	}
	return nil
}

func assignorNames() []string {
	var out []string
	for _, a := range Assignors() {
		out = append(out, a.Name())
	}
	return out
}

// join adds a member (or takes over a static member's place, or resets a
// member that rejoins after being fenced) and answers its id.
func (s *Shard) join(t *tx, req *pb.GroupHeartbeatRequest) (string, error) {
	id := req.GetMemberId()
	if inst := req.GetInstanceId(); inst != "" {
		for _, old := range t.memberIDs() {
			v := t.member(old)
			if v.GetInstanceId() != inst {
				continue
			}
			// Static membership: the new incarnation takes the old one's
			// epoch and partitions; the old member id is fenced.
			if id == "" {
				id = newMemberID()
			}
			nv := clone(v)
			nv.LeftStatic = false
			nv.ClientId, nv.RackId = req.GetClientId(), req.GetRackId()
			if ms := req.GetRebalanceTimeoutMs(); ms > 0 {
				nv.RebalanceTimeoutMs = ms
			}
			if old != id {
				t.deleteMember(old)
			}
			t.setMember(id, nv)
			s.updateSubscription(t, id, req)
			return id, nil
		}
	}
	if id != "" {
		if v := t.member(id); v != nil {
			// A member that lost its partitions (fenced) joins again: it
			// owns nothing now, and takes its target anew.
			nv := clone(v)
			nv.Assigned, nv.PendingRevocation = nil, nil
			nv.MemberEpoch, nv.PreviousMemberEpoch = 0, 0
			t.setMember(id, nv)
			s.updateSubscription(t, id, req)
			return id, nil
		}
	}
	if n := len(t.memberIDs()); n >= s.cfg.MaxGroupSize {
		return "", fmt.Errorf("%w: group %q has %d members", ErrGroupMaxSize, t.id, n)
	}
	if id == "" {
		id = newMemberID()
	}
	v := &pb.GroupMemberValue{
		InstanceId: req.GetInstanceId(), ClientId: req.GetClientId(), RackId: req.GetRackId(),
		RebalanceTimeoutMs: req.GetRebalanceTimeoutMs(),
	}
	t.setMember(id, v)
	if t.g == nil || len(t.g.members) == 0 {
		t.mutMeta().EmptySinceMs = 0
	}
	s.updateSubscription(t, id, req)
	t.rebal = true
	return id, nil
}

// updateSubscription applies the request's subscription and assignor when
// they are given and differ.
func (s *Shard) updateSubscription(t *tx, id string, req *pb.GroupHeartbeatRequest) {
	v := t.member(id)
	names, re := req.GetSubscribedTopicNames(), req.GetSubscribedTopicRegex()
	if len(names) > 0 || re != "" {
		sorted := slices.Clone(names)
		slices.Sort(sorted)
		sorted = slices.Compact(sorted)
		if !slices.Equal(sorted, v.GetSubscribedTopicNames()) || re != v.GetSubscribedTopicRegex() {
			v = clone(v)
			v.SubscribedTopicNames, v.SubscribedTopicRegex = sorted, re
			t.setMember(id, v)
			t.rebal = true
		}
	}
	if a := req.GetServerAssignor(); a != "" && a != t.groupMeta().GetAssignor() {
		t.mutMeta().Assignor = a
		t.rebal = true
	}
	if t.meta == nil && t.g == nil {
		t.mutMeta() // a new group's metadata record comes first
	}
}

// leave removes a member (-1), or keeps a static member's place for its
// instance id until the session timeout (-2). Leaving twice is not an error.
func (s *Shard) leave(t *tx, req *pb.GroupHeartbeatRequest) (*pb.GroupHeartbeatResponse, int64, error) {
	id := req.GetMemberId()
	resp := &pb.GroupHeartbeatResponse{MemberId: id, MemberEpoch: req.GetMemberEpoch()}
	v := t.member(id)
	if v == nil {
		return resp, -1, nil
	}
	if req.GetMemberEpoch() == StaticLeaveEpoch && v.GetInstanceId() == req.GetInstanceId() {
		nv := clone(v)
		nv.LeftStatic = true
		t.setMember(id, nv)
		next, err := s.write(t.records())
		if err == nil {
			s.groups[t.id].members[id].lastSeen = s.cfg.Now()
		}
		return resp, next, err
	}
	s.removeMember(t, id)
	next, err := s.write(t.records())
	return resp, next, err
}

// removeMember drops a member; its partitions are free at once, and the
// others' targets are recomputed.
func (s *Shard) removeMember(t *tx, id string) {
	t.deleteMember(id)
	if len(t.memberIDs()) == 0 {
		meta := t.mutMeta()
		meta.GroupEpoch++
		meta.AssignmentEpoch = meta.GroupEpoch
		meta.EmptySinceMs = s.cfg.Now().UnixMilli()
		return
	}
	t.rebalance()
}
