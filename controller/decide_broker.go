package controller

import (
	"bytes"
	"slices"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Broker lifecycle decisions. A broker registers fenced; once its heartbeats
// show it has caught up with the metadata log it is unfenced and may lead and
// join ISRs. A missed session fences it; a controlled shutdown marks it and
// moves its leaderships away before it is let go.

// validateRegistration checks a RegisterBrokerRequest on its own.
func validateRegistration(img *raftfsm.Image, req *pb.RegisterBrokerRequest) error {
	if req.GetBrokerId() < 0 {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "broker id %d is negative", req.GetBrokerId())
	}
	if len(req.GetIncarnationId()) != 16 || bytes.Equal(req.GetIncarnationId(), make([]byte, 16)) {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "incarnation id must be 16 bytes, not all zero")
	}
	if req.GetClusterId() != "" && img.ClusterID() != "" && req.GetClusterId() != img.ClusterID() {
		return errorf(pb.ErrorCode_INCONSISTENT_CLUSTER_ID, "cluster id %q is not this cluster's %q", req.GetClusterId(), img.ClusterID())
	}
	var names []string
	for _, l := range req.GetListeners() {
		if l.GetName() == "" {
			return errorf(pb.ErrorCode_INVALID_REQUEST, "listener without a name")
		}
		if l.GetPort() <= 0 || l.GetPort() > 65535 {
			return errorf(pb.ErrorCode_INVALID_REQUEST, "listener %s: port %d out of range", l.GetName(), l.GetPort())
		}
		if slices.Contains(names, l.GetName()) {
			return errorf(pb.ErrorCode_INVALID_REQUEST, "listener %s twice", l.GetName())
		}
		names = append(names, l.GetName())
	}
	return nil
}

// decideRegister registers req's broker with epoch, fenced, and moves the
// leaderships of its previous registration away (the old process is gone or
// restarting: it must catch up before it leads again). The caller checks
// that no other live incarnation holds the id.
func decideRegister(t *txn, req *pb.RegisterBrokerRequest, epoch int64) error {
	if err := t.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_RegisterBroker{RegisterBroker: &pb.RegisterBrokerRecord{
		BrokerId:      req.GetBrokerId(),
		IncarnationId: req.GetIncarnationId(),
		BrokerEpoch:   epoch,
		Listeners:     req.GetListeners(),
		Rack:          req.GetRack(),
		Fenced:        true,
	}}}); err != nil {
		return err
	}
	return moveAway(t, req.GetBrokerId(), false)
}

// decideFence fences broker id: it leads nothing and leaves every ISR it is
// in, except where it is the last member (an ISR never empties; the
// partition is then leaderless until an ISR member returns, or gets an
// unclean leader where the topic allows it).
func decideFence(t *txn, id int32) error {
	b := t.img.Broker(id)
	if b == nil {
		return errorf(pb.ErrorCode_BROKER_ID_NOT_REGISTERED, "broker %d is not registered", id)
	}
	if !b.Fenced {
		if err := t.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_FenceBroker{FenceBroker: &pb.FenceBrokerRecord{
			BrokerId: id, BrokerEpoch: b.Epoch}}}); err != nil {
			return err
		}
	}
	return moveAway(t, id, false)
}

// decideUnfence unfences broker id and gives a leader to every leaderless
// partition it can lead.
func decideUnfence(t *txn, id int32) error {
	b := t.img.Broker(id)
	if b == nil {
		return errorf(pb.ErrorCode_BROKER_ID_NOT_REGISTERED, "broker %d is not registered", id)
	}
	if b.Fenced || b.InControlledShutdown {
		if err := t.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_UnfenceBroker{UnfenceBroker: &pb.UnfenceBrokerRecord{
			BrokerId: id, BrokerEpoch: b.Epoch}}}); err != nil {
			return err
		}
	}
	return electLeaderless(t, func(p *raftfsm.Partition) bool { return p.IsReplica(id) })
}

// decideControlledShutdown marks broker id as shutting down and moves its
// leaderships (and ISR memberships) to other eligible ISR members where there
// are any; a partition with no alternative keeps it as leader until it is
// fenced.
func decideControlledShutdown(t *txn, id int32) error {
	b := t.img.Broker(id)
	if b == nil {
		return errorf(pb.ErrorCode_BROKER_ID_NOT_REGISTERED, "broker %d is not registered", id)
	}
	if !b.InControlledShutdown {
		yes := true
		if err := t.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_BrokerRegistrationChange{BrokerRegistrationChange: &pb.BrokerRegistrationChangeRecord{
			BrokerId: id, BrokerEpoch: b.Epoch, InControlledShutdown: &yes}}}); err != nil {
			return err
		}
	}
	return moveAway(t, id, true)
}

// moveAway takes the (now ineligible) broker id out of the ISRs it is in,
// never emptying one, and re-elects where it led. With keepIfNone a
// partition without another eligible ISR member is left as it is.
func moveAway(t *txn, id int32, keepIfNone bool) error {
	var changes []*pb.MetadataRecord
	rangePartitions(t.img, func(tp *raftfsm.Topic, i int32, p *raftfsm.Partition) {
		if !p.InISR(id) && p.Leader != id {
			return
		}
		s := stateOf(p)
		if len(s.ISR) > 1 {
			s.ISR = remove(s.ISR, id)
		}
		if !leaderOK(t.img, s) {
			electLeader(t.img, &s, uncleanAllowed(t.img, tp))
			if s.Leader == raftfsm.NoLeader && keepIfNone {
				return
			}
		}
		if r := changeRecord(tp.ID(), i, p, s); r != nil {
			changes = append(changes, r)
		}
	})
	return t.addAll(changes)
}

// electLeaderless elects a leader for every leaderless partition that match
// selects (clean, or unclean where the topic allows it).
func electLeaderless(t *txn, match func(p *raftfsm.Partition) bool) error {
	var changes []*pb.MetadataRecord
	rangePartitions(t.img, func(tp *raftfsm.Topic, i int32, p *raftfsm.Partition) {
		if p.Leader != raftfsm.NoLeader || !match(p) {
			return
		}
		s := stateOf(p)
		electLeader(t.img, &s, uncleanAllowed(t.img, tp))
		if r := changeRecord(tp.ID(), i, p, s); r != nil {
			changes = append(changes, r)
		}
	})
	return t.addAll(changes)
}
