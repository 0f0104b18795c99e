package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// AutoOffsetReset values: where a partition without a valid position starts
// (Kafka's auto.offset.reset).
const (
	// OffsetResetEarliest starts at the log start offset.
	OffsetResetEarliest = "earliest"
	// OffsetResetLatest starts at the high watermark: new records only.
	OffsetResetLatest = "latest"
	// OffsetResetNone makes Poll return an OFFSET_OUT_OF_RANGE *Error for the
	// partition until the caller Seeks it.
	OffsetResetNone = "none"
)

// ErrConsumerClosed is returned by a Consumer's methods after Close.
var ErrConsumerClosed = errors.New("client: consumer closed")

// ConsumerConfig configures a Consumer; zero values take Kafka's defaults.
type ConsumerConfig struct {
	// AutoOffsetReset is where a partition starts when it has no position
	// (just assigned, never sought) or its position fell out of the log
	// (OFFSET_OUT_OF_RANGE): OffsetResetEarliest, OffsetResetLatest (the
	// default) or OffsetResetNone.
	AutoOffsetReset string
	// FetchMinBytes: a fetch waits until this many bytes are available over
	// its partitions (fetch.min.bytes; default 1).
	FetchMinBytes int32
	// FetchMaxWait: ... or until this long has passed (fetch.max.wait.ms;
	// default 500 ms).
	FetchMaxWait time.Duration
	// FetchMaxBytes caps one fetch's answer (fetch.max.bytes; default 50
	// MiB). The first batch is answered whole even if larger, so a consumer
	// always makes progress.
	FetchMaxBytes int32
	// PartitionMaxBytes caps one partition's share of a fetch
	// (max.partition.fetch.bytes; default 1 MiB).
	PartitionMaxBytes int32
	// RequestTimeout bounds one RPC beyond FetchMaxWait (default: the
	// Client's RequestTimeout).
	RequestTimeout time.Duration
}

func (c ConsumerConfig) withDefaults(cl *Client) (ConsumerConfig, error) {
	switch c.AutoOffsetReset {
	case "":
		c.AutoOffsetReset = OffsetResetLatest
	case OffsetResetEarliest, OffsetResetLatest, OffsetResetNone:
	default:
		return c, &Error{Code: pb.ErrorCode_INVALID_REQUEST,
			Message: fmt.Sprintf("AutoOffsetReset %q: want earliest, latest or none", c.AutoOffsetReset)}
	}
	if c.FetchMinBytes < 0 || c.FetchMaxWait < 0 || c.FetchMaxBytes < 0 || c.PartitionMaxBytes < 0 || c.RequestTimeout < 0 {
		return c, &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: "negative fetch size or duration in ConsumerConfig"}
	}
	if c.FetchMinBytes == 0 {
		c.FetchMinBytes = 1
	}
	if c.FetchMaxWait == 0 {
		c.FetchMaxWait = 500 * time.Millisecond
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = 50 << 20
	}
	if c.PartitionMaxBytes == 0 {
		c.PartitionMaxBytes = 1 << 20
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = cl.cfg.RequestTimeout
	}
	return c, nil
}

// Consumer reads records from the partitions assigned to it, in offset order
// per partition, each record once (until a Seek moves the position back).
//
// It keeps one fetch session per leader broker: a goroutine that sends one
// Fetch for every assigned partition that broker leads, decodes the raw
// batches, and issues the next Fetch while the caller works on what Poll
// returned (one answer is buffered per broker, so memory stays bounded by
// about twice FetchMaxBytes per broker). A fetch answered with
// NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH or a
// transport error sends its partitions to the new leader after a metadata
// refresh, from the same position: no record is skipped or repeated.
//
// A Consumer reads only up to the high watermark: every record it returns
// is committed.
//
// Methods are safe for concurrent use, but records come in order only to
// one goroutine calling Poll at a time. Close it when done; it borrows the
// Client (closing the Consumer leaves the Client open).
type Consumer struct {
	cl  *Client
	cfg ConsumerConfig

	ctx    context.Context // cancelled by Close; every fetch session runs under it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  chan struct{} // one slot: a session has an answer or needs Poll's attention

	mu struct {
		sync.Mutex
		parts       map[TopicPartition]*consumerPart
		sessions    map[string]*fetchSession // by broker address
		needMeta    bool                     // a partition lost its leader: refresh before looking up
		lastRefresh time.Time                // refreshes are at least 100 ms apart
		closed      bool
	}

	fetches atomic.Int64 // Fetch requests sent (tests and benchmarks read it)
}

// consumerPart is one assigned partition's state, guarded by Consumer.mu.
//
// pos is the offset of the next record Poll returns; fetchPos is where the
// next fetch starts, ahead of pos by the answers not yet handed to Poll.
// gen counts changes of position made by the caller (Seek, Pause, resets):
// an answer fetched under an older gen is dropped.
type consumerPart struct {
	tp       TopicPartition
	pos      int64
	fetchPos int64
	gen      uint64
	paused   bool
	inflight bool // in a fetch right now
	// reset is a pending position: resetEarliest, resetLatest, or
	// resetNone (no reset pending). It is resolved by Poll with ListOffsets.
	reset int64
	err   error // a sticky error Poll returns until Seek (AutoOffsetReset none, corrupt data, ...)
	// errTold: a Poll returned err already. Until then Poll returns err
	// before any records, so records of other partitions never hide it.
	errTold bool

	leader      string // leader's address; "" unknown
	leaderEpoch int32
	hw          int64 // the last high watermark seen, -1 unknown
}

const (
	resetNone     = -3
	resetEarliest = -2 // ListOffsets' "earliest"
	resetLatest   = -1 // ListOffsets' "latest"
)

// NewConsumer returns a Consumer over cl with no partitions assigned.
func NewConsumer(cl *Client, cfg ConsumerConfig) (*Consumer, error) {
	cfg, err := cfg.withDefaults(cl)
	if err != nil {
		return nil, err
	}
	c := &Consumer{cl: cl, cfg: cfg, ready: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.parts = map[TopicPartition]*consumerPart{}
	c.mu.sessions = map[string]*fetchSession{}
	return c, nil
}

// Assign makes partitions the consumer's whole assignment (replacing the
// previous one; Assign() with none empties it). A partition kept from the
// previous assignment keeps its position; a new one starts per
// AutoOffsetReset unless Seek gives it a position before the next Poll.
func (c *Consumer) Assign(partitions ...TopicPartition) error {
	return c.assign(partitions, nil)
}

// assign is the seam for the group protocol: a group member assigns the
// partitions the coordinator gave it, starting at its committed offsets
// (positions; a missing entry falls back to AutoOffsetReset).
func (c *Consumer) assign(partitions []TopicPartition, positions map[TopicPartition]int64) error {
	for _, tp := range partitions {
		if tp.Topic == "" || tp.Partition < 0 {
			return &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: fmt.Sprintf("cannot assign %q partition %d", tp.Topic, tp.Partition)}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return ErrConsumerClosed
	}
	next := make(map[TopicPartition]*consumerPart, len(partitions))
	for _, tp := range partitions {
		p := c.mu.parts[tp]
		if p == nil {
			p = &consumerPart{tp: tp, pos: -1, fetchPos: -1, hw: -1, reset: c.defaultResetLocked()}
		}
		if off, ok := positions[tp]; ok {
			p.seekLocked(off)
			c.kickLocked(p)
		}
		next[tp] = p
	}
	c.mu.parts = next
	c.wakeLocked()
	return nil
}

// Assignment lists the assigned partitions.
func (c *Consumer) Assignment() []TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]TopicPartition, 0, len(c.mu.parts))
	for tp := range c.mu.parts {
		out = append(out, tp)
	}
	return out
}

func (c *Consumer) defaultResetLocked() int64 {
	switch c.cfg.AutoOffsetReset {
	case OffsetResetEarliest:
		return resetEarliest
	case OffsetResetLatest:
		return resetLatest
	}
	return resetNone
}

// seekLocked moves the position; answers fetched before are dropped.
func (p *consumerPart) seekLocked(off int64) {
	p.pos, p.fetchPos = off, off
	p.gen++
	p.reset = resetNone
	p.err, p.errTold = nil, false
}

// part returns the assigned partition's state or an error naming it.
func (c *Consumer) partLocked(tp TopicPartition) (*consumerPart, error) {
	if c.mu.closed {
		return nil, ErrConsumerClosed
	}
	p := c.mu.parts[tp]
	if p == nil {
		return nil, &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: fmt.Sprintf("%s is not assigned to this consumer: Assign it first", tpString(tp))}
	}
	return p, nil
}

// Seek sets the offset of the next record Poll returns for tp. An offset
// outside the log is found out by the next fetch, which then applies
// AutoOffsetReset.
func (c *Consumer) Seek(tp TopicPartition, offset int64) error {
	if offset < 0 {
		return &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: fmt.Sprintf("seek %s to negative offset %d", tpString(tp), offset)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.partLocked(tp)
	if err != nil {
		return err
	}
	p.seekLocked(offset)
	c.kickLocked(p)
	c.wakeLocked()
	return nil
}

// SeekToBeginning moves the partitions (all assigned ones if none are named)
// to their log start offsets. Like Kafka's, it is lazy: the offsets are
// looked up by the next Poll or Position.
func (c *Consumer) SeekToBeginning(partitions ...TopicPartition) error {
	return c.seekTo(resetEarliest, partitions)
}

// SeekToEnd moves the partitions (all assigned ones if none are named) to
// their high watermarks, so only records produced from then on are read.
// Lazy, like SeekToBeginning.
func (c *Consumer) SeekToEnd(partitions ...TopicPartition) error {
	return c.seekTo(resetLatest, partitions)
}

func (c *Consumer) seekTo(where int64, partitions []TopicPartition) error {
	return c.eachPartition(partitions, func(p *consumerPart) {
		p.seekLocked(-1)
		p.reset = where
	})
}

// eachPartition runs fn under the consumer's lock on each of partitions
// (every assigned one when none are named), then wakes Poll.
func (c *Consumer) eachPartition(partitions []TopicPartition, fn func(*consumerPart)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return ErrConsumerClosed
	}
	ps, err := c.partsLocked(partitions)
	if err != nil {
		return err
	}
	for _, p := range ps {
		fn(p)
	}
	c.wakeLocked()
	return nil
}

// partsLocked resolves partitions (every assigned one when empty).
func (c *Consumer) partsLocked(partitions []TopicPartition) ([]*consumerPart, error) {
	var out []*consumerPart
	if len(partitions) == 0 {
		for _, p := range c.mu.parts {
			out = append(out, p)
		}
		return out, nil
	}
	for _, tp := range partitions {
		p, err := c.partLocked(tp)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// SeekToTimestamp moves tp to the first offset whose record timestamp is at
// or after t (ListOffsets by timestamp, asked now). When no record is that
// recent the partition moves to its end, like SeekToEnd.
func (c *Consumer) SeekToTimestamp(ctx context.Context, tp TopicPartition, t time.Time) error {
	c.mu.Lock()
	_, err := c.partLocked(tp)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	off, err := c.listOffset(ctx, tp, max(t.UnixMilli(), 0))
	if err != nil {
		return err
	}
	if off < 0 {
		return c.SeekToEnd(tp)
	}
	return c.Seek(tp, off)
}

// Position is the offset of the next record Poll will return for tp,
// looking it up first if a reset (SeekToBeginning, SeekToEnd, a new
// assignment) is pending.
func (c *Consumer) Position(ctx context.Context, tp TopicPartition) (int64, error) {
	for {
		c.mu.Lock()
		p, err := c.partLocked(tp)
		if err != nil {
			c.mu.Unlock()
			return 0, err
		}
		pos, reset, gen, perr := p.pos, p.reset, p.gen, p.err
		c.mu.Unlock()
		if perr != nil {
			return 0, perr
		}
		if reset == resetNone {
			if pos < 0 {
				return 0, c.noPositionError(tp)
			}
			return pos, nil
		}
		if err := c.resolveReset(ctx, tp, reset, gen); err != nil {
			return 0, err
		}
	}
}

func (c *Consumer) noPositionError(tp TopicPartition) error {
	return &Error{Code: pb.ErrorCode_OFFSET_OUT_OF_RANGE,
		Message: fmt.Sprintf("%s has no position and AutoOffsetReset is none: Seek it first", tpString(tp))}
}

// Pause stops fetching the partitions (all assigned ones if none are named);
// Poll returns none of their records until Resume. Their positions stay.
func (c *Consumer) Pause(partitions ...TopicPartition) error {
	return c.setPaused(true, partitions)
}

// Resume undoes Pause.
func (c *Consumer) Resume(partitions ...TopicPartition) error {
	return c.setPaused(false, partitions)
}

func (c *Consumer) setPaused(paused bool, partitions []TopicPartition) error {
	return c.eachPartition(partitions, func(p *consumerPart) {
		if p.paused == paused {
			return
		}
		p.paused = paused
		if !paused {
			c.kickLocked(p)
		}
		if paused {
			// Drop what was fetched ahead: Resume fetches it again.
			p.fetchPos = p.pos
			p.gen++
		}
	})
}

// Paused lists the paused partitions.
func (c *Consumer) Paused() []TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []TopicPartition
	for tp, p := range c.mu.parts {
		if p.paused {
			out = append(out, tp)
		}
	}
	return out
}

// Close stops the fetch sessions and waits for them. It does not close the
// Client.
func (c *Consumer) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// Poll returns the next records: at least one, in offset order per
// partition, each exactly once across Polls. It waits until records arrive
// or ctx ends (then it returns ctx's error). It returns an error without
// records when a partition needs the caller: AutoOffsetReset none and an
// offset out of range (an *Error with OFFSET_OUT_OF_RANGE), or data that
// fails its checks (CORRUPT_MESSAGE). Such an error stops its partition
// until a Seek; Poll returns it as soon as it happens (records of other
// partitions wait for the next Poll), and again on every Poll once no
// partition that is neither stopped nor paused is left. Retriable errors
// (leader changes, a broker down) are handled inside.
//
// The records belong to the caller; the next fetch is already under way
// while the caller works on them.
func (c *Consumer) Poll(ctx context.Context) ([]Record, error) {
	for {
		retry, err := c.prepare(ctx)
		if err != nil {
			return nil, err
		}
		if err := c.untoldError(); err != nil {
			return nil, err
		}
		recs, err := c.drain()
		if len(recs) > 0 {
			return recs, nil
		}
		if err != nil {
			return nil, err
		}
		if err := c.wait(ctx, retry); err != nil {
			return nil, err
		}
	}
}

// wait blocks until a session signals, ctx ends, or (retry) 100 ms pass.
func (c *Consumer) wait(ctx context.Context, retry bool) error {
	var tick <-chan time.Time
	if retry {
		t := time.NewTimer(100 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-c.ready:
	case <-tick:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrConsumerClosed
	}
	return nil
}

// signal wakes a waiting Poll.
func (c *Consumer) signal() {
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// kickLocked ends the long poll of p's fetch session, if one is waiting,
// so that p's new position is fetched now rather than after FetchMaxWait.
func (c *Consumer) kickLocked(p *consumerPart) {
	if s := c.mu.sessions[p.leader]; s != nil {
		s.kickLocked()
	}
}

// wakeLocked wakes idle fetch sessions (their partitions may have changed).
func (c *Consumer) wakeLocked() {
	for _, s := range c.mu.sessions {
		s.wake()
	}
}

// prepare gets every partition ready to fetch: resolves pending resets
// (ListOffsets), finds leaders (metadata) and starts the fetch sessions. It
// reports retry when something must be tried again shortly (no leader yet,
// a lookup failed with a retriable error).
func (c *Consumer) prepare(ctx context.Context) (retry bool, err error) {
	type pending struct {
		tp    TopicPartition
		reset int64
		gen   uint64
	}
	var resets []pending
	needLeader := false
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return false, ErrConsumerClosed
	}
	for tp, p := range c.mu.parts {
		if p.err != nil {
			continue
		}
		if p.reset != resetNone {
			resets = append(resets, pending{tp, p.reset, p.gen})
		} else if p.pos < 0 {
			p.err = c.noPositionError(tp)
		}
		if p.leader == "" {
			needLeader = true
		}
	}
	refresh := c.mu.needMeta
	throttled := refresh && time.Since(c.mu.lastRefresh) < 100*time.Millisecond
	if refresh && !throttled {
		c.mu.lastRefresh = time.Now()
	}
	c.mu.Unlock()

	for _, r := range resets {
		if err := c.resolveReset(ctx, r.tp, r.reset, r.gen); err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			var e *Error
			if errors.As(err, &e) && !e.Retriable {
				c.mu.Lock()
				if p := c.mu.parts[r.tp]; p != nil && p.gen == r.gen {
					p.err = err
				}
				c.mu.Unlock()
				continue
			}
			retry = true
		}
	}
	if needLeader || refresh {
		if throttled {
			return true, nil
		}
		var m *Metadata
		if refresh {
			m, err = c.cl.RefreshMetadata(ctx)
		} else {
			m, err = c.cl.Metadata(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return true, nil
		}
		c.mu.Lock()
		c.mu.needMeta = false
		for tp, p := range c.mu.parts {
			if p.leader != "" {
				continue
			}
			b, epoch, err := m.Leader(tp.Topic, tp.Partition)
			if err != nil {
				// Not known yet (a new topic, an election under way): ask
				// again with fresh metadata.
				c.mu.needMeta, retry = true, true
				continue
			}
			p.leader, p.leaderEpoch = b.Addr, epoch
			if c.mu.sessions[b.Addr] == nil {
				c.startSessionLocked(b.Addr)
			}
			c.kickLocked(p)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.wakeLocked()
	c.mu.Unlock()
	return retry, nil
}

// resolveReset looks up the offset of a pending reset and applies it unless
// the caller moved the partition meanwhile (gen).
func (c *Consumer) resolveReset(ctx context.Context, tp TopicPartition, reset int64, gen uint64) error {
	off, err := c.listOffset(ctx, tp, reset)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.mu.parts[tp]; p != nil && p.gen == gen && p.reset == reset {
		p.seekLocked(off)
		c.kickLocked(p)
	}
	c.wakeLocked()
	return nil
}

// untoldError is a partition's sticky error that no Poll returned yet.
func (c *Consumer) untoldError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.mu.parts {
		if p.err != nil && !p.errTold {
			p.errTold = true
			return p.err
		}
	}
	return nil
}

// drain takes at most one answer from each fetch session and returns the
// records that continue their partitions' positions. With no records, and
// no partition left that could bring some, it returns a sticky partition
// error, if any.
func (c *Consumer) drain() ([]Record, error) {
	c.mu.Lock()
	sessions := make([]*fetchSession, 0, len(c.mu.sessions))
	for _, s := range c.mu.sessions {
		sessions = append(sessions, s)
	}
	c.mu.Unlock()
	var out []Record
	for _, s := range sessions {
		select {
		case res := <-s.out:
			out = c.accept(out, res)
		default:
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	// A told error comes again only when no partition can bring records:
	// Poll never spins on it while others are being read.
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for _, p := range c.mu.parts {
		switch {
		case p.err != nil:
			first = cmp.Or(first, p.err)
		case !p.paused:
			return nil, nil
		}
	}
	return nil, first
}

// accept appends the records of res whose partitions are still where the
// answer was fetched from, and moves their positions.
func (c *Consumer) accept(out []Record, res *fetchResult) []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range res.parts {
		d := &res.parts[i]
		p := c.mu.parts[d.tp]
		if p == nil || p.gen != d.gen || p.paused {
			continue // unassigned, sought or paused since: fetched again if needed
		}
		if p.pos != d.from {
			// An answer from a new leader overtook the old leader's last
			// one: fetch again from the position.
			p.fetchPos = p.pos
			p.gen++
			continue
		}
		out = append(out, d.records...)
		p.pos = d.next
	}
	return out
}

// listOffset asks tp's leader for an offset: resetEarliest, resetLatest or
// a timestamp (ms). -1 when no record has a timestamp that recent.
func (c *Consumer) listOffset(ctx context.Context, tp TopicPartition, ts int64) (int64, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			if _, err := c.cl.RefreshMetadata(ctx); err != nil && ctx.Err() != nil {
				return 0, ctx.Err()
			}
			select {
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		bc, _, err := c.cl.LeaderClient(ctx, tp.Topic, tp.Partition)
		if err != nil {
			lastErr = FromError(err)
			if retriableErr(lastErr) {
				continue
			}
			return 0, lastErr
		}
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		resp, err := bc.ListOffsets(rctx, &pb.ListOffsetsRequest{ReplicaId: -1, Topics: []*pb.ListOffsetsTopic{{
			Topic: tp.Topic, Partitions: []*pb.ListOffsetsPartition{{Partition: tp.Partition, CurrentLeaderEpoch: -1, TimestampMs: ts}}}}})
		cancel()
		if err != nil {
			lastErr = FromError(err)
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if retriableErr(lastErr) {
				continue
			}
			return 0, lastErr
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return 0, &Error{Code: pb.ErrorCode_UNKNOWN_SERVER_ERROR, Message: "ListOffsets answered another partition set than asked"}
		}
		r := resp.Topics[0].Partitions[0]
		if err := codeError(r.ErrorCode, r.ErrorMessage); err != nil {
			lastErr = err
			if retriableErr(err) {
				continue
			}
			return 0, err
		}
		return r.Offset, nil
	}
	return 0, lastErr
}

// tpString names a partition in messages: topic-partition.
func tpString(tp TopicPartition) string { return fmt.Sprintf("%s-%d", tp.Topic, tp.Partition) }

func retriableErr(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retriable
}
