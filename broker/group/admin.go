package group

import (
	"fmt"
	"slices"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Describe describes a group: state, epochs, members and committed offsets
// (the caller fills in log end offsets and lag).
func (s *Shard) Describe(groupID string) (*pb.GroupDescription, error) {
	if err := s.lockServing(groupID); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	g := s.groups[groupID]
	if g == nil {
		return nil, fmt.Errorf("%w: %q", ErrGroupNotFound, groupID)
	}
	d := &pb.GroupDescription{
		GroupId: groupID, State: g.state(),
		GroupEpoch: g.meta.GetGroupEpoch(), AssignmentEpoch: g.meta.GetAssignmentEpoch(), Assignor: g.meta.GetAssignor(),
	}
	if d.Assignor == "" {
		d.Assignor = Assignors()[0].Name()
	}
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		m := g.members[id]
		d.Members = append(d.Members, &pb.GroupMember{
			MemberId: id, InstanceId: m.v.GetInstanceId(), ClientId: m.v.GetClientId(), RackId: m.v.GetRackId(),
			MemberEpoch: m.v.GetMemberEpoch(), State: m.state(g.meta.GetAssignmentEpoch()),
			SubscribedTopicNames: m.v.GetSubscribedTopicNames(), SubscribedTopicRegex: m.v.GetSubscribedTopicRegex(),
			Assigned: m.v.GetAssigned(), PendingRevocation: m.v.GetPendingRevocation(), Target: m.v.GetTarget(),
			LastHeartbeatMs: m.lastSeen.UnixMilli(),
		})
	}
	parts := map[TP]bool{}
	for tp := range g.offsets {
		parts[tp] = true
	}
	for tp := range g.owners {
		parts[tp] = true
	}
	for _, tp := range sortedTPs(parts) {
		o := &pb.GroupOffset{Topic: tp.Topic, Partition: tp.Partition, CommittedOffset: -1, LogEndOffset: -1, Lag: -1, MemberId: g.owners[tp]}
		if v := g.offsets[tp]; v != nil {
			o.CommittedOffset = v.GetOffset()
		}
		d.Offsets = append(d.Offsets, o)
	}
	return d, nil
}

// List lists the shard's groups, those in the given states only when states
// is not empty. A shard still loading lists nothing.
func (s *Shard) List(states []string) []*pb.GroupListing {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		return nil
	}
	var out []*pb.GroupListing
	for id, g := range s.groups {
		st := g.state()
		if len(states) > 0 && !slices.Contains(states, st) {
			continue
		}
		out = append(out, &pb.GroupListing{GroupId: id, State: st, Members: int32(len(g.members))})
	}
	slices.SortFunc(out, func(a, b *pb.GroupListing) int {
		if a.GroupId < b.GroupId {
			return -1
		} else if a.GroupId > b.GroupId {
			return 1
		}
		return 0
	})
	return out
}

// Delete deletes a group without members: tombstones for its offsets and
// its metadata.
func (s *Shard) Delete(groupID string) (int64, error) {
	if err := s.lockServing(groupID); err != nil {
		return -1, err
	}
	defer s.mu.Unlock()
	g := s.groups[groupID]
	if g == nil {
		return -1, fmt.Errorf("%w: %q", ErrGroupNotFound, groupID)
	}
	if len(g.members) > 0 {
		return -1, fmt.Errorf("%w: group %q has %s; stop them first", ErrNonEmptyGroup, groupID, Members(len(g.members)))
	}
	return s.write(deleteRecords(g))
}

// deleteRecords tombstones everything of an empty group: offsets first, the
// metadata last (so a load that stops half-way still knows the group).
func deleteRecords(g *group) []Record {
	var recs []Record
	for _, tp := range sortedTPs(g.offsets) {
		recs = append(recs, offsetRecord(g.id, tp, nil))
	}
	return append(recs, groupRecord(g.id, nil))
}
