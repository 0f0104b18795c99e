package controller

import (
	"context"
	"slices"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// AlterPartitionReassignments starts, replaces or (with an empty replica
// list) cancels reassignments; see decide_reassign.go for the steps.
func (s *service) AlterPartitionReassignments(ctx context.Context, req *pb.AlterPartitionReassignmentsRequest) (*pb.AlterPartitionReassignmentsResponse, error) {
	return wrap(s.c.alterReassignments(ctx, req))
}

func (c *Controller) alterReassignments(ctx context.Context, req *pb.AlterPartitionReassignmentsRequest) (*pb.AlterPartitionReassignmentsResponse, error) {
	resp := &pb.AlterPartitionReassignmentsResponse{}
	err := c.submit(ctx, func(_ *activeState, t *txn) error {
		resp.Topics = resp.Topics[:0]
		for _, rt := range req.GetTopics() {
			tr := &pb.ReassignableTopicResult{Name: rt.GetName()}
			resp.Topics = append(resp.Topics, tr)
			var done []int32
			for _, rp := range rt.GetPartitions() {
				pr := &pb.ReassignablePartitionResult{Partition: rp.GetPartition()}
				tr.Partitions = append(tr.Partitions, pr)
				tp := t.img.Topic(rt.GetName())
				var err error
				switch {
				case tp == nil:
					err = errorf(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, "no topic %q", rt.GetName())
				case slices.Contains(done, rp.GetPartition()):
					err = errorf(pb.ErrorCode_INVALID_REQUEST, "partition %d named twice", rp.GetPartition())
				default:
					err = t.item(func() error { return decideReassign(t, tp, rp.GetPartition(), rp.GetReplicas()) })
				}
				done = append(done, rp.GetPartition())
				pr.ErrorCode, pr.ErrorMessage = itemError(err)
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ListPartitionReassignments lists reassignments in progress with their
// progress (which adding replicas have joined the ISR), from this node's image.
func (s *service) ListPartitionReassignments(ctx context.Context, req *pb.ListPartitionReassignmentsRequest) (*pb.ListPartitionReassignmentsResponse, error) {
	img := s.c.fsm.Image()
	return listReassignments(img, req), nil
}

func listReassignments(img *raftfsm.Image, req *pb.ListPartitionReassignmentsRequest) *pb.ListPartitionReassignmentsResponse {
	resp := &pb.ListPartitionReassignmentsResponse{}
	add := func(tp *raftfsm.Topic, only []int32) {
		ot := &pb.OngoingTopicReassignment{Name: tp.Name()}
		for i, p := range tp.Partitions() {
			if !p.IsReassigning() || (only != nil && !slices.Contains(only, int32(i))) {
				continue
			}
			ot.Partitions = append(ot.Partitions, &pb.OngoingPartitionReassignment{
				Partition:        int32(i),
				Replicas:         slices.Clone(p.Replicas),
				AddingReplicas:   slices.Clone(p.Adding),
				RemovingReplicas: slices.Clone(p.Removing),
				Isr:              slices.Clone(p.ISR),
				Leader:           p.Leader,
			})
		}
		if len(ot.Partitions) > 0 {
			resp.Topics = append(resp.Topics, ot)
		}
	}
	if len(req.GetTopics()) == 0 {
		for _, tp := range img.Topics() {
			add(tp, nil)
		}
		return resp
	}
	for _, q := range req.GetTopics() {
		if tp := img.Topic(q.GetTopic()); tp != nil {
			add(tp, q.GetPartitions()) // none named: every partition
		}
	}
	return resp
}
