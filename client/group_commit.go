package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// positions returns the positions to commit for parts: after the records
// Poll returned (all) or only those of Polls before the latest one (the
// processed ones), leaving out partitions whose position is committed
// already.
func (g *GroupConsumer) positions(parts []TopicPartition, all bool) map[TopicPartition]offsetEpoch {
	g.mu.Lock()
	defer g.mu.Unlock()
	from := g.mu.processed
	if all {
		from = g.mu.returned
	}
	out := map[TopicPartition]offsetEpoch{}
	for _, tp := range parts {
		oe, ok := from[tp]
		if !ok {
			continue
		}
		if c, ok := g.mu.committed[tp]; ok && c == oe.offset {
			continue
		}
		out[tp] = oe
	}
	return out
}

// ownedParts lists the owned partitions.
func (g *GroupConsumer) ownedParts() []TopicPartition {
	g.mu.Lock()
	defer g.mu.Unlock()
	return sortedParts(g.mu.owned)
}

// autoCommit commits the processed positions of the owned partitions.
func (g *GroupConsumer) autoCommit(ctx context.Context) error {
	return g.commitPositions(ctx, g.positions(g.ownedParts(), false))
}

// commitPositions commits positions as the member, with its current epoch:
// a STALE_MEMBER_EPOCH answer heartbeats for the new epoch and commits
// again; a coordinator that moved is found again.
func (g *GroupConsumer) commitPositions(ctx context.Context, pos map[TopicPartition]offsetEpoch) error {
	if len(pos) == 0 {
		return nil
	}
	tps := make([]TopicPartition, 0, len(pos))
	for tp := range pos {
		tps = append(tps, tp)
	}
	sortTopicPartitions(tps, func(tp TopicPartition) TopicPartition { return tp })
	var topics []*pb.OffsetCommitTopic
	for _, tp := range tps {
		if len(topics) == 0 || topics[len(topics)-1].Topic != tp.Topic {
			topics = append(topics, &pb.OffsetCommitTopic{Topic: tp.Topic})
		}
		t := topics[len(topics)-1]
		t.Partitions = append(t.Partitions, &pb.OffsetCommitPartition{Partition: tp.Partition, Offset: pos[tp].offset, LeaderEpoch: pos[tp].epoch})
	}
	for attempt := 0; ; attempt++ {
		g.mu.Lock()
		memberID, epoch := g.mu.memberID, g.mu.epoch
		g.mu.Unlock()
		if memberID == "" || epoch <= 0 {
			return &Error{Code: pb.ErrorCode_UNKNOWN_MEMBER_ID,
				Message: fmt.Sprintf("not a member of group %q right now (joining, or left): nothing can be committed", g.cfg.Group)}
		}
		err := g.router.do(ctx, func(ctx context.Context, gs pb.GroupServiceClient) error {
			_, err := gs.OffsetCommit(ctx, &pb.OffsetCommitRequest{GroupId: g.cfg.Group, MemberId: memberID, MemberEpoch: epoch, Topics: topics})
			return err
		})
		switch {
		case err == nil:
			g.mu.Lock()
			for tp, oe := range pos {
				g.mu.committed[tp] = oe.offset
			}
			g.mu.Unlock()
			return nil
		case errors.Is(err, ErrStaleMemberEpoch) && attempt < 3:
			if err := g.refreshEpoch(ctx); err != nil {
				return err
			}
		default:
			if errors.Is(err, ErrUnknownMemberID) || errors.Is(err, ErrFencedMemberEpoch) {
				g.kick() // the heartbeat finds out and joins again
			}
			return err
		}
	}
}

// CommitSync commits, for every partition the member owns, the position
// after the last record Poll returned, and waits for the coordinator's
// answer. Nothing returned since the last commit: nothing is sent.
func (g *GroupConsumer) CommitSync(ctx context.Context) error {
	if err := g.closedErr(); err != nil {
		return err
	}
	return g.commitPositions(ctx, g.positions(g.ownedParts(), true))
}

// CommitAsync commits what CommitSync would, in the background; cb (may be
// nil) gets the offsets and the outcome. Commits complete in call order,
// and Close waits for them.
func (g *GroupConsumer) CommitAsync(cb func(offsets map[TopicPartition]int64, err error)) {
	if err := g.closedErr(); err != nil {
		if cb != nil {
			cb(nil, err)
		}
		return
	}
	g.async.add(g.positions(g.ownedParts(), true), cb)
}

// Commit commits offsets (the next offset to read, per partition) for
// partitions the member owns; a partition it does not own is refused
// (PARTITION_NOT_OWNED).
func (g *GroupConsumer) Commit(ctx context.Context, offsets map[TopicPartition]int64) error {
	if err := g.closedErr(); err != nil {
		return err
	}
	pos := make(map[TopicPartition]offsetEpoch, len(offsets))
	for tp, off := range offsets {
		if off < 0 || tp.Topic == "" || tp.Partition < 0 {
			return &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: fmt.Sprintf("commit offset %d of %s: want a partition and an offset >= 0", off, tp.name())}
		}
		pos[tp] = offsetEpoch{off, -1}
	}
	return g.commitPositions(ctx, pos)
}

func (g *GroupConsumer) closedErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stoppedLocked()
}

// asyncCommits runs CommitAsync's commits one at a time, in call order, on
// a goroutine that lives while there is work.
type asyncCommits struct {
	g    *GroupConsumer
	mu   sync.Mutex
	cond *sync.Cond
	jobs []asyncCommit
	busy bool
}

type asyncCommit struct {
	pos map[TopicPartition]offsetEpoch
	cb  func(map[TopicPartition]int64, error)
}

func (a *asyncCommits) init(g *GroupConsumer) {
	a.g = g
	a.cond = sync.NewCond(&a.mu)
}

func (a *asyncCommits) add(pos map[TopicPartition]offsetEpoch, cb func(map[TopicPartition]int64, error)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.jobs = append(a.jobs, asyncCommit{pos, cb})
	if !a.busy {
		a.busy = true
		go a.work()
	}
}

func (a *asyncCommits) work() {
	for {
		a.mu.Lock()
		if len(a.jobs) == 0 {
			a.busy = false
			a.cond.Broadcast()
			a.mu.Unlock()
			return
		}
		j := a.jobs[0]
		a.jobs = a.jobs[1:]
		a.mu.Unlock()
		err := a.g.commitPositions(context.Background(), j.pos)
		if j.cb != nil {
			offs := make(map[TopicPartition]int64, len(j.pos))
			for tp, oe := range j.pos {
				offs[tp] = oe.offset
			}
			j.cb(offs, err)
		}
	}
}

// drain waits until every queued commit is done.
func (a *asyncCommits) drain() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.busy {
		a.cond.Wait()
	}
}
