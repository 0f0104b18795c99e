package group

import (
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// TP is a topic partition.
type TP struct {
	Topic     string
	Partition int32
}

// tpSet is a set of partitions.
type tpSet map[TP]struct{}

func setOf(tps []*pb.TopicPartitions) tpSet {
	s := tpSet{}
	for _, t := range tps {
		for _, p := range t.GetPartitions() {
			s[TP{t.GetTopic(), p}] = struct{}{}
		}
	}
	return s
}

func setOfAssignment(a map[string][]int32) tpSet {
	s := tpSet{}
	for t, ps := range a {
		for _, p := range ps {
			s[TP{t, p}] = struct{}{}
		}
	}
	return s
}

// list is the set as sorted TopicPartitions.
func (s tpSet) list() []*pb.TopicPartitions {
	by := map[string][]int32{}
	for tp := range s {
		by[tp.Topic] = append(by[tp.Topic], tp.Partition)
	}
	topics := make([]string, 0, len(by))
	for t := range by {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	out := make([]*pb.TopicPartitions, 0, len(topics))
	for _, t := range topics {
		ps := by[t]
		slices.Sort(ps)
		out = append(out, &pb.TopicPartitions{Topic: t, Partitions: ps})
	}
	return out
}

func (s tpSet) has(tp TP) bool { _, ok := s[tp]; return ok }

func (s tpSet) equal(o tpSet) bool {
	if len(s) != len(o) {
		return false
	}
	for tp := range s {
		if !o.has(tp) {
			return false
		}
	}
	return true
}

// minus is s without the partitions of o.
func (s tpSet) minus(o tpSet) tpSet {
	out := tpSet{}
	for tp := range s {
		if !o.has(tp) {
			out[tp] = struct{}{}
		}
	}
	return out
}

// intersect is the partitions in both.
func (s tpSet) intersect(o tpSet) tpSet {
	out := tpSet{}
	for tp := range s {
		if o.has(tp) {
			out[tp] = struct{}{}
		}
	}
	return out
}

// Group states (GroupDescription.state).
const (
	StateEmpty       = "empty"
	StateAssigning   = "assigning"
	StateReconciling = "reconciling"
	StateStable      = "stable"
	StateDead        = "dead"
)

// Member states (GroupMember.state).
const (
	MemberStable               = "stable"
	MemberUnrevokedPartitions  = "unrevoked_partitions"
	MemberUnreleasedPartitions = "unreleased_partitions"
)

// group is one consumer group in a shard's memory: what its records say,
// plus session clocks that are not persisted.
type group struct {
	id      string
	meta    *pb.GroupMetadataValue
	members map[string]*member
	offsets map[TP]*pb.OffsetCommitValue
	// owners maps each partition some member owns (assigned or pending
	// revocation) to that member: the guard against double ownership.
	owners map[TP]string
	// metaVersion is the metadata version the target assignment was last
	// checked against.
	metaVersion int64
}

func newGroup(id string) *group {
	return &group{
		id: id, meta: &pb.GroupMetadataValue{},
		members: map[string]*member{}, offsets: map[TP]*pb.OffsetCommitValue{}, owners: map[TP]string{},
		metaVersion: -1,
	}
}

// member is one member: its persisted value and its (volatile) clocks.
type member struct {
	id string
	v  *pb.GroupMemberValue
	// lastSeen is the last heartbeat (or the load / static leave time).
	lastSeen time.Time
	// revokeBy is when partitions pending revocation must be released.
	revokeBy time.Time
}

func (m *member) assigned() tpSet { return setOf(m.v.GetAssigned()) }
func (m *member) pending() tpSet  { return setOf(m.v.GetPendingRevocation()) }
func (m *member) target() tpSet   { return setOf(m.v.GetTarget()) }

// owned is what the coordinator counts as the member's: assigned and
// pending revocation.
func (m *member) owned() tpSet {
	s := m.assigned()
	for tp := range m.pending() {
		s[tp] = struct{}{}
	}
	return s
}

func (m *member) state(assignmentEpoch int32) string {
	switch {
	case len(m.v.GetPendingRevocation()) > 0:
		return MemberUnrevokedPartitions
	case m.v.GetMemberEpoch() != assignmentEpoch || !m.assigned().equal(m.target()):
		return MemberUnreleasedPartitions
	}
	return MemberStable
}

// state is the group's state.
func (g *group) state() string {
	switch {
	case len(g.members) == 0:
		return StateEmpty
	case g.meta.GetGroupEpoch() > g.meta.GetAssignmentEpoch():
		return StateAssigning
	}
	for _, m := range g.members {
		if m.state(g.meta.GetAssignmentEpoch()) != MemberStable {
			return StateReconciling
		}
	}
	return StateStable
}

// apply applies one decoded record to the shard's groups: the one path by
// which state changes, both when serving and when loading the log.
func (s *Shard) apply(k *pb.GroupRecordKey, value []byte, now time.Time) error {
	g := s.groups[k.GetGroupId()]
	switch k.GetType() {
	case keyGroup:
		if value == nil {
			delete(s.groups, k.GetGroupId())
			return nil
		}
		v := &pb.GroupMetadataValue{}
		if err := proto.Unmarshal(value, v); err != nil {
			return err
		}
		if g == nil {
			g = newGroup(k.GetGroupId())
			s.groups[g.id] = g
		}
		g.meta = v
	case keyOffset:
		tp := TP{k.GetTopic(), k.GetPartition()}
		if value == nil {
			if g != nil {
				delete(g.offsets, tp)
			}
			return nil
		}
		v := &pb.OffsetCommitValue{}
		if err := proto.Unmarshal(value, v); err != nil {
			return err
		}
		if g == nil {
			g = newGroup(k.GetGroupId())
			s.groups[g.id] = g
		}
		g.offsets[tp] = v
	case keyMember:
		if g == nil {
			if value == nil {
				return nil
			}
			g = newGroup(k.GetGroupId())
			s.groups[g.id] = g
		}
		id := k.GetMemberId()
		if old := g.members[id]; old != nil {
			for tp := range old.owned() {
				if g.owners[tp] == id {
					delete(g.owners, tp)
				}
			}
		}
		if value == nil {
			delete(g.members, id)
			return nil
		}
		v := &pb.GroupMemberValue{}
		if err := proto.Unmarshal(value, v); err != nil {
			return err
		}
		m := g.members[id]
		if m == nil {
			m = &member{id: id, lastSeen: now}
			g.members[id] = m
		}
		m.v = v
		for tp := range m.owned() {
			g.owners[tp] = id
		}
		switch {
		case len(v.GetPendingRevocation()) == 0:
			m.revokeBy = time.Time{}
		case m.revokeBy.IsZero():
			timeout := s.cfg.RebalanceTimeout
			if ms := v.GetRebalanceTimeoutMs(); ms > 0 {
				timeout = time.Duration(ms) * time.Millisecond
			}
			m.revokeBy = now.Add(timeout)
		}
	}
	return nil
}
