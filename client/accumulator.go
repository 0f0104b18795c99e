package client

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/stratalog/strata/storage/record"
)

// topicPartition names one partition.
type topicPartition struct {
	topic     string
	partition int32
}

// batch is one RecordBatch being filled or delivered. Its records' futures
// point at it: they read base, appendTime and err once done is closed.
type batch struct {
	tp       topicPartition
	builder  *record.Builder
	count    int
	bytes    int // buffer memory reserved for its records
	created  time.Time
	deadline time.Time // created + DeliveryTimeout
	sealed   bool      // no more appends: full, or drained for sending
	built    record.Batch
	hold     builderHold // when builder may be reused (requests send built by reference)

	// In the partition's queue (see partQueue).
	state    uint8
	unit     int   // on a unit's first batch: the unit's batch count
	seq      int32 // idempotent: the first record's sequence; -1 unassigned
	attempts int   // failed sends that counted (see accumulator.failed)
	ackBase  int64 // stored at (stateAcked)
	ackTime  int64

	done       chan struct{}
	base       int64 // offset of its first record; -1 with acks=0
	appendTime int64 // the broker's LogAppendTime, -1 if CreateTime
	err        error

	// A batch the broker refused as too large is split: its records go to
	// children (in order; child i holds records first.. of the parent),
	// which are delivered in its place. The parent completes when its last
	// child does, and its futures read their child's outcome.
	children []*batch
	parent   *batch
	first    int
	left     int // children not completed yet
}

// leaf is the batch that holds record idx of b, and idx within it.
func (b *batch) leaf(idx int) (*batch, int) {
	for len(b.children) > 0 {
		c := b.children[0]
		for _, next := range b.children[1:] {
			if next.first > idx {
				break
			}
			c = next
		}
		b, idx = c, idx-c.first
	}
	return b, idx
}

// Batch states in a partition's queue.
const (
	stateUnsent   uint8 = iota // not sent, or sent and put back for regrouping
	stateInFlight              // in a request not answered yet
	stateResend                // failed: goes again, as the same unit
	stateAcked                 // stored; completes once the batches before it do
)

// partQueue is one partition's batches, oldest first; only the last one
// may be open for appends. batches[:sent] have been sent (in flight,
// failed and waiting for a resend, or acknowledged and waiting for the
// batches before them to complete): they are grouped into units, the
// batches of one request, which are resent as they were; batches[sent:]
// were not.
//
// Order: an idempotent producer keeps up to perPartition units in flight;
// each batch carries (producer id, epoch, sequence), so the leader appends
// them in order or refuses them (see storage/producerstate.go), and a
// resend of a stored unit is answered with its first offsets. After a
// failure the partition sends one unit at a time until the failed units
// are through. A partition whose sequence is broken (a unit failed for
// good, or the leader reports a sequence gap at the head) is reset: once
// nothing is in flight, its epoch goes up by one and every unacknowledged
// batch is sent again from sequence 0. Without idempotence (acks=0, or
// disabled) perPartition is 1: one request at a time, the old way.
type partQueue struct {
	batches  []*batch
	sent     int
	inFlight int // units in flight
	epoch    int16
	nextSeq  int32
	retrying bool // a unit failed: one unit in flight until the failed ones are through
	reset    bool // reset the sequence once nothing is in flight
	split    *batch
	retryAt  time.Time
	lastErr  error
	single   bool // send one batch per request (after MESSAGE_TOO_LARGE)
}

// accumulator holds every partition's queue. Appends build the batch in
// place: a record is encoded into the open batch's record.Builder once.
type accumulator struct {
	batchSize    int
	linger       time.Duration
	delivery     time.Duration
	opts         record.BatchOptions
	idempotent   bool
	perPartition int
	builders     *builderCache

	mu struct {
		sync.Mutex
		queues     map[topicPartition]*partQueue
		closed     bool
		producerID int64 // -1 until InitProducerId answered (idempotent only)
	}
}

func newAccumulator(batchSize int, linger, delivery time.Duration, opts record.BatchOptions) *accumulator {
	a := &accumulator{batchSize: batchSize, linger: linger, delivery: delivery, opts: opts, perPartition: 1,
		builders: newBuilderCache(batchSize, opts)}
	a.mu.queues = map[topicPartition]*partQueue{}
	a.mu.producerID = -1
	return a
}

// setIdempotent makes the accumulator stamp producer ids and sequences and
// keep up to perPartition units in flight per partition. Call before use.
func (a *accumulator) setIdempotent(perPartition int) {
	a.idempotent, a.perPartition = true, max(1, min(perPartition, maxInFlightIdempotent))
}

// maxInFlightIdempotent is the most units in flight per partition: the
// leader recognises a resend among the last 5 ranges of sequences it
// stored (storage.MaxInFlightIdempotent, Kafka's limit too).
const maxInFlightIdempotent = 5

// setProducerID sets the id InitProducerId answered.
func (a *accumulator) setProducerID(id int64) {
	a.mu.Lock()
	a.mu.producerID = id
	a.mu.Unlock()
}

// needsProducerID: idempotent and no producer id yet.
func (a *accumulator) needsProducerID() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.idempotent && a.mu.producerID < 0
}

// appendResult says what append did.
type appendResult struct {
	b        *batch
	index    int  // the record's index in b
	newBatch bool // append opened a new batch
	aborted  bool // abortOnNew was set and the record needed a new batch
}

// append adds one record to tp's open batch, or to a new one if there is
// none or the record does not fit (a record larger than BatchSize gets a
// batch of its own). With abortOnNew it appends nothing when that would
// open a batch (the sticky partitioner's cue, KIP-480). size is the
// record's reserved memory; err is ErrProducerClosed after close.
func (a *accumulator) append(tp topicPartition, now time.Time, ts int64, key, value []byte, headers []record.Header, size int, abortOnNew bool) (appendResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.closed {
		return appendResult{}, ErrProducerClosed
	}
	q := a.mu.queues[tp]
	if q == nil {
		q = &partQueue{}
		a.mu.queues[tp] = q
	}
	var b *batch
	if n := len(q.batches); n > 0 && !q.batches[n-1].sealed {
		b = q.batches[n-1]
		if b.builder.EstimatedSize()+size > a.batchSize {
			b.sealed = true
			b = nil
		}
	}
	res := appendResult{}
	if b == nil {
		if abortOnNew {
			return appendResult{aborted: true}, nil
		}
		bl := a.builders.Get()
		bl.Reset(a.opts)
		b = &batch{tp: tp, builder: bl, created: now, deadline: now.Add(a.delivery), done: make(chan struct{}), base: -1, appendTime: -1, seq: -1}
		b.hold.builder = bl
		q.batches = append(q.batches, b)
		res.newBatch = true
	}
	if err := b.builder.Append(ts, key, value, headers); err != nil {
		return appendResult{}, &Error{Code: pbInvalidRecord, Message: err.Error()}
	}
	res.b, res.index = b, b.count
	b.count++
	b.bytes += size
	if b.builder.EstimatedSize() >= a.batchSize {
		b.sealed = true
	}
	return res, nil
}

// drainFlags are the sender's conditions that make batches ready at once.
type drainFlags struct {
	flush     bool // Flush or Close waits: send everything
	exhausted bool // a Send waits for buffer memory: send everything
}

// drained is one partition's unit: the batches taken for a request.
type drained struct {
	tp      topicPartition
	batches []*batch
	bytes   int
	// Idempotent: the producer fields to stamp (batch i gets seqs[i]).
	producerID int64 // -1: not idempotent
	epoch      int16
	seqs       []int32
}

// drain takes, for every partition that may send now, its next unit: the
// first failed unit when it is retrying, else the ready batches not sent
// yet. dest names the broker a partition goes to now ("" to skip it:
// leader unknown, broker at MaxInFlight); a request takes at most maxBytes
// (and at least one batch). It also returns the batches whose delivery
// timeout passed before they could be (re)sent (removed, for the caller to
// fail), and when something next becomes ready (zero: nothing waits).
func (a *accumulator) drain(now time.Time, f drainFlags, maxBytes int, dest func(topicPartition) string) (reqs map[string][]drained, expired []*expiredBatch, next time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sizes := map[string]int{}
	wake := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	pid := a.mu.producerID
	for tp, q := range a.mu.queues {
		if q.inFlight == 0 {
			for len(q.batches) > 0 && !now.Before(q.batches[0].deadline) {
				b := q.batches[0]
				b.sealed = true
				expired = append(expired, &expiredBatch{b: b, lastErr: q.lastErr})
				q.batches = q.batches[1:]
				if q.sent > 0 {
					q.sent--
					q.reset = true // its sequence numbers may or may not be stored
				}
				for _, b := range popAckedLocked(q) {
					expired = append(expired, &expiredBatch{b: b, acked: true})
				}
			}
			if len(q.batches) == 0 {
				if !a.idempotent {
					delete(a.mu.queues, tp) // an idempotent queue keeps its epoch and sequence
				}
				continue
			}
			if q.reset || q.split != nil {
				for _, b := range a.resetLocked(q) {
					expired = append(expired, &expiredBatch{b: b, acked: true})
				}
			}
		}
		if q.inFlight >= a.perPartition || (q.retrying && q.inFlight > 0) || q.reset {
			continue
		}
		if q.inFlight == 0 {
			wake(q.batches[0].deadline)
		}
		if now.Before(q.retryAt) {
			wake(q.retryAt)
			continue
		}
		if a.idempotent && pid < 0 {
			continue
		}
		var d drained
		if q.retrying {
			if d = a.resendLocked(tp, q); len(d.batches) == 0 {
				q.retrying = false
				continue
			}
		} else {
			if q.sent >= len(q.batches) {
				continue
			}
			head := q.batches[q.sent]
			if !a.readyLocked(head, len(q.batches)-q.sent, now, f) {
				wake(head.created.Add(a.linger))
				continue
			}
			if q.inFlight > 0 && !f.flush && !f.exhausted && !a.fullRequestLocked(q, now, maxBytes) {
				// One request is on its way: the next goes once it can be a
				// full one (or the first comes back). Fewer, larger requests
				// cost the broker less per byte than many small ones.
				continue
			}
		}
		addr := dest(tp)
		if addr == "" {
			continue // the caller wakes when metadata or in-flight counts change
		}
		if !q.retrying {
			d = drained{tp: tp, producerID: -1}
			for i, b := range q.batches[q.sent:] {
				if i > 0 && (q.single || !a.readyLocked(b, len(q.batches)-q.sent-i, now, f)) {
					break
				}
				sz := b.builder.EstimatedSize()
				if sizes[addr]+d.bytes+sz > maxBytes && (sizes[addr] > 0 || len(d.batches) > 0) {
					break
				}
				b.sealed = true
				d.batches = append(d.batches, b)
				d.bytes += sz
			}
			if len(d.batches) == 0 {
				wake(now) // the request is full: another one next round
				continue
			}
			for i, b := range d.batches {
				b.state, b.unit = stateInFlight, 0
				if a.idempotent {
					b.seq = q.nextSeq
					q.nextSeq = nextSeq(q.nextSeq, b.count)
				}
				if i == 0 {
					b.unit = len(d.batches)
				}
			}
			q.sent += len(d.batches)
		} else if sizes[addr] > 0 && sizes[addr]+d.bytes > maxBytes {
			wake(now)
			continue
		}
		if a.idempotent {
			d.producerID, d.epoch = pid, q.epoch
			d.seqs = make([]int32, len(d.batches))
			for i, b := range d.batches {
				d.seqs[i] = b.seq
			}
		}
		for _, b := range d.batches {
			b.state = stateInFlight
		}
		q.inFlight++
		sizes[addr] += d.bytes
		if reqs == nil {
			reqs = map[string][]drained{}
		}
		reqs[addr] = append(reqs[addr], d)
	}
	return reqs, expired, next
}

// fullRequestLocked reports whether q's ready unsent batches fill at least
// half a request of maxBytes.
func (a *accumulator) fullRequestLocked(q *partQueue, now time.Time, maxBytes int) bool {
	n := 0
	for i, b := range q.batches[q.sent:] {
		if !a.readyLocked(b, len(q.batches)-q.sent-i, now, drainFlags{}) {
			return false
		}
		if n += b.builder.EstimatedSize(); n >= maxBytes/2 {
			return true
		}
	}
	return false
}

// nextSeq is the sequence after n records from s (wrapping past MaxInt32).
func nextSeq(s int32, n int) int32 {
	v := int64(s) + int64(n)
	if v > math.MaxInt32 {
		v -= math.MaxInt32 + 1
	}
	return int32(v)
}

// resendLocked is the first failed unit of q, to send again as it was.
func (a *accumulator) resendLocked(tp topicPartition, q *partQueue) drained {
	d := drained{tp: tp, producerID: -1}
	for i := 0; i < q.sent; i++ {
		b := q.batches[i]
		if b.state != stateResend || b.unit == 0 {
			continue
		}
		for _, u := range q.batches[i : i+b.unit] {
			d.batches = append(d.batches, u)
			d.bytes += len(u.built)
		}
		return d
	}
	return d
}

// resetLocked starts q's sequence over with the next epoch (idempotent) or
// puts the failed batches back to be regrouped (not idempotent), after a
// MESSAGE_TOO_LARGE split if one waits. Nothing of q is in flight. It
// returns the acknowledged batches it took out of the queue (stored: to
// complete), which only a leader that lost the producer's state leaves
// behind an unacknowledged one.
func (a *accumulator) resetLocked(q *partQueue) []*batch {
	if q.split != nil {
		if i := slices.Index(q.batches[:q.sent], q.split); i >= 0 {
			if children := a.splitBatch(q.split); children != nil {
				q.batches = slices.Replace(q.batches, i, i+1, children...)
				q.sent += len(children) - 1
			} else {
				q.single = true
			}
		}
		q.split = nil
	}
	var acked []*batch
	keep := q.batches[:0:0]
	for i, b := range q.batches {
		if i < q.sent && b.state == stateAcked {
			acked = append(acked, b)
			continue
		}
		if i < q.sent {
			b.state, b.unit, b.seq = stateUnsent, 0, -1
		}
		keep = append(keep, b)
	}
	q.batches = keep
	q.sent, q.retrying, q.reset = 0, false, false
	if a.idempotent {
		q.epoch++ // wraps to a negative epoch after 32767 resets: the leader refuses it (INVALID_PRODUCER_EPOCH)
		q.nextSeq = 0
	}
	return acked
}

// popAckedLocked removes the acknowledged batches at the head of q.
func popAckedLocked(q *partQueue) []*batch {
	var done []*batch
	for q.sent > 0 && q.batches[0].state == stateAcked {
		done = append(done, q.batches[0])
		q.batches = q.batches[1:]
		q.sent--
	}
	return done
}

// readyLocked: a batch is ready when it is full (or followed by another),
// lingered long enough, or someone waits for everything to go.
func (a *accumulator) readyLocked(b *batch, left int, now time.Time, f drainFlags) bool {
	return left > 1 || b.sealed || f.flush || f.exhausted || !now.Before(b.created.Add(a.linger))
}

// expiredBatch is a batch whose delivery timeout passed, with the last
// error its partition saw (nil if it was never sent); or, with acked, one
// that was stored and is to complete with its offsets.
type expiredBatch struct {
	b       *batch
	lastErr error
	acked   bool
}

// unitIndex is where d's unit starts in q, or -1.
func unitIndex(q *partQueue, d drained) int {
	if q == nil {
		return -1
	}
	return slices.Index(q.batches[:q.sent], d.batches[0])
}

// isHead reports whether d's unit is the oldest unacknowledged one.
func (a *accumulator) isHead(d drained) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return unitIndex(a.mu.queues[d.tp], d) == 0
}

// succeeded records that d's unit was stored at base (with appendTime) and
// returns the batches that are now complete, in order: the unit's and the
// acknowledged ones after it, once nothing before them is outstanding.
// Their ackBase and ackTime hold their outcome.
func (a *accumulator) succeeded(d drained, base, appendTime int64) []*batch {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.mu.queues[d.tp]
	for _, b := range d.batches {
		b.state, b.ackBase, b.ackTime = stateAcked, base, appendTime
		if base >= 0 {
			base += int64(b.count)
		}
	}
	q.inFlight--
	q.lastErr = nil
	done := popAckedLocked(q)
	if q.retrying && !slices.ContainsFunc(q.batches[:q.sent], func(b *batch) bool { return b.state == stateResend }) {
		q.retrying = false
	}
	if len(done) > 0 {
		q.retryAt, q.single = time.Time{}, false
	}
	return done
}

// failKind is what a failed unit does next.
type failKind uint8

const (
	failRetry   failKind = iota // resend as it was, after retryAt
	failReset                   // resend after a sequence reset (regrouped, epoch+1)
	failSplit                   // MESSAGE_TOO_LARGE: split or send batches one by one, then reset
	failForGood                 // its records fail; the partition's sequence is reset
)

// failed records a failed attempt of d's unit and returns the batches to
// fail now (failForGood only) and the acknowledged ones that it left at
// the head (to complete).
//
// counted says whether the failure counts as an attempt of the unit's
// batches (a unit refused only because one before it failed does not).
func (a *accumulator) failed(d drained, err error, kind failKind, retryAt time.Time, counted bool) (fail, done []*batch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.mu.queues[d.tp]
	q.inFlight--
	q.lastErr = err
	if counted {
		for _, b := range d.batches {
			b.attempts++
		}
	}
	i := unitIndex(q, d)
	if i < 0 {
		return nil, nil
	}
	n := len(d.batches)
	switch kind {
	case failForGood:
		q.batches = slices.Delete(q.batches, i, i+n)
		q.sent -= n
		// The sequence has a hole now: the next unit would be refused.
		q.reset = q.reset || a.idempotent
		q.retryAt = time.Time{}
		return d.batches, popAckedLocked(q)
	case failSplit:
		if n > 1 {
			q.single = true
		} else {
			q.split = d.batches[0]
		}
		q.reset = true
	case failReset:
		q.reset = true
		q.retryAt = retryAt
	default:
		for _, b := range d.batches {
			b.state = stateResend
		}
		q.retryAt = retryAt
		if a.idempotent {
			q.retrying = true
		} else {
			q.reset = true // regroup what failed with what came since
		}
	}
	return nil, nil
}

// attemptsOf is how many times d's first batch has failed so far.
func (a *accumulator) attemptsOf(d drained) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return d.batches[0].attempts
}

// incomplete lists the done channels of every batch not yet completed.
func (a *accumulator) incomplete() []chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []chan struct{}
	for _, q := range a.mu.queues {
		for _, b := range q.batches {
			out = append(out, b.done)
		}
	}
	return out
}

// close refuses further appends and removes every batch; nothing may be in
// flight. It returns the acknowledged ones (stored: to complete with their
// offsets) and the others (to fail).
func (a *accumulator) close() (acked, rest []*batch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mu.closed = true
	for tp, q := range a.mu.queues {
		for _, b := range q.batches {
			if b.state == stateAcked {
				acked = append(acked, b)
			} else {
				rest = append(rest, b)
			}
		}
		delete(a.mu.queues, tp)
	}
	return acked, rest
}

// splitBatch re-encodes b, which the broker refused as too large, into two
// halves, which replace it (each is split again if still too large). It
// returns nil, changing nothing, when b holds a single record or cannot be
// read back.
func (a *accumulator) splitBatch(b *batch) []*batch {
	if b.count < 2 || b.built == nil {
		return nil
	}
	var it record.Iterator
	if err := it.Reset(b.built); err != nil {
		return nil
	}
	half := (b.count + 1) / 2
	var children []*batch
	var c *batch
	var headers []record.Header
	for i := 0; it.Next(); i++ {
		if i == 0 || i == half {
			bl := a.builders.Get()
			bl.Reset(a.opts)
			c = &batch{tp: b.tp, builder: bl, created: b.created, deadline: b.deadline, sealed: true,
				done: make(chan struct{}), base: -1, appendTime: -1, seq: -1, parent: b, first: i}
			c.hold.builder = bl
			children = append(children, c)
		}
		r := it.Record()
		headers = headers[:0]
		for k, v := range r.Headers() {
			headers = append(headers, record.Header{Key: string(k), Value: v})
		}
		if err := c.builder.Append(r.Timestamp, r.Key, r.Value, headers); err != nil {
			return nil
		}
		c.count++
	}
	if it.Err() != nil || len(children) != 2 || children[0].count+children[1].count != b.count {
		for _, c := range children {
			a.builders.Put(c.builder)
		}
		return nil
	}
	b.children, b.left = children, len(children)
	b.hold.drop(a.builders) // a request that carried b may still hold its bytes
	b.builder, b.built = nil, nil
	return children
}

// recycle returns a completed batch's builder for reuse, once no request
// that carried it is held by gRPC any more (see builderHold).
func (a *accumulator) recycle(b *batch) {
	if b.builder != nil {
		b.hold.drop(a.builders)
		b.builder, b.built = nil, nil
	}
}
