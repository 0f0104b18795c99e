package client

import (
	"context"
	"errors"
	"slices"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// ElectionType chooses how ElectLeaders picks leaders.
type ElectionType int8

const (
	// ElectPreferred moves leadership to each partition's first replica,
	// where that replica is alive and in the ISR.
	ElectPreferred ElectionType = iota
	// ElectUnclean elects a leader for leaderless partitions, from outside
	// the ISR if need be: acknowledged records may be lost.
	ElectUnclean
)

// ElectionResult is the outcome of an election for one partition.
type ElectionResult struct {
	TopicPartition
	Leader int32 // the leader after the election, -1 none
	// Err is nil when leadership moved; ELECTION_NOT_NEEDED when the right
	// leader already led (see ElectionNotNeeded); else why not.
	Err error
}

// ElectionNotNeeded reports whether err says the partition already had the
// leader the election would pick: for most callers a success.
func ElectionNotNeeded(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == pb.ErrorCode_ELECTION_NOT_NEEDED
}

// ElectLeaders runs elections for partitions; none: every partition that
// needs one (preferred: not led by its preferred replica; unclean:
// leaderless). Results are sorted by topic and partition.
func (a *Admin) ElectLeaders(ctx context.Context, typ ElectionType, partitions []TopicPartition) ([]ElectionResult, error) {
	req := &pb.ElectLeadersRequest{TopicPartitions: groupByTopic(partitions)}
	switch typ {
	case ElectPreferred:
		req.ElectionType = pb.ElectionType_ELECTION_TYPE_PREFERRED
	case ElectUnclean:
		req.ElectionType = pb.ElectionType_ELECTION_TYPE_UNCLEAN
	default:
		return nil, invalid("election type %d: want ElectPreferred or ElectUnclean", typ)
	}
	resp, err := callController(ctx, a, pb.ControllerServiceClient.ElectLeaders, req)
	if err != nil {
		return nil, err
	}
	var out []ElectionResult
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out = append(out, ElectionResult{TopicPartition: TopicPartition{t.Topic, p.Partition}, Leader: p.Leader,
				Err: itemError(p.ErrorCode, p.ErrorMessage)})
		}
	}
	sortTopicPartitions(out, func(r ElectionResult) TopicPartition { return r.TopicPartition })
	return out, nil
}

// Reassignment is a partition's target replica list, in preference order.
type Reassignment struct {
	TopicPartition
	Replicas []int32
}

// ReassignmentResult is the outcome of starting or cancelling one
// partition's reassignment.
type ReassignmentResult struct {
	TopicPartition
	Err error
}

// AlterPartitionReassignments starts reassignments (or replaces those in
// progress): each partition moves to its target replicas in steps (new
// replicas join and catch up, then the old ones leave). It returns once the
// controller has accepted them; follow progress with
// ListPartitionReassignments.
func (a *Admin) AlterPartitionReassignments(ctx context.Context, rs []Reassignment) ([]ReassignmentResult, error) {
	if len(rs) == 0 {
		return nil, invalid("empty reassignment: name at least one partition and its target replicas")
	}
	for _, r := range rs {
		if len(r.Replicas) == 0 {
			return nil, invalid("%s: empty replica list (to cancel a reassignment use CancelPartitionReassignments)", r.TopicPartition.name())
		}
	}
	return a.alterReassignments(ctx, rs)
}

// CancelPartitionReassignments cancels reassignments in progress: each
// partition goes back to its original replicas. A partition with none in
// progress answers NO_REASSIGNMENT_IN_PROGRESS.
func (a *Admin) CancelPartitionReassignments(ctx context.Context, partitions []TopicPartition) ([]ReassignmentResult, error) {
	if len(partitions) == 0 {
		return nil, invalid("no partitions to cancel the reassignment of")
	}
	rs := make([]Reassignment, len(partitions))
	for i, tp := range partitions {
		rs[i] = Reassignment{TopicPartition: tp}
	}
	return a.alterReassignments(ctx, rs)
}

func (a *Admin) alterReassignments(ctx context.Context, rs []Reassignment) ([]ReassignmentResult, error) {
	req := &pb.AlterPartitionReassignmentsRequest{}
	idx := map[string]int{}
	for _, r := range rs {
		i, ok := idx[r.Topic]
		if !ok {
			i = len(req.Topics)
			idx[r.Topic] = i
			req.Topics = append(req.Topics, &pb.ReassignableTopic{Name: r.Topic})
		}
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, &pb.ReassignablePartition{Partition: r.Partition, Replicas: slices.Clone(r.Replicas)})
	}
	resp, err := callController(ctx, a, pb.ControllerServiceClient.AlterPartitionReassignments, req)
	if err != nil {
		return nil, err
	}
	var out []ReassignmentResult
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out = append(out, ReassignmentResult{TopicPartition: TopicPartition{t.Name, p.Partition}, Err: itemError(p.ErrorCode, p.ErrorMessage)})
		}
	}
	return out, nil
}

// OngoingReassignment is a partition being reassigned.
type OngoingReassignment struct {
	TopicPartition
	// Replicas is the current full replica set: the target's plus the
	// replicas still to remove.
	Replicas []int32
	Adding   []int32
	Removing []int32
	ISR      []int32 // progress: adding replicas join the ISR as they catch up
	Leader   int32
}

// Target is the replica list the partition is moving to.
func (o OngoingReassignment) Target() []int32 {
	var t []int32
	for _, r := range o.Replicas {
		if !slices.Contains(o.Removing, r) {
			t = append(t, r)
		}
	}
	return t
}

// ListPartitionReassignments lists the reassignments in progress among
// partitions (none: all), sorted by topic and partition.
func (a *Admin) ListPartitionReassignments(ctx context.Context, partitions []TopicPartition) ([]OngoingReassignment, error) {
	req := &pb.ListPartitionReassignmentsRequest{Topics: groupByTopic(partitions)}
	resp, err := callController(ctx, a, pb.ControllerServiceClient.ListPartitionReassignments, req)
	if err != nil {
		return nil, err
	}
	var out []OngoingReassignment
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out = append(out, OngoingReassignment{TopicPartition: TopicPartition{t.Name, p.Partition}, Replicas: p.Replicas,
				Adding: p.AddingReplicas, Removing: p.RemovingReplicas, ISR: p.Isr, Leader: p.Leader})
		}
	}
	sortTopicPartitions(out, func(o OngoingReassignment) TopicPartition { return o.TopicPartition })
	return out, nil
}
