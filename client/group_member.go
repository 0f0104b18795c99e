package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Leave epochs of GroupHeartbeatRequest.member_epoch (group.proto).
const (
	leaveEpoch       = -1
	leaveStaticEpoch = -2
)

// run is the heartbeat goroutine: it joins, heartbeats every interval the
// coordinator asks for (at once after any change of the owned partitions),
// reconciles the owned partitions with each assignment answered, commits on
// the auto-commit interval, and on Close gives everything up and leaves.
func (g *GroupConsumer) run() {
	defer close(g.done)
	// Every RPC is bounded by the client's RequestTimeout; Close waits for
	// the one under way, then the loop leaves.
	ctx := context.Background()
	nextHB := time.Now() // join at once
	nextCommit := time.Now().Add(g.cfg.AutoCommitInterval)
	backoff := time.Duration(0)
	for {
		if g.reconcile(ctx) {
			nextHB = time.Now()
		}
		idle, pollDeadline := g.pollState()
		if !idle && !pollDeadline.IsZero() && !time.Now().Before(pollDeadline) {
			g.leaveIdle(ctx)
			nextHB = time.Now()
			continue
		}
		wait := time.Until(nextHB)
		if idle {
			wait = time.Hour // no heartbeats until Poll is called again (it kicks)
		}
		if !pollDeadline.IsZero() {
			wait = min(wait, time.Until(pollDeadline))
		}
		if !g.cfg.DisableAutoCommit {
			wait = min(wait, time.Until(nextCommit))
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-g.closing:
			t.Stop()
			g.leave(ctx)
			return
		case <-g.wake:
			nextHB = time.Now()
		case <-t.C:
		}
		t.Stop()
		if !g.cfg.DisableAutoCommit && !time.Now().Before(nextCommit) {
			nextCommit = time.Now().Add(g.cfg.AutoCommitInterval)
			if err := g.autoCommit(ctx); err != nil {
				g.log.Warn("auto-commit", "err", err)
			}
		}
		if idle, _ := g.pollState(); idle || time.Now().Before(nextHB) {
			continue
		}
		err := g.heartbeat(ctx)
		g.mu.Lock()
		interval := g.mu.interval
		g.mu.Unlock()
		var e *Error
		switch {
		case err == nil:
			backoff = 0
			nextHB = time.Now().Add(interval)
		case errors.As(err, &e) && (e.Code == pb.ErrorCode_UNKNOWN_MEMBER_ID || e.Code == pb.ErrorCode_FENCED_MEMBER_EPOCH):
			nextHB = time.Now() // lost: reconcile drops everything, then join again
		case !errors.As(err, &e) || coordinatorError(e) || e.Retriable || e.Code == pb.ErrorCode_UNKNOWN_SERVER_ERROR:
			backoff = min(max(2*backoff, 100*time.Millisecond), 2*time.Second)
			g.log.Info("heartbeat failed, retrying", "err", err, "backoff", backoff)
			nextHB = time.Now().Add(backoff)
		default:
			// Refused for good (INVALID_GROUP_ID, GROUP_MAX_SIZE_REACHED,
			// UNSUPPORTED_ASSIGNOR, ...): drop the partitions and stop; Poll
			// returns the error.
			g.log.Error("the group refused the member", "err", err)
			g.fail(ctx, err)
			<-g.closing
			return
		}
	}
}

// pollState says whether the member left for want of Polls, and else when
// it must (zero: not a member, or a Poll is running).
func (g *GroupConsumer) pollState() (idle bool, deadline time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.idle {
		return true, time.Time{}
	}
	if g.mu.inPoll > 0 || g.mu.epoch <= 0 {
		return false, time.Time{}
	}
	return false, g.mu.lastPoll.Add(g.cfg.MaxPollInterval)
}

// leaveIdle leaves the group because the application stopped calling Poll
// for MaxPollInterval: its partitions go to members that make progress.
// The member keeps its id; the next Poll joins again.
func (g *GroupConsumer) leaveIdle(ctx context.Context) {
	g.log.Warn("no Poll for MaxPollInterval: leaving the group until the next Poll", "interval", g.cfg.MaxPollInterval)
	parts, err := g.giveUpAll(ctx, false)
	if err != nil {
		g.log.Warn("leaving the group", "err", err, "partitions", parts)
	}
	g.mu.Lock()
	g.mu.idle = g.mu.inPoll == 0 // a Poll that started meanwhile joins again at once
	g.mu.Unlock()
}

// heartbeat sends one heartbeat with the member's state and takes in the
// answer: member id, epoch, interval and the assignment (reconcile acts on
// it). UNKNOWN_MEMBER_ID and FENCED_MEMBER_EPOCH mark the member lost.
func (g *GroupConsumer) heartbeat(ctx context.Context) error {
	g.hbMu.Lock()
	defer g.hbMu.Unlock()
	g.mu.Lock()
	if g.mu.lost {
		g.mu.Unlock()
		return nil // reconcile drops the partitions first
	}
	req := &pb.GroupHeartbeatRequest{GroupId: g.cfg.Group, MemberId: g.mu.memberID, MemberEpoch: g.mu.epoch,
		InstanceId: g.cfg.InstanceID, RackId: g.cfg.Rack, RebalanceTimeoutMs: int32(g.cfg.RebalanceTimeout / time.Millisecond),
		SubscribedTopicNames: g.cfg.Topics, SubscribedTopicRegex: g.cfg.TopicRegex, ServerAssignor: g.cfg.Assignor,
		OwnedPartitions: g.ownedLocked(), ClientId: g.cfg.ClientID}
	g.mu.Unlock()
	var resp *pb.GroupHeartbeatResponse
	err := g.router.once(ctx, func(ctx context.Context, gs pb.GroupServiceClient) (err error) {
		resp, err = gs.GroupHeartbeat(ctx, req)
		return err
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		var e *Error
		if errors.As(err, &e) && (e.Code == pb.ErrorCode_UNKNOWN_MEMBER_ID || e.Code == pb.ErrorCode_FENCED_MEMBER_EPOCH) {
			g.log.Info("fenced: the member's partitions are lost; joining again", "err", err, "member", g.mu.memberID)
			g.mu.lost, g.mu.epoch, g.mu.target = true, 0, nil
		}
		return err
	}
	if resp.MemberId != "" {
		g.mu.memberID = resp.MemberId
	}
	g.mu.epoch = resp.MemberEpoch
	if resp.HeartbeatIntervalMs > 0 {
		g.mu.interval = time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond
	}
	g.mu.target = partsOf(resp.Assignment)
	return nil
}

// refreshEpoch heartbeats out of turn to learn the member's current epoch
// (a commit was STALE_MEMBER_EPOCH). It does not join: a member that is
// not in the group gets UNKNOWN_MEMBER_ID.
func (g *GroupConsumer) refreshEpoch(ctx context.Context) error {
	g.mu.Lock()
	joined := g.mu.memberID != "" && g.mu.epoch > 0 && !g.mu.lost
	g.mu.Unlock()
	if !joined {
		return &Error{Code: pb.ErrorCode_UNKNOWN_MEMBER_ID, Message: "the member is (re)joining the group; commit again once it has partitions"}
	}
	err := g.heartbeat(ctx)
	g.kick() // the loop reconciles what the answer said
	return err
}

// kick makes the heartbeat goroutine heartbeat (and reconcile) now.
func (g *GroupConsumer) kick() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// callbackCtx bounds a callback by the rebalance timeout (60 s by default).
func (g *GroupConsumer) callbackCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	d := g.cfg.RebalanceTimeout
	if d <= 0 {
		d = time.Minute
	}
	return context.WithTimeout(ctx, d)
}

func (g *GroupConsumer) call(ctx context.Context, fn func(context.Context, []TopicPartition), tps []TopicPartition) {
	if fn == nil || len(tps) == 0 {
		return
	}
	cctx, cancel := g.callbackCtx(ctx)
	defer cancel()
	fn(cctx, tps)
}

// reconcile brings the owned partitions to the last assignment answered,
// one step at a time: first it drops everything when the member was
// fenced; else it gives up the partitions no longer assigned; else it takes
// the new ones. It reports whether the owned set changed (then the caller
// heartbeats at once, so that the coordinator hands released partitions on).
func (g *GroupConsumer) reconcile(ctx context.Context) bool {
	g.mu.Lock()
	lost, target := g.mu.lost, g.mu.target
	revoked, added := minus(g.mu.owned, target), minus(target, g.mu.owned)
	g.mu.Unlock()
	switch {
	case lost:
		var parts []TopicPartition
		g.change(func() {
			parts = sortedParts(g.mu.owned)
			clear(g.mu.owned)
			clear(g.mu.active)
			clear(g.mu.returned)
			clear(g.mu.processed)
			clear(g.mu.committed)
			g.mu.lost = false
			g.setFetchingLocked(nil)
		})
		g.call(ctx, g.cfg.OnLost, parts)
		return true
	case target == nil:
		return false
	case len(revoked) > 0:
		g.revoke(ctx, revoked)
		return true
	case len(added) > 0:
		return g.assign(ctx, added)
	}
	return false
}

// revoke gives partitions up: stop fetching, commit (auto-commit), call
// OnRevoked, drop them from the owned set.
func (g *GroupConsumer) revoke(ctx context.Context, parts []TopicPartition) {
	g.change(func() {
		for _, tp := range parts {
			delete(g.mu.active, tp)
		}
		g.setFetchingLocked(nil)
	})
	if !g.cfg.DisableAutoCommit {
		if err := g.commitPositions(ctx, g.positions(parts, false)); err != nil {
			g.log.Warn("committing partitions before giving them up", "err", err, "partitions", parts)
		}
	}
	g.call(ctx, g.cfg.OnRevoked, parts)
	g.mu.Lock()
	for _, tp := range parts {
		delete(g.mu.owned, tp)
		delete(g.mu.returned, tp)
		delete(g.mu.processed, tp)
		delete(g.mu.committed, tp)
	}
	g.mu.Unlock()
}

// assign takes partitions on: look up their committed offsets, own them,
// call OnAssigned, start fetching. If the lookup fails they stay unowned
// and the next heartbeat's reconcile tries again.
func (g *GroupConsumer) assign(ctx context.Context, parts []TopicPartition) bool {
	committed, err := g.fetchCommitted(ctx, parts)
	if err != nil {
		g.log.Warn("looking up committed offsets of assigned partitions", "err", err, "partitions", parts)
		return false
	}
	g.mu.Lock()
	var took []TopicPartition
	for _, tp := range parts {
		if g.mu.target[tp] && !g.mu.owned[tp] { // a later answer may have taken it back
			g.mu.owned[tp] = true
			took = append(took, tp)
		}
	}
	g.mu.Unlock()
	g.call(ctx, g.cfg.OnAssigned, took)
	positions := map[TopicPartition]int64{}
	g.change(func() {
		for _, tp := range took {
			if !g.mu.owned[tp] {
				continue
			}
			g.mu.active[tp] = true
			if off, ok := committed[tp]; ok {
				positions[tp] = off
				g.mu.committed[tp] = off
			}
		}
		g.setFetchingLocked(positions)
	})
	return len(took) > 0
}

// fetchCommitted looks up the group's committed offsets of parts (missing:
// none committed).
func (g *GroupConsumer) fetchCommitted(ctx context.Context, parts []TopicPartition) (map[TopicPartition]int64, error) {
	var resp *pb.OffsetFetchResponse
	err := g.router.do(ctx, func(ctx context.Context, gs pb.GroupServiceClient) (err error) {
		resp, err = gs.OffsetFetch(ctx, &pb.OffsetFetchRequest{GroupId: g.cfg.Group, Topics: groupByTopic(parts)})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := map[TopicPartition]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.Offset >= 0 {
				out[TopicPartition{t.Topic, p.Partition}] = p.Offset
			}
		}
	}
	return out, nil
}

// fail stops the member for good with err: its partitions are dropped (as
// lost: OnLost) and Poll returns err.
func (g *GroupConsumer) fail(ctx context.Context, err error) {
	var parts []TopicPartition
	g.mu.Lock()
	g.mu.err = err
	g.mu.Unlock()
	g.stopWith(err)
	g.change(func() {
		parts = sortedParts(g.mu.owned)
		clear(g.mu.owned)
		clear(g.mu.active)
		g.setFetchingLocked(nil)
	})
	g.call(ctx, g.cfg.OnLost, parts)
}

// leave is Close's work on the heartbeat goroutine: stop fetching, commit
// what Poll returned (auto-commit), OnRevoked, then the leave heartbeat.
func (g *GroupConsumer) leave(ctx context.Context) {
	g.mu.Lock()
	failed := g.mu.err != nil
	g.mu.Unlock()
	if failed {
		return
	}
	_, err := g.giveUpAll(ctx, true)
	g.mu.Lock()
	g.mu.closeErr = err
	g.mu.epoch = leaveEpoch
	g.mu.Unlock()
}

// giveUpAll stops fetching, commits (auto-commit: everything Poll returned
// with all, else the processed records), calls OnRevoked with every owned
// partition and sends the leave heartbeat (-1, or -2 for a static member).
// The member is left with epoch 0 and its id.
func (g *GroupConsumer) giveUpAll(ctx context.Context, all bool) ([]TopicPartition, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cl.cfg.RequestTimeout)
	defer cancel()
	var errs []error
	g.change(func() {
		clear(g.mu.active)
		g.setFetchingLocked(nil)
	})
	g.mu.Lock()
	parts, memberID, epoch := sortedParts(g.mu.owned), g.mu.memberID, g.mu.epoch
	g.mu.Unlock()
	if !g.cfg.DisableAutoCommit && len(parts) > 0 {
		if err := g.commitPositions(ctx, g.positions(parts, all)); err != nil {
			errs = append(errs, fmt.Errorf("committing before leaving: %w", err))
		}
	}
	g.call(ctx, g.cfg.OnRevoked, parts)
	g.mu.Lock()
	clear(g.mu.owned)
	clear(g.mu.returned)
	clear(g.mu.processed)
	g.mu.Unlock()
	if memberID != "" && epoch > 0 {
		e := int32(leaveEpoch)
		if g.cfg.InstanceID != "" {
			e = leaveStaticEpoch
		}
		g.hbMu.Lock()
		err := g.router.do(ctx, func(ctx context.Context, gs pb.GroupServiceClient) error {
			_, err := gs.GroupHeartbeat(ctx, &pb.GroupHeartbeatRequest{GroupId: g.cfg.Group, MemberId: memberID, MemberEpoch: e,
				InstanceId: g.cfg.InstanceID, ClientId: g.cfg.ClientID})
			return err
		})
		g.mu.Lock()
		g.mu.epoch, g.mu.target = 0, nil
		g.mu.Unlock()
		g.hbMu.Unlock()
		if err != nil && !errors.Is(err, ErrUnknownMemberID) && !errors.Is(err, ErrFencedMemberEpoch) {
			errs = append(errs, fmt.Errorf("leaving the group: %w", err))
		}
	}
	return parts, errors.Join(errs...)
}
