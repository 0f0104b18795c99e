package controller

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync/atomic"
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
// working image — the committed image plus the records of every round still
// in flight and of the ops before it in this round — and proposes each op's
// records as one Raft entry. Raft writes a round's entries with one fsync
// (BatchApplyCh). The loop does not block on a round: up to maxInflight
// rounds are pipelined, and it keeps serving leadership changes and ticks. A waiter goroutine per round waits for its entries;
// the loop answers the rounds in order as they complete, each op only after
// its entry is committed and applied (and an op without records only after
// everything it decided on). If an entry fails, the loop stops taking new
// ops until the rounds in flight have drained, then starts again from the
// committed image; if leadership is lost, they fail with NOT_CONTROLLER.

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

// round is a set of ops proposed together.
type round struct {
	a    *activeState
	ops  []*op
	done atomic.Bool // every entry has completed
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

// maxInflight bounds the rounds proposed and not yet answered. Measured on
// bbolt (every Raft write is an fsync on each voter): 1 is the fastest for
// many small concurrent requests (3.4k records/s against 2.2k with 8),
// because the ops that queue while a round is in flight form the next round,
// written with one fsync — group commit. Raise it for stores with cheap syncs.
const maxInflight = 1

func (c *Controller) run() {
	var a *activeState
	var inflight []*round
	var spec *raftfsm.Image // the working image after the last round in flight
	draining := false       // an entry failed: no new rounds until inflight drains
	roundDone := make(chan struct{}, 1)
	tick := time.NewTicker(c.sessionTick())
	defer tick.Stop()
	defer c.active.Store(false)

	// lead moves to a new activeState; rounds proposed under the old one must
	// drain before anything is decided on top of them.
	lead := func(n *activeState) {
		if n != a && len(inflight) > 0 {
			draining = true
		}
		a = n
	}
	propose := func(ops []*op) {
		base := spec
		if len(inflight) == 0 || base == nil {
			base = c.fsm.Image()
		}
		r := &round{a: a, ops: ops}
		spec = c.propose(a, base, ops)
		inflight = append(inflight, r)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for _, o := range r.ops {
				if o.fut != nil {
					_ = o.fut.Error()
				}
			}
			r.done.Store(true)
			select {
			case roundDone <- struct{}{}:
			default:
			}
		}()
	}
	// answerDone answers the completed rounds at the head of inflight.
	answerDone := func() {
		for len(inflight) > 0 && inflight[0].done.Load() {
			r := inflight[0]
			inflight = inflight[1:]
			ok, failed := c.answer(r)
			if failed {
				draining = true
			}
			if !ok {
				lead(c.checkLeadership(a))
			}
		}
		if len(inflight) == 0 {
			spec, draining = nil, false
		}
	}
	for {
		ops := c.ops
		if a == nil || draining || len(inflight) >= maxInflight {
			ops = nil // let them queue
		}
		if a == nil {
			ops = c.ops // refused at once below
		}
		select {
		case <-c.done:
			for _, r := range inflight {
				for _, o := range r.ops {
					o.res <- c.notController()
				}
			}
			for {
				select {
				case o := <-c.ops:
					o.res <- c.notController()
				default:
					return
				}
			}
		case <-c.leaderCh:
			lead(c.checkLeadership(a))
		case <-roundDone:
			answerDone()
		case o := <-ops:
			if a == nil {
				o.res <- c.notController()
				continue
			}
			batch := []*op{o}
		more:
			for len(batch) < maxRound {
				select {
				case o := <-c.ops:
					batch = append(batch, o)
				default:
					break more
				}
			}
			propose(batch)
		case <-tick.C:
			answerDone() // in case a signal was coalesced
			if a == nil && c.node.raft.State() == raft.Leader {
				lead(c.checkLeadership(nil)) // a failed barrier is retried
			}
			if a != nil && !draining && len(inflight) < maxInflight {
				if o := c.expireSessions(a, time.Now()); o != nil {
					propose([]*op{o})
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

// propose runs the decisions of ops against base and proposes each op's
// records as one Raft entry, without waiting. It returns the working image
// with every proposed record applied.
func (c *Controller) propose(a *activeState, base *raftfsm.Image, ops []*op) *raftfsm.Image {
	t := newTxn(base)
	for _, o := range ops {
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
	return t.img
}

// answer answers the ops of a completed round, in order. ok is false when an
// entry failed because this node is no longer the leader; failed reports any
// failed entry.
//
// An op with its own entry gets that entry's outcome. An op without records
// that follows a failed entry decided on records that never committed: it
// gets that failure. (The state machine checks every record, so an entry
// built on a failed one is rejected whole rather than applied half-right.)
func (c *Controller) answer(r *round) (ok, failed bool) {
	ok = true
	var ferr error
	for _, o := range r.ops {
		switch {
		case o.err != nil:
			o.res <- o.err
		case o.fut == nil && ferr != nil:
			o.res <- ferr
		case o.fut == nil:
			if o.committed != nil {
				o.committed(r.a, 0)
			}
			o.res <- nil
		default:
			if err := o.fut.Error(); err != nil {
				ferr = c.applyError(err)
				if ErrorCode(ferr) == pb.ErrorCode_NOT_CONTROLLER {
					ok = false
				}
				o.res <- ferr
				continue
			}
			if res, _ := o.fut.Response().(raftfsm.ApplyResult); res.Err != nil {
				c.log.Error("controller: the state machine rejected a decision", "err", res.Err)
				ferr = errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "rejected by the state machine: %v", res.Err)
				o.res <- ferr
				continue
			}
			if o.committed != nil {
				o.committed(r.a, o.fut.Index())
			}
			o.res <- nil
		}
	}
	return ok, ferr != nil
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
