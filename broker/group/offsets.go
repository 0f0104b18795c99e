package group

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// CommitOffsets serves OffsetCommit. A member commits partitions it owns
// (assigned or pending revocation) with its current or previous epoch;
// anyone else (member id empty, epoch -1) only while the group has no
// members. The whole request is checked before anything is written.
func (s *Shard) CommitOffsets(req *pb.OffsetCommitRequest) (int64, error) {
	if len(req.GetTopics()) == 0 {
		return -1, fmt.Errorf("%w: no offsets to commit", ErrInvalidRequest)
	}
	if err := s.lockServing(req.GetGroupId()); err != nil {
		return -1, err
	}
	defer s.mu.Unlock()
	t := s.begin(req.GetGroupId())
	var owned tpSet
	if id := req.GetMemberId(); id == "" && req.GetMemberEpoch() < 0 {
		if n := len(t.memberIDs()); n > 0 {
			return -1, fmt.Errorf("%w: group %q has %s; commit as one of them (member id and epoch)", ErrNonEmptyGroup, t.id, Members(n))
		}
	} else {
		v := t.member(id)
		switch {
		case v == nil:
			return -1, fmt.Errorf("%w: %q is not a member of group %q", ErrUnknownMember, id, t.id)
		case req.GetMemberEpoch() > v.GetMemberEpoch():
			return -1, fmt.Errorf("%w: member %q committed with epoch %d, its epoch is %d", ErrFencedMemberEpoch, id, req.GetMemberEpoch(), v.GetMemberEpoch())
		case req.GetMemberEpoch() != v.GetMemberEpoch() && req.GetMemberEpoch() != v.GetPreviousMemberEpoch():
			return -1, fmt.Errorf("%w: member %q committed with epoch %d, its epoch is %d; heartbeat, then commit again",
				ErrStaleMemberEpoch, id, req.GetMemberEpoch(), v.GetMemberEpoch())
		}
		owned = setOf(v.GetAssigned())
		for tp := range setOf(v.GetPendingRevocation()) {
			owned[tp] = struct{}{}
		}
	}
	now := s.cfg.Now().UnixMilli()
	for _, ct := range req.GetTopics() {
		if ct.GetTopic() == "" {
			return -1, fmt.Errorf("%w: empty topic name", ErrInvalidRequest)
		}
		for _, cp := range ct.GetPartitions() {
			tp := TP{ct.GetTopic(), cp.GetPartition()}
			switch {
			case cp.GetPartition() < 0 || cp.GetOffset() < 0:
				return -1, fmt.Errorf("%w: offset %d for %s-%d", ErrInvalidRequest, cp.GetOffset(), tp.Topic, tp.Partition)
			case len(cp.GetMetadata()) > s.cfg.MaxMetadataBytes:
				return -1, fmt.Errorf("%w: %d bytes for %s-%d; the limit is %d", ErrOffsetMetadataTooLarge, len(cp.GetMetadata()), tp.Topic, tp.Partition, s.cfg.MaxMetadataBytes)
			case cp.GetPartition() >= s.md.Partitions(tp.Topic):
				return -1, fmt.Errorf("%w: %s-%d does not exist", ErrUnknownPartition, tp.Topic, tp.Partition)
			case owned != nil && !owned.has(tp):
				return -1, fmt.Errorf("%w: member %q does not own %s-%d", ErrPartitionNotOwned, req.GetMemberId(), tp.Topic, tp.Partition)
			}
			t.offsets = append(t.offsets, offsetRecord(t.id, tp, &pb.OffsetCommitValue{
				Offset: cp.GetOffset(), LeaderEpoch: cp.GetLeaderEpoch(), Metadata: cp.GetMetadata(), CommitTimestampMs: now,
			}))
		}
	}
	if t.g == nil {
		t.mutMeta().EmptySinceMs = now
	}
	return s.write(t.records())
}

// Members says "1 member", "2 members".
func Members(n int) string {
	if n == 1 {
		return "1 member"
	}
	return fmt.Sprintf("%d members", n)
}

// SetOffsets commits offsets for an empty group on an operator's behalf
// (ResetOffsets); it refuses while the group has members.
func (s *Shard) SetOffsets(groupID string, offsets map[TP]int64) (int64, error) {
	req := &pb.OffsetCommitRequest{GroupId: groupID, MemberEpoch: -1}
	by := map[string]*pb.OffsetCommitTopic{}
	for _, tp := range sortedTPs(offsets) {
		ct := by[tp.Topic]
		if ct == nil {
			ct = &pb.OffsetCommitTopic{Topic: tp.Topic}
			by[tp.Topic] = ct
			req.Topics = append(req.Topics, ct)
		}
		ct.Partitions = append(ct.Partitions, &pb.OffsetCommitPartition{Partition: tp.Partition, Offset: offsets[tp], LeaderEpoch: -1})
	}
	return s.CommitOffsets(req)
}

func sortedTPs[V any](m map[TP]V) []TP {
	out := make([]TP, 0, len(m))
	for tp := range m {
		out = append(out, tp)
	}
	slices.SortFunc(out, CompareTP)
	return out
}

// CompareTP orders partitions by topic, then partition.
func CompareTP(a, b TP) int {
	return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
}

// FetchOffsets serves OffsetFetch: the committed offsets of the named
// partitions (-1 where none), or all of the group's when topics is empty.
func (s *Shard) FetchOffsets(groupID string, topics []*pb.TopicPartitions) ([]*pb.OffsetFetchTopic, error) {
	if err := s.lockServing(groupID); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	g := s.groups[groupID]
	var want []TP
	if len(topics) == 0 {
		if g != nil {
			want = sortedTPs(g.offsets)
		}
	} else {
		for _, t := range topics {
			for _, p := range t.GetPartitions() {
				want = append(want, TP{t.GetTopic(), p})
			}
		}
	}
	var out []*pb.OffsetFetchTopic
	for _, tp := range want {
		if len(out) == 0 || out[len(out)-1].Topic != tp.Topic {
			out = append(out, &pb.OffsetFetchTopic{Topic: tp.Topic})
		}
		co := &pb.CommittedOffset{Partition: tp.Partition, Offset: -1, LeaderEpoch: -1}
		if g != nil {
			if v := g.offsets[tp]; v != nil {
				co.Offset, co.LeaderEpoch, co.Metadata, co.CommitTimestampMs = v.GetOffset(), v.GetLeaderEpoch(), v.GetMetadata(), v.GetCommitTimestampMs()
			}
		}
		out[len(out)-1].Partitions = append(out[len(out)-1].Partitions, co)
	}
	return out, nil
}

// Committed is a group's committed offsets and its number of members (for
// ResetOffsets and metrics).
func (s *Shard) Committed(groupID string) (offsets map[TP]int64, members int, err error) {
	if err := s.lockServing(groupID); err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()
	out := map[TP]int64{}
	if g := s.groups[groupID]; g != nil {
		members = len(g.members)
		for tp, v := range g.offsets {
			out[tp] = v.GetOffset()
		}
	}
	return out, members, nil
}
