package controller

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// The active controller's event loop. One goroutine (run) owns the decision
// state (activeState: broker sessions); RPC handlers submit ops and wait.
//
// Each round takes every queued op, runs its decide function against a
// working image (the committed image plus the records of the ops before it in
// the round), proposes each op's records as one Raft entry (raft.Apply
// pipelines them), then waits for the entries in order and answers each op
// only after its entry is committed and applied. If leadership is lost, the
// round's entries fail with NOT_CONTROLLER, and the next round (on the next
// leader) starts again from the committed image. Raft writes a round's
// entries with one fsync (BatchApplyCh), so concurrent requests share it.

// op is one request to the active controller.
type op struct {
	ctx context.Context
	// decide runs on the loop: it reads a and t.img, adds records to t, and
	// records its results in the closure. An error drops its records.
	decide func(a *activeState, t *txn) error
	// committed, if set, runs on the loop after the records are committed
	// (index: their offset; 0 when there were none).
	committed func(a *activeState, index uint64)
	res       chan error

	err  error
	recs int
	fut  raft.ApplyFuture
}

// activeState is the decision state only the active controller has: it is
// rebuilt from the image whenever this node becomes the leader.
type activeState struct {
	term     uint64
	sessions map[int32]*session
}

// session is a broker's liveness as the active controller sees it.
type session struct {
	incarnation []byte
	deadline    time.Time
	// regOffset is the offset of the broker's registration: it has caught up
	// once it has applied it.
	regOffset int64
	// shutdownOffset, when > 0, is the offset at which the controlled
	// shutdown's leader moves committed: the broker may exit once it has
	// applied it.
	shutdownOffset int64
}

func (s *session) alive(now time.Time) bool { return now.Before(s.deadline) }

// submit runs decide on the active controller and waits until its records
// are committed. A follower answers NOT_CONTROLLER at once.
func (c *Controller) submit(ctx context.Context, decide func(a *activeState, t *txn) error, committed func(a *activeState, index uint64)) error {
	if !c.active.Load() {
		return c.notController()
	}
	o := &op{ctx: ctx, decide: decide, committed: committed, res: make(chan error, 1)}
	select {
	case c.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.notController()
	}
	select {
	case err := <-o.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.notController()
	}
}

// maxRound bounds the ops of one round.
const maxRound = 256

func (c *Controller) sessionTick() time.Duration {
	d := c.cfg.SessionTimeout / 8
	if d < 10*time.Millisecond {
		d = 10 * time.Millisecond
	}
	if d > 250*time.Millisecond {
		d = 250 * time.Millisecond
	}
	return d
}

func (c *Controller) run() {
	var a *activeState
	tick := time.NewTicker(c.sessionTick())
	defer tick.Stop()
	defer c.active.Store(false)
	for {
		select {
		case <-c.done:
			for {
				select {
				case o := <-c.ops:
					o.res <- c.notController()
				default:
					return
				}
			}
		case <-c.leaderCh:
			a = c.checkLeadership(a)
		case o := <-c.ops:
			if a == nil {
				o.res <- c.notController()
				continue
			}
			round := []*op{o}
		more:
			for len(round) < maxRound {
				select {
				case o := <-c.ops:
					round = append(round, o)
				default:
					break more
				}
			}
			if !c.process(a, round) {
				a = c.checkLeadership(a)
			}
		case <-tick.C:
			if a == nil && c.node.raft.State() == raft.Leader {
				a = c.checkLeadership(nil) // a failed barrier is retried
			}
			if a != nil {
				if o := c.expireSessions(a, time.Now()); o != nil && !c.process(a, []*op{o}) {
					a = c.checkLeadership(a)
				}
			}
		}
	}
}

// checkLeadership brings a in line with Raft: a new term as leader starts a
// fresh activeState after a barrier; losing leadership drops it.
func (c *Controller) checkLeadership(a *activeState) *activeState {
	r := c.node.raft
	if r.State() != raft.Leader {
		if a != nil {
			c.log.Info("controller: no longer the active controller")
		}
		c.active.Store(false)
		return nil
	}
	term := r.CurrentTerm()
	if a != nil && a.term == term {
		return a
	}
	c.active.Store(false)
	// Apply everything committed before deciding anything.
	if err := r.Barrier(c.cfg.ApplyTimeout).Error(); err != nil {
		c.log.Warn("controller: barrier failed; not active", "err", err)
		return nil
	}
	img := c.fsm.Image()
	a = &activeState{term: term, sessions: map[int32]*session{}}
	now := time.Now()
	for _, b := range img.Brokers() {
		// Every broker gets a full session to reach the new controller.
		a.sessions[b.ID] = &session{incarnation: b.IncarnationID, deadline: now.Add(c.cfg.SessionTimeout), regOffset: b.Epoch}
	}
	if img.ClusterID() == "" {
		id := newClusterID()
		rec := &pb.MetadataRecord{Record: &pb.MetadataRecord_ClusterId{ClusterId: &pb.ClusterIdRecord{ClusterId: id}}}
		data, _ := marshalBatch([]*pb.MetadataRecord{rec})
		if err := r.Apply(data, c.cfg.ApplyTimeout).Error(); err != nil {
			c.log.Warn("controller: writing the cluster id failed; not active", "err", err)
			return nil
		}
		c.log.Info("controller: new cluster", "cluster_id", id)
	}
	c.active.Store(true)
	c.log.Info("controller: active", "term", term, "offset", c.fsm.Image().Offset())
	return a
}

// process runs one round (see the top of this file). It returns false when
// an entry failed because this node is no longer the leader.
//
// If an entry fails, later entries of the round may still commit: each op
// with an entry is answered by its own entry's outcome. The state machine
// checks every record, so an entry built on a failed one is rejected whole
// rather than applied half-right.
func (c *Controller) process(a *activeState, round []*op) bool {
	t := newTxn(c.fsm.Image())
	for _, o := range round {
		if err := o.ctx.Err(); err != nil {
			o.err = err
			continue
		}
		img, n := t.mark()
		if err := o.decide(a, t); err != nil {
			t.rollback(img, n)
			o.err = err
			continue
		}
		o.recs = len(t.recs) - n
		if o.recs == 0 {
			continue
		}
		data, err := marshalBatch(t.recs[n:])
		if err != nil {
			t.rollback(img, n)
			o.err = errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "marshal: %v", err)
			continue
		}
		o.fut = c.node.raft.Apply(data, c.applyTimeout(o.ctx))
	}
	// Answer in order. An op without records that follows a failed entry
	// decided on records that never committed: it gets that failure. An op
	// with its own entry gets that entry's outcome.
	ok := true
	var failed error
	for _, o := range round {
		switch {
		case o.err != nil:
			o.res <- o.err
		case o.fut == nil && failed != nil:
			o.res <- failed
		case o.fut == nil:
			if o.committed != nil {
				o.committed(a, 0)
			}
			o.res <- nil
		default:
			if err := o.fut.Error(); err != nil {
				failed = c.applyError(err)
				if ErrorCode(failed) == pb.ErrorCode_NOT_CONTROLLER {
					ok = false
				}
				o.res <- failed
				continue
			}
			if r, _ := o.fut.Response().(raftfsm.ApplyResult); r.Err != nil {
				c.log.Error("controller: the state machine rejected a decision", "err", r.Err)
				failed = errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "rejected by the state machine: %v", r.Err)
				o.res <- failed
				continue
			}
			if o.committed != nil {
				o.committed(a, o.fut.Index())
			}
			o.res <- nil
		}
	}
	return ok
}

// applyError translates a raft.Apply failure.
func (c *Controller) applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrAbortedByRestore):
		return c.notController()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return errorf(pb.ErrorCode_REQUEST_TIMED_OUT, "raft apply: %v", err)
	}
	return errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "raft apply: %v", err)
}

// expireSessions fences every unfenced broker whose session has expired.
func (c *Controller) expireSessions(a *activeState, now time.Time) *op {
	img := c.fsm.Image()
	var expired []int32
	for _, b := range img.Brokers() {
		s := a.sessions[b.ID]
		if s == nil {
			s = &session{incarnation: b.IncarnationID, deadline: now.Add(c.cfg.SessionTimeout), regOffset: b.Epoch}
			a.sessions[b.ID] = s
		}
		if !b.Fenced && !s.alive(now) {
			expired = append(expired, b.ID)
		}
	}
	if len(expired) == 0 {
		return nil
	}
	return &op{
		ctx: context.Background(),
		decide: func(a *activeState, t *txn) error {
			for _, id := range expired {
				c.log.Info("controller: broker session expired; fencing", "broker", id)
				if err := decideFence(t, id); err != nil {
					return err
				}
			}
			return nil
		},
		res: make(chan error, 1),
	}
}

func marshalBatch(recs []*pb.MetadataRecord) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(&pb.MetadataBatch{Records: recs})
}

func newClusterID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func newTopicID() raftfsm.TopicID {
	for {
		var id raftfsm.TopicID
		_, _ = rand.Read(id[:])
		if !id.IsZero() {
			return id
		}
	}
}
