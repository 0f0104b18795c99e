package controller

import (
	"slices"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// decideAlterPartition applies one partition's ISR change proposed by its
// leader (broker, with the broker's current epoch already checked). The
// change is accepted only with the partition's current leader epoch and
// partition epoch; the new ISR must be non-empty, contain the leader, be made
// of replicas, and any member joining must be eligible and (when the leader
// says so) fetching with its current broker epoch. min.insync.replicas is not
// a reason to refuse: it is the producer's concern.
//
// A completed reassignment step (every adding replica in the ISR) is folded
// into the same record.
func decideAlterPartition(t *txn, broker int32, tid raftfsm.TopicID, ap *pb.AlterPartitionPartition) error {
	tp := t.img.TopicByID(tid)
	if tp == nil {
		return errorf(pb.ErrorCode_UNKNOWN_TOPIC_ID, "no topic with id %s", tid)
	}
	p := tp.Partition(ap.GetPartition())
	if p == nil {
		return errorf(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, "topic %q has no partition %d", tp.Name(), ap.GetPartition())
	}
	if ap.GetLeaderEpoch() != p.LeaderEpoch {
		return epochError(pb.ErrorCode_FENCED_LEADER_EPOCH, int64(p.LeaderEpoch), "leader epoch %d is not the current %d", ap.GetLeaderEpoch(), p.LeaderEpoch)
	}
	if p.Leader != broker {
		return errorf(pb.ErrorCode_NOT_LEADER_OR_FOLLOWER, "broker %d does not lead %s-%d (leader %d)", broker, tp.Name(), ap.GetPartition(), p.Leader)
	}
	if ap.GetPartitionEpoch() != p.PartitionEpoch {
		return epochError(pb.ErrorCode_INVALID_UPDATE_VERSION, int64(p.PartitionEpoch), "partition epoch %d is not the current %d", ap.GetPartitionEpoch(), p.PartitionEpoch)
	}
	var isr []int32
	for _, m := range ap.GetNewIsr() {
		id := m.GetBrokerId()
		if slices.Contains(isr, id) {
			return errorf(pb.ErrorCode_INVALID_REQUEST, "broker %d twice in the new ISR", id)
		}
		if !p.IsReplica(id) {
			return errorf(pb.ErrorCode_INELIGIBLE_REPLICA, "broker %d is not a replica of %s-%d", id, tp.Name(), ap.GetPartition())
		}
		if !p.InISR(id) {
			b := t.img.Broker(id)
			if !eligible(t.img, id) {
				return errorf(pb.ErrorCode_INELIGIBLE_REPLICA, "broker %d is fenced, shutting down or not registered", id)
			}
			if m.GetBrokerEpoch() != -1 && m.GetBrokerEpoch() != b.Epoch {
				return errorf(pb.ErrorCode_INELIGIBLE_REPLICA, "broker %d fetched with epoch %d, its current epoch is %d", id, m.GetBrokerEpoch(), b.Epoch)
			}
		}
		isr = append(isr, id)
	}
	if len(isr) == 0 {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "the new ISR is empty")
	}
	if !slices.Contains(isr, broker) {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "the new ISR %v does not contain the leader %d", isr, broker)
	}
	s := stateOf(p)
	s.ISR = isr
	advanceReassignment(t.img, tp, &s)
	if r := changeRecord(tid, ap.GetPartition(), p, s); r != nil {
		return t.add(r)
	}
	return nil
}

// decideElectLeader runs one ElectLeaders election.
//
// Preferred: move leadership to the first replica (the first target replica
// during a reassignment) when it is in the ISR and eligible.
// Unclean: give a leaderless partition a leader, from the ISR if possible,
// else from any eligible replica (the operator's explicit override of the
// topic's unclean.leader.election.enable).
func decideElectLeader(t *txn, tp *raftfsm.Topic, index int32, typ pb.ElectionType) (int32, error) {
	p := tp.Partition(index)
	if p == nil {
		return raftfsm.NoLeader, errorf(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, "topic %q has no partition %d", tp.Name(), index)
	}
	s := stateOf(p)
	switch typ {
	case pb.ElectionType_ELECTION_TYPE_PREFERRED:
		pref := electionOrder(s)[0]
		if p.Leader == pref {
			return p.Leader, errorf(pb.ErrorCode_ELECTION_NOT_NEEDED, "preferred replica %d already leads", pref)
		}
		if !p.InISR(pref) || !eligible(t.img, pref) {
			return p.Leader, errorf(pb.ErrorCode_PREFERRED_LEADER_NOT_AVAILABLE, "preferred replica %d is not an eligible ISR member", pref)
		}
		s.Leader = pref
	case pb.ElectionType_ELECTION_TYPE_UNCLEAN:
		if leaderOK(t.img, s) {
			return p.Leader, errorf(pb.ErrorCode_ELECTION_NOT_NEEDED, "partition has leader %d", p.Leader)
		}
		electLeader(t.img, &s, true)
		if s.Leader == raftfsm.NoLeader {
			return p.Leader, errorf(pb.ErrorCode_ELIGIBLE_LEADERS_NOT_AVAILABLE, "no replica of %v is eligible", p.Replicas)
		}
	default:
		return p.Leader, errorf(pb.ErrorCode_INVALID_REQUEST, "unknown election type %v", typ)
	}
	if r := changeRecord(tp.ID(), index, p, s); r != nil {
		if err := t.add(r); err != nil {
			return p.Leader, err
		}
	}
	return s.Leader, nil
}
