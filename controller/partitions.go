package controller

import (
	"context"
	"slices"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// AlterPartition applies ISR changes proposed by partition leaders, each
// guarded by the leader epoch and partition epoch the leader knows. Every
// partition gets its state after the change, or on error its current state.
func (s *service) AlterPartition(ctx context.Context, req *pb.AlterPartitionRequest) (*pb.AlterPartitionResponse, error) {
	return wrap(s.c.alterPartition(ctx, req))
}

func (c *Controller) alterPartition(ctx context.Context, req *pb.AlterPartitionRequest) (*pb.AlterPartitionResponse, error) {
	resp := &pb.AlterPartitionResponse{}
	err := c.submit(ctx, func(_ *activeState, t *txn) error {
		resp.Topics = resp.Topics[:0]
		if err := checkBrokerEpoch(t.img, req.GetBrokerId(), req.GetBrokerEpoch()); err != nil {
			return err
		}
		for _, at := range req.GetTopics() {
			tr := &pb.AlterPartitionTopicResult{TopicId: at.GetTopicId()}
			resp.Topics = append(resp.Topics, tr)
			tid, idErr := topicIDOf(at.GetTopicId())
			for _, ap := range at.GetPartitions() {
				pr := &pb.AlterPartitionPartitionResult{Partition: ap.GetPartition(), Leader: raftfsm.NoLeader}
				tr.Partitions = append(tr.Partitions, pr)
				err := idErr
				if err == nil {
					err = t.item(func() error { return decideAlterPartition(t, req.GetBrokerId(), tid, ap) })
				}
				pr.ErrorCode, pr.ErrorMessage = itemError(err)
				if tp := t.img.TopicByID(tid); idErr == nil && tp != nil {
					if p := tp.Partition(ap.GetPartition()); p != nil {
						pr.Leader, pr.LeaderEpoch, pr.PartitionEpoch, pr.Isr = p.Leader, p.LeaderEpoch, p.PartitionEpoch, slices.Clone(p.ISR)
					}
				}
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// checkBrokerEpoch: the broker is registered with exactly that epoch.
func checkBrokerEpoch(img *raftfsm.Image, id int32, epoch int64) error {
	b := img.Broker(id)
	if b == nil {
		return errorf(pb.ErrorCode_BROKER_ID_NOT_REGISTERED, "broker %d is not registered", id)
	}
	if b.Epoch != epoch {
		return epochError(pb.ErrorCode_STALE_BROKER_EPOCH, b.Epoch, "broker %d epoch %d is not the current %d", id, epoch, b.Epoch)
	}
	return nil
}

// ElectLeaders runs preferred or unclean elections. With no partitions
// named, it covers every partition that needs one (preferred: led by another
// replica than the preferred; unclean: leaderless).
func (s *service) ElectLeaders(ctx context.Context, req *pb.ElectLeadersRequest) (*pb.ElectLeadersResponse, error) {
	return wrap(s.c.electLeaders(ctx, req))
}

func (c *Controller) electLeaders(ctx context.Context, req *pb.ElectLeadersRequest) (*pb.ElectLeadersResponse, error) {
	typ := req.GetElectionType()
	if typ != pb.ElectionType_ELECTION_TYPE_PREFERRED && typ != pb.ElectionType_ELECTION_TYPE_UNCLEAN {
		return nil, errorf(pb.ErrorCode_INVALID_REQUEST, "unknown election type %v", typ)
	}
	resp := &pb.ElectLeadersResponse{}
	err := c.submit(ctx, func(_ *activeState, t *txn) error {
		resp.Topics = resp.Topics[:0]
		targets := req.GetTopicPartitions()
		if len(targets) == 0 {
			targets = electionCandidates(t.img, typ)
		}
		for _, tps := range targets {
			tr := &pb.ElectLeadersTopicResult{Topic: tps.GetTopic()}
			resp.Topics = append(resp.Topics, tr)
			tp := t.img.Topic(tps.GetTopic())
			for _, i := range tps.GetPartitions() {
				pr := &pb.ElectLeadersPartitionResult{Partition: i, Leader: raftfsm.NoLeader}
				tr.Partitions = append(tr.Partitions, pr)
				if tp == nil {
					pr.ErrorCode, pr.ErrorMessage = itemError(errorf(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, "no topic %q", tps.GetTopic()))
					continue
				}
				img, k := t.mark()
				leader, err := decideElectLeader(t, tp, i, typ)
				if err != nil && ErrorCode(err) != pb.ErrorCode_ELECTION_NOT_NEEDED {
					t.rollback(img, k)
				}
				pr.Leader = leader
				pr.ErrorCode, pr.ErrorMessage = itemError(err)
				tp = t.img.Topic(tps.GetTopic())
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// electionCandidates lists the partitions an all-partitions election covers.
func electionCandidates(img *raftfsm.Image, typ pb.ElectionType) []*pb.TopicPartitions {
	var out []*pb.TopicPartitions
	for _, tp := range img.Topics() {
		var ps []int32
		for i, p := range tp.Partitions() {
			s := stateOf(p)
			switch typ {
			case pb.ElectionType_ELECTION_TYPE_PREFERRED:
				if p.Leader != electionOrder(s)[0] {
					ps = append(ps, int32(i))
				}
			case pb.ElectionType_ELECTION_TYPE_UNCLEAN:
				if !leaderOK(img, s) {
					ps = append(ps, int32(i))
				}
			}
		}
		if len(ps) > 0 {
			out = append(out, &pb.TopicPartitions{Topic: tp.Name(), Partitions: ps})
		}
	}
	return out
}
