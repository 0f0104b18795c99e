package controller

import (
	"bytes"
	"context"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// RegisterBroker registers a broker process and gives it a new broker epoch.
// A second process (another incarnation) with the id of a broker whose
// session is alive is refused with DUPLICATE_BROKER_REGISTRATION; a retry of
// the same incarnation with its previous epoch gets that epoch back.
func (s *service) RegisterBroker(ctx context.Context, req *pb.RegisterBrokerRequest) (*pb.RegisterBrokerResponse, error) {
	return wrap(s.c.registerBroker(ctx, req))
}

func (c *Controller) registerBroker(ctx context.Context, req *pb.RegisterBrokerRequest) (*pb.RegisterBrokerResponse, error) {
	resp := &pb.RegisterBrokerResponse{}
	id := req.GetBrokerId()
	err := c.submit(ctx, func(a *activeState, t *txn) error {
		if err := validateRegistration(t.img, req); err != nil {
			return err
		}
		now := time.Now()
		resp.ClusterId = t.img.ClusterID()
		b := t.img.Broker(id)
		epoch := int64(c.node.raft.LastIndex()) + 1
		if b != nil {
			same := bytes.Equal(b.IncarnationID, req.GetIncarnationId())
			if sess := a.sessions[id]; !same && sess != nil && sess.alive(now) {
				return errorf(pb.ErrorCode_DUPLICATE_BROKER_REGISTRATION,
					"broker %d is registered by another live process (session alive for %v more)", id, sess.deadline.Sub(now).Round(time.Millisecond))
			}
			if same && req.GetPreviousBrokerEpoch() == b.Epoch {
				resp.BrokerEpoch = b.Epoch // a retry
				return nil
			}
			epoch = max(epoch, b.Epoch+1)
		}
		resp.BrokerEpoch = epoch
		return decideRegister(t, req, epoch)
	}, func(a *activeState, index uint64) {
		sess := a.sessions[id]
		if sess == nil || index > 0 {
			sess = &session{regOffset: resp.BrokerEpoch}
			if index > 0 {
				sess.regOffset = int64(index)
			}
			a.sessions[id] = sess
		}
		sess.incarnation = bytes.Clone(req.GetIncarnationId())
		sess.deadline = time.Now().Add(c.cfg.SessionTimeout)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// BrokerHeartbeat renews a broker's session, unfences it once it has caught
// up with the metadata log, and runs its controlled shutdown.
func (s *service) BrokerHeartbeat(ctx context.Context, req *pb.BrokerHeartbeatRequest) (*pb.BrokerHeartbeatResponse, error) {
	return wrap(s.c.brokerHeartbeat(ctx, req))
}

func (c *Controller) heartbeatInterval() time.Duration {
	return max(c.cfg.SessionTimeout/4, time.Millisecond)
}

func (c *Controller) brokerHeartbeat(ctx context.Context, req *pb.BrokerHeartbeatRequest) (*pb.BrokerHeartbeatResponse, error) {
	resp := &pb.BrokerHeartbeatResponse{HeartbeatIntervalMs: int32(c.heartbeatInterval().Milliseconds())}
	id := req.GetBrokerId()
	var sess *session
	shutdownMoves := false
	err := c.submit(ctx, func(a *activeState, t *txn) error {
		b := t.img.Broker(id)
		if b == nil {
			return errorf(pb.ErrorCode_BROKER_ID_NOT_REGISTERED, "broker %d is not registered", id)
		}
		if b.Epoch != req.GetBrokerEpoch() {
			return epochError(pb.ErrorCode_STALE_BROKER_EPOCH, b.Epoch, "broker %d epoch %d is not the current %d", id, req.GetBrokerEpoch(), b.Epoch)
		}
		sess = a.sessions[id]
		if sess == nil {
			sess = &session{incarnation: b.IncarnationID, regOffset: b.Epoch}
			a.sessions[id] = sess
		}
		sess.deadline = time.Now().Add(c.cfg.SessionTimeout)
		off := req.GetCurrentMetadataOffset()
		resp.IsCaughtUp = off >= sess.regOffset
		var err error
		switch {
		case req.GetWantShutdown():
			switch {
			case b.Fenced:
				resp.ShouldShutDown = true // leads nothing, in no ISR it could leave
			case sess.shutdownOffset > 0 && off >= sess.shutdownOffset:
				err = decideFence(t, id)
				resp.ShouldShutDown = true
			case sess.shutdownOffset == 0:
				err = decideControlledShutdown(t, id)
				shutdownMoves = true
			}
		case req.GetWantFence():
			if !b.Fenced {
				err = decideFence(t, id)
			}
		case b.Fenced && resp.IsCaughtUp:
			err = decideUnfence(t, id)
		}
		if err != nil {
			return err
		}
		resp.IsFenced = t.img.Broker(id).Fenced
		return nil
	}, func(a *activeState, index uint64) {
		if shutdownMoves {
			if index == 0 {
				index = uint64(c.fsm.Image().Offset())
			}
			sess.shutdownOffset = max(int64(index), 1)
		}
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
