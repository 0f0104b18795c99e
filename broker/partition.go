package broker

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stratalog/strata/storage"
)

// PartitionState is a partition's replication state as the metadata image
// has it (raftfsm.Partition plus its identity).
type PartitionState struct {
	TopicID        [16]byte
	Topic          string
	Index          int32
	Replicas       []int32
	ISR            []int32
	Leader         int32
	LeaderEpoch    int32
	PartitionEpoch int32
}

// PartitionConfig are the replication settings of one partition.
type PartitionConfig struct {
	// MinInsyncReplicas is min.insync.replicas: acks=all needs an ISR this large.
	MinInsyncReplicas int
	// ReplicaLagTimeMax is replica.lag.time.max.ms: a follower that has not
	// caught up for this long leaves the ISR.
	ReplicaLagTimeMax time.Duration
}

// DefaultPartitionConfig is Kafka's default.
func DefaultPartitionConfig() PartitionConfig {
	return PartitionConfig{MinInsyncReplicas: 1, ReplicaLagTimeMax: 30 * time.Second}
}

// ISRProposal is an ISR change the leader asks the active controller for
// (AlterPartition), guarded by the epochs it was computed under.
type ISRProposal struct {
	TopicID        [16]byte
	Partition      int32
	LeaderEpoch    int32
	PartitionEpoch int32
	NewISR         []int32
}

// followerState is what the leader knows of one follower replica.
type followerState struct {
	leo                 int64     // -1 until its first fetch under this leader epoch
	lastCaughtUp        time.Time // last time its fetch reached the leader's end
	lastFetch           time.Time
	lastFetchLeaderLEO  int64 // the leader's end offset at its previous fetch
	brokerEpochAtFetch  int64
	fetchedThisLeadship bool
}

// Partition is this broker's replica of one partition: a leader tracks its
// followers' log end offsets, moves the high watermark and proposes ISR
// changes; a follower applies what its fetcher brings and the leader's high
// watermark.
//
// Concurrency: state changes (becoming leader or follower, follower fetch
// bookkeeping, ISR decisions) take the write lock; appends and reads take
// the read lock, so the ISR and epochs they check cannot change under them.
// Appends write to the page cache under the read lock, as Kafka's leader
// does under its leaderIsrUpdateLock; the log's own writer lock orders them,
// and an fsync the flush policy calls for runs after the lock is released.
type Partition struct {
	broker int32
	log    *storage.Log
	now    func() time.Time
	// stats are the topic's metrics counters (nil: not counted); set
	// before the partition is published.
	stats *topicStats
	// published, if set, is called after every leader append (a produce
	// request's or the group coordinator's), with the partition unlocked:
	// the broker wakes the fetches waiting for data there. With followers
	// in the ISR it runs once the records are readable and before any
	// fsync; alone in the ISR, once the high watermark has moved. Set
	// before the partition is published.
	published func()

	mu struct {
		sync.RWMutex
		cfg      PartitionConfig
		state    PartitionState
		known    bool // a state has been applied
		leader   bool
		leaderAt int64 // the log end offset when this leader epoch began
		// followers, on the leader: every other replica.
		followers map[int32]*followerState
		// pending is the ISR of an AlterPartition in flight (nil if none);
		// until it is answered the high watermark uses the larger of the two.
		pending []int32
	}
}

// NewPartition wraps this broker's log of a partition.
func NewPartition(broker int32, log *storage.Log, cfg PartitionConfig, now func() time.Time) *Partition {
	if now == nil {
		now = time.Now
	}
	p := &Partition{broker: broker, log: log, now: now}
	p.mu.cfg = cfg
	return p
}

// Log is the partition's log.
func (p *Partition) Log() *storage.Log { return p.log }

// State returns the partition's current replication state.
func (p *Partition) State() (PartitionState, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.mu.state, p.mu.leader
}

// SetConfig changes min.insync.replicas or replica.lag.time.max.ms.
func (p *Partition) SetConfig(cfg PartitionConfig) {
	p.mu.Lock()
	p.mu.cfg = cfg
	p.mu.Unlock()
}

// checkNewStateLocked refuses a state older than the current one.
func (p *Partition) checkNewStateLocked(st PartitionState) error {
	if p.mu.known && (st.LeaderEpoch < p.mu.state.LeaderEpoch ||
		(st.LeaderEpoch == p.mu.state.LeaderEpoch && st.PartitionEpoch < p.mu.state.PartitionEpoch)) {
		return fmt.Errorf("%w: leader epoch %d partition epoch %d, have %d/%d", ErrStaleState,
			st.LeaderEpoch, st.PartitionEpoch, p.mu.state.LeaderEpoch, p.mu.state.PartitionEpoch)
	}
	return nil
}

// MakeLeader applies a state in which this broker leads. A new leader epoch
// starts at the log end offset (recorded in the leader-epoch cache) and
// resets what is known of the followers; the same epoch with a newer
// partition epoch (an ISR change) keeps it. It returns whether the broker
// just became leader of a new epoch.
func (p *Partition) MakeLeader(st PartitionState) (bool, error) {
	if st.Leader != p.broker {
		return false, fmt.Errorf("broker: MakeLeader for leader %d on broker %d", st.Leader, p.broker)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkNewStateLocked(st); err != nil {
		return false, err
	}
	newEpoch := !p.mu.leader || !p.mu.known || st.LeaderEpoch != p.mu.state.LeaderEpoch
	if !newEpoch && st.PartitionEpoch == p.mu.state.PartitionEpoch {
		// The same state again (every image re-applies every partition): an
		// ISR change in flight stays in flight. Dropping it would let the HW
		// pass a member the controller may be committing right now.
		p.maybeIncrementHWLocked()
		return false, nil
	}
	p.mu.state, p.mu.known, p.mu.leader = cloneState(st), true, true
	p.mu.pending = nil
	if newEpoch {
		leo := p.log.LogEndOffset()
		if err := p.log.LeaderEpochs().Assign(st.LeaderEpoch, leo); err != nil {
			return false, err
		}
		p.mu.leaderAt = leo
		now := p.now()
		p.mu.followers = map[int32]*followerState{}
		for _, r := range st.Replicas {
			if r == p.broker {
				continue
			}
			f := &followerState{leo: -1, lastFetchLeaderLEO: -1}
			if slices.Contains(st.ISR, r) {
				f.lastCaughtUp = now // an ISR member gets a full lag window under the new leader
			}
			p.mu.followers[r] = f
		}
	} else {
		// Replicas may have changed (reassignment): add or drop followers.
		for _, r := range st.Replicas {
			if _, ok := p.mu.followers[r]; !ok && r != p.broker {
				p.mu.followers[r] = &followerState{leo: -1, lastFetchLeaderLEO: -1}
			}
		}
		for r := range p.mu.followers {
			if !slices.Contains(st.Replicas, r) {
				delete(p.mu.followers, r)
			}
		}
	}
	p.maybeIncrementHWLocked()
	return newEpoch, nil
}

// MakeFollower applies a state in which another broker (or none) leads.
// It returns whether the leader or leader epoch changed, in which case the
// caller's fetcher must truncate (OffsetForLeaderEpoch) before fetching.
func (p *Partition) MakeFollower(st PartitionState) (bool, error) {
	if st.Leader == p.broker {
		return false, fmt.Errorf("broker: MakeFollower with this broker %d as leader", p.broker)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkNewStateLocked(st); err != nil {
		return false, err
	}
	changed := p.mu.leader || !p.mu.known || st.Leader != p.mu.state.Leader || st.LeaderEpoch != p.mu.state.LeaderEpoch
	p.mu.state, p.mu.known, p.mu.leader = cloneState(st), true, false
	p.mu.followers, p.mu.pending = nil, nil
	return changed, nil
}

func cloneState(st PartitionState) PartitionState {
	st.Replicas = slices.Clone(st.Replicas)
	st.ISR = slices.Clone(st.ISR)
	return st
}

// checkLeaderLocked verifies this replica leads under the caller's view of
// the leader epoch (-1: the caller does not know it).
func (p *Partition) checkLeaderLocked(currentLeaderEpoch int32) error {
	if !p.mu.leader {
		return fmt.Errorf("%w: %s-%d led by %d", ErrNotLeaderOrFollower, p.mu.state.Topic, p.mu.state.Index, p.mu.state.Leader)
	}
	return p.checkEpochLocked(currentLeaderEpoch)
}

func (p *Partition) checkEpochLocked(currentLeaderEpoch int32) error {
	switch {
	case currentLeaderEpoch < 0:
		return nil
	case currentLeaderEpoch < p.mu.state.LeaderEpoch:
		return fmt.Errorf("%w: request has %d, current is %d", ErrFencedLeaderEpoch, currentLeaderEpoch, p.mu.state.LeaderEpoch)
	case currentLeaderEpoch > p.mu.state.LeaderEpoch:
		return fmt.Errorf("%w: request has %d, this broker knows %d", ErrUnknownLeaderEpoch, currentLeaderEpoch, p.mu.state.LeaderEpoch)
	}
	return nil
}

// AppendAsLeader appends a produce request's batches with this leader's
// epoch. acks is 0, 1 or -1 (all); with -1 an ISR smaller than
// min.insync.replicas refuses the append (ErrNotEnoughReplicas) and nothing
// is written. The caller waits for HighWatermark >= info.LastOffset+1 (see
// CheckAcksAll) before answering acks=all.
//
// An idempotent producer's batch that is ahead of its sequence waits up to
// sequenceWait for the earlier batches (see storage.Log.ProducerAppendWait)
// before it fails.
func (p *Partition) AppendAsLeader(batches []byte, acks int) (storage.AppendInfo, error) {
	return p.appendInSequence(batches, acks, -1)
}

// AppendAsLeaderInEpoch is AppendAsLeader only while this broker leads the
// partition in leaderEpoch (the group coordinator's writes: a coordinator
// of an older epoch must never write).
func (p *Partition) AppendAsLeaderInEpoch(batches []byte, acks int, leaderEpoch int32) (storage.AppendInfo, error) {
	return p.appendInSequence(batches, acks, leaderEpoch)
}

// appendInSequence is appendAsLeader that lets a batch ahead of its
// producer's sequence wait for the ones before it.
func (p *Partition) appendInSequence(batches []byte, acks int, leaderEpoch int32) (storage.AppendInfo, error) {
	info, err := p.appendAsLeader(batches, acks, leaderEpoch)
	if !sequenceGap(err) {
		return info, err
	}
	deadline := time.Now().Add(sequenceWait)
	for {
		wake := p.log.ProducerAppendWait()
		if info, err = p.appendAsLeader(batches, acks, leaderEpoch); !sequenceGap(err) {
			return info, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return info, err
		}
		t := time.NewTimer(left)
		select {
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// sequenceWait bounds how long an idempotent batch ahead of its producer's
// sequence waits for the batches before it.
const sequenceWait = 300 * time.Millisecond

func sequenceGap(err error) bool {
	return errors.Is(err, storage.ErrOutOfOrderSequence) || errors.Is(err, storage.ErrUnknownProducerID)
}

func (p *Partition) appendAsLeader(batches []byte, acks int, leaderEpoch int32) (storage.AppendInfo, error) {
	if acks != 0 && acks != 1 && acks != -1 {
		return storage.AppendInfo{}, fmt.Errorf("%w: %d", ErrInvalidRequiredAcks, acks)
	}
	p.mu.RLock()
	if err := p.checkLeaderLocked(leaderEpoch); err != nil {
		p.mu.RUnlock()
		return storage.AppendInfo{}, err
	}
	if acks == -1 && len(p.mu.state.ISR) < p.mu.cfg.MinInsyncReplicas {
		n, min := len(p.mu.state.ISR), p.mu.cfg.MinInsyncReplicas
		p.mu.RUnlock()
		return storage.AppendInfo{}, fmt.Errorf("%w: ISR has %d, min.insync.replicas is %d", ErrNotEnoughReplicas, n, min)
	}
	info, flushDue, err := p.log.AppendAsLeaderUnflushed(batches, p.mu.state.LeaderEpoch)
	single := len(p.mu.state.ISR) == 1 && len(p.mu.pending) == 0
	p.mu.RUnlock()
	if err != nil {
		return info, err
	}
	if !single {
		// The followers' long polls are woken before any fsync, which runs
		// with the partition unlocked: they fetch, append and fsync the
		// records while this one does (the HW still needs their next
		// fetch, and the request's answer this fsync).
		p.notifyPublished()
	}
	if flushDue {
		if err := p.log.Flush(); err != nil {
			return info, err
		}
	}
	if single {
		// Alone in the ISR: the high watermark follows the log end at once,
		// and readers (consumers, a follower out of the ISR) are woken then.
		p.mu.Lock()
		p.maybeIncrementHWLocked()
		p.mu.Unlock()
		p.notifyPublished()
	}
	return info, nil
}

func (p *Partition) notifyPublished() {
	if p.published != nil {
		p.published()
	}
}

// CheckAcksAll reports whether records up to requiredOffset (exclusive) are
// committed, i.e. the high watermark has reached it. It fails with
// ErrNotEnoughReplicasAfterAppend when the ISR shrank below
// min.insync.replicas meanwhile, and with ErrNotLeaderOrFollower when this
// broker lost leadership (the records may or may not survive).
func (p *Partition) CheckAcksAll(requiredOffset int64) (bool, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.mu.leader {
		return false, fmt.Errorf("%w: leadership moved before the records were replicated", ErrNotLeaderOrFollower)
	}
	if p.log.HighWatermark() >= requiredOffset {
		if len(p.mu.state.ISR) < p.mu.cfg.MinInsyncReplicas {
			return false, fmt.Errorf("%w: ISR has %d, min.insync.replicas is %d", ErrNotEnoughReplicasAfterAppend, len(p.mu.state.ISR), p.mu.cfg.MinInsyncReplicas)
		}
		return true, nil
	}
	return false, nil
}

// HighWatermark is the partition's high watermark.
func (p *Partition) HighWatermark() int64 { return p.log.HighWatermark() }

// maximalISRLocked is the ISR the high watermark waits for: the current one
// joined with an in-flight proposal's.
func (p *Partition) maximalISRLocked() []int32 {
	isr := p.mu.state.ISR
	for _, r := range p.mu.pending {
		if !slices.Contains(isr, r) {
			isr = append(slices.Clone(isr), r)
		}
	}
	return isr
}

// maybeIncrementHWLocked sets the high watermark to the smallest log end
// offset in the (maximal) ISR; it never moves backwards. It reports whether
// it moved.
func (p *Partition) maybeIncrementHWLocked() bool {
	if !p.mu.leader {
		return false
	}
	hw := p.log.LogEndOffset()
	for _, r := range p.maximalISRLocked() {
		if r == p.broker {
			continue
		}
		f := p.mu.followers[r]
		if f == nil || f.leo < 0 {
			return false // a member we have not heard from under this epoch
		}
		hw = min(hw, f.leo)
	}
	old := p.log.HighWatermark()
	if hw <= old {
		return false
	}
	p.log.SetHighWatermark(hw)
	return p.log.HighWatermark() > old
}

// UpdateFollowerFetch records that follower fetched from fetchOffset (its log
// end offset) at now, under brokerEpoch. It returns whether the high
// watermark moved (the caller then completes delayed produces and fetches)
// and, when the follower has caught up and is not in the ISR, a proposal to
// add it (the caller sends it with AlterPartition, then ProposalDone).
func (p *Partition) UpdateFollowerFetch(follower int32, fetchOffset int64, brokerEpoch int64) (bool, *ISRProposal, error) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.mu.leader {
		return false, nil, fmt.Errorf("%w: follower fetch on a non-leader", ErrNotLeaderOrFollower)
	}
	f := p.mu.followers[follower]
	if f == nil {
		return false, nil, fmt.Errorf("%w: broker %d is not a replica of %s-%d", ErrNotLeaderOrFollower, follower, p.mu.state.Topic, p.mu.state.Index)
	}
	leo := p.log.LogEndOffset()
	switch {
	case fetchOffset >= leo:
		f.lastCaughtUp = now
	case f.lastFetchLeaderLEO >= 0 && fetchOffset >= f.lastFetchLeaderLEO && f.lastFetch.After(f.lastCaughtUp):
		// It has reached where we were at its previous fetch.
		f.lastCaughtUp = f.lastFetch
	}
	f.leo, f.lastFetch, f.lastFetchLeaderLEO, f.brokerEpochAtFetch, f.fetchedThisLeadship = fetchOffset, now, leo, brokerEpoch, true
	moved := p.maybeIncrementHWLocked()
	var prop *ISRProposal
	if !slices.Contains(p.mu.state.ISR, follower) && p.mu.pending == nil &&
		fetchOffset >= p.log.HighWatermark() && fetchOffset >= p.mu.leaderAt {
		prop = p.proposeLocked(append(slices.Clone(p.mu.state.ISR), follower))
	}
	return moved, prop, nil
}

// MaybeShrinkISR proposes removing the ISR members that have not caught up
// for replica.lag.time.max.ms (never the leader, never the last member).
func (p *Partition) MaybeShrinkISR() *ISRProposal {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.mu.leader || p.mu.pending != nil {
		return nil
	}
	var keep []int32
	for _, r := range p.mu.state.ISR {
		if r == p.broker {
			keep = append(keep, r)
			continue
		}
		if f := p.mu.followers[r]; f != nil && now.Sub(f.lastCaughtUp) <= p.mu.cfg.ReplicaLagTimeMax {
			keep = append(keep, r)
		}
	}
	if len(keep) == len(p.mu.state.ISR) || len(keep) == 0 {
		return nil
	}
	return p.proposeLocked(keep)
}

// proposeLocked records newISR as in flight and returns the proposal.
func (p *Partition) proposeLocked(newISR []int32) *ISRProposal {
	p.mu.pending = newISR
	return &ISRProposal{
		TopicID: p.mu.state.TopicID, Partition: p.mu.state.Index,
		LeaderEpoch: p.mu.state.LeaderEpoch, PartitionEpoch: p.mu.state.PartitionEpoch,
		NewISR: slices.Clone(newISR),
	}
}

// ProposalDone ends the in-flight proposal: with the partition's new state
// when the controller accepted it (or answered with its current state), or
// with nil when it failed and may be proposed again.
func (p *Partition) ProposalDone(newState *PartitionState) error {
	if newState == nil {
		p.mu.Lock()
		p.mu.pending = nil
		p.mu.Unlock()
		return nil
	}
	if newState.Leader != p.broker {
		_, err := p.MakeFollower(*newState)
		return err
	}
	p.mu.Lock()
	if p.mu.leader && p.mu.known && newState.LeaderEpoch == p.mu.state.LeaderEpoch &&
		newState.PartitionEpoch == p.mu.state.PartitionEpoch {
		// Refused with the state we have: nothing was committed.
		p.mu.pending = nil
		p.maybeIncrementHWLocked()
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	_, err := p.MakeLeader(*newState) // a newer state clears the proposal with it
	return err
}

// FollowerBrokerEpoch is the broker epoch a follower last fetched with (for
// the ISR members of an AlterPartition), -1 if unknown.
func (p *Partition) FollowerBrokerEpoch(follower int32) int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if f := p.mu.followers[follower]; f != nil && f.fetchedThisLeadship {
		return f.brokerEpochAtFetch
	}
	return -1
}

// FetchResult is what a fetch of one partition returns.
type FetchResult struct {
	Region         storage.Region
	HighWatermark  int64
	LogStartOffset int64
	LogEndOffset   int64
}

// ReadForFetch reads from fetchOffset: a consumer (replica < 0) up to the
// high watermark, a follower up to the log end (and its fetch is recorded:
// see UpdateFollowerFetch, which the caller runs first). currentLeaderEpoch
// (-1 unknown) fences requests from stale or future leaders.
func (p *Partition) ReadForFetch(fetchOffset int64, maxBytes int, currentLeaderEpoch int32, replica int32) (FetchResult, error) {
	p.mu.RLock()
	err := p.checkLeaderLocked(currentLeaderEpoch)
	p.mu.RUnlock()
	if err != nil {
		return FetchResult{}, err
	}
	res := FetchResult{HighWatermark: p.log.HighWatermark(), LogStartOffset: p.log.LogStartOffset(), LogEndOffset: p.log.LogEndOffset()}
	limit := res.LogEndOffset
	if replica < 0 {
		limit = res.HighWatermark
	}
	if fetchOffset > limit && fetchOffset <= res.LogEndOffset {
		return res, nil // between the HW and the log end: nothing for a consumer yet
	}
	res.Region, err = p.log.ReadUpTo(fetchOffset, maxBytes, limit)
	return res, err
}

// OffsetForLeaderEpoch answers a follower's truncation question: the largest
// epoch <= epoch this leader knows and the offset where it ended.
func (p *Partition) OffsetForLeaderEpoch(currentLeaderEpoch, epoch int32) (int32, int64, error) {
	p.mu.RLock()
	err := p.checkLeaderLocked(currentLeaderEpoch)
	p.mu.RUnlock()
	if err != nil {
		return -1, -1, err
	}
	e, end := p.log.LeaderEpochs().EndOffsetFor(epoch, p.log.LogEndOffset())
	return e, end, nil
}

// TruncateForLeaderEpoch is the follower's side: given the leader's answer
// (epoch, endOffset) for this replica's latest epoch, it truncates to where
// the two logs agree — never simply to its own high watermark. It returns the
// new log end offset.
func (p *Partition) TruncateForLeaderEpoch(leaderEpoch int32, leaderEndOffset int64) (int64, error) {
	leo := p.log.LogEndOffset()
	if leaderEpoch < 0 || leaderEndOffset < 0 {
		// The leader has no epoch at all (an empty log): nothing to compare;
		// the fetch that follows gets OFFSET_OUT_OF_RANGE if our log is
		// ahead of it, and the fetcher resets to the leader's log.
		return leo, nil
	}
	// Where our own log ends for the epoch the leader answered with; the
	// logs agree up to the smaller of the two ends.
	_, ourEnd := p.log.LeaderEpochs().EndOffsetFor(leaderEpoch, leo)
	if ourEnd < 0 {
		ourEnd = leo
	}
	target := min(leaderEndOffset, ourEnd, leo)
	if target >= leo {
		return leo, nil
	}
	return p.log.TruncateTo(target)
}

// LatestEpoch is the latest leader epoch in this replica's log (-1 if none),
// which a follower asks the leader about before fetching.
func (p *Partition) LatestEpoch() int32 {
	if e, ok := p.log.LeaderEpochs().Latest(); ok {
		return e.Epoch
	}
	return -1
}

// AppendAsFollower appends batches fetched from the leader and applies the
// leader's high watermark (clamped to this replica's log end).
func (p *Partition) AppendAsFollower(batches []byte, leaderHW int64) (storage.AppendInfo, error) {
	p.mu.RLock()
	leader := p.mu.leader
	p.mu.RUnlock()
	if leader {
		return storage.AppendInfo{}, fmt.Errorf("%w: follower append on the leader", ErrNotLeaderOrFollower)
	}
	var info storage.AppendInfo
	if len(batches) > 0 {
		var err error
		if info, err = p.log.AppendAsFollower(batches); err != nil {
			return info, err
		}
		p.stats.countReplicated(info)
	}
	p.log.SetHighWatermark(min(leaderHW, p.log.LogEndOffset()))
	return info, nil
}
