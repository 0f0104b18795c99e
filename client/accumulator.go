package client

import (
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

// partQueue is one partition's batches, oldest first; only the last one
// may be open for appends. At most one drain of a partition is in flight
// (which is how per-partition order is kept without idempotence).
type partQueue struct {
	batches  []*batch
	inFlight int // batches at the head that are in flight; 0 when none
	retryAt  time.Time
	attempts int // failed attempts of the head batches
	lastErr  error
	single   bool // send one batch per request (after MESSAGE_TOO_LARGE)
}

// accumulator holds every partition's queue. Appends build the batch in
// place: a record is encoded into the open batch's record.Builder once.
type accumulator struct {
	batchSize int
	linger    time.Duration
	delivery  time.Duration
	opts      record.BatchOptions
	builders  sync.Pool

	mu struct {
		sync.Mutex
		queues map[topicPartition]*partQueue
		closed bool
	}
}

func newAccumulator(batchSize int, linger, delivery time.Duration, opts record.BatchOptions) *accumulator {
	a := &accumulator{batchSize: batchSize, linger: linger, delivery: delivery, opts: opts}
	a.builders.New = func() any { return record.NewBuilder(opts) }
	a.mu.queues = map[topicPartition]*partQueue{}
	return a
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
		bl := a.builders.Get().(*record.Builder)
		bl.Reset(a.opts)
		b = &batch{tp: tp, builder: bl, created: now, deadline: now.Add(a.delivery), done: make(chan struct{}), base: -1, appendTime: -1}
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

// drained is one partition's batches taken for a request.
type drained struct {
	tp      topicPartition
	batches []*batch
	bytes   int
}

// drain takes the ready batches of every partition that is not in flight
// and whose retry backoff has passed. dest names the broker a partition
// goes to now ("" to skip it: leader unknown, broker at MaxInFlight); a
// request takes at most maxBytes (and at least one batch). It also returns
// the batches whose delivery timeout passed before they could be sent
// (removed, for the caller to fail), and when something next becomes ready
// (zero: nothing waits).
func (a *accumulator) drain(now time.Time, f drainFlags, maxBytes int, dest func(topicPartition) string) (reqs map[string][]drained, expired []*expiredBatch, next time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sizes := map[string]int{}
	wake := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for tp, q := range a.mu.queues {
		if q.inFlight > 0 {
			continue
		}
		for len(q.batches) > 0 && !now.Before(q.batches[0].deadline) {
			b := q.batches[0]
			b.sealed = true
			expired = append(expired, &expiredBatch{b: b, lastErr: q.lastErr})
			q.batches = q.batches[1:]
		}
		if len(q.batches) == 0 {
			delete(a.mu.queues, tp)
			continue
		}
		head := q.batches[0]
		wake(head.deadline)
		if now.Before(q.retryAt) {
			wake(q.retryAt)
			continue
		}
		if !a.readyLocked(head, len(q.batches), now, f) {
			wake(head.created.Add(a.linger))
			continue
		}
		addr := dest(tp)
		if addr == "" {
			continue // the caller wakes when metadata or in-flight counts change
		}
		d := drained{tp: tp}
		for i, b := range q.batches {
			if i > 0 && (q.single || !a.readyLocked(b, len(q.batches)-i, now, f)) {
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
		q.inFlight = len(d.batches)
		sizes[addr] += d.bytes
		if reqs == nil {
			reqs = map[string][]drained{}
		}
		reqs[addr] = append(reqs[addr], d)
	}
	return reqs, expired, next
}

// readyLocked: a batch is ready when it is full (or followed by another),
// lingered long enough, or someone waits for everything to go.
func (a *accumulator) readyLocked(b *batch, left int, now time.Time, f drainFlags) bool {
	return left > 1 || b.sealed || f.flush || f.exhausted || !now.Before(b.created.Add(a.linger))
}

// expiredBatch is a batch whose delivery timeout passed, with the last
// error its partition saw (nil if it was never sent).
type expiredBatch struct {
	b       *batch
	lastErr error
}

// succeeded removes tp's in-flight batches after a successful answer.
func (a *accumulator) succeeded(tp topicPartition) []*batch {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.mu.queues[tp]
	done := q.batches[:q.inFlight]
	q.batches = q.batches[q.inFlight:]
	q.inFlight, q.attempts, q.lastErr, q.retryAt, q.single = 0, 0, nil, time.Time{}, false
	return done
}

// failed records a failed attempt of tp's in-flight batches. With retry
// they go back to the head of the queue, ready again at retryAt; otherwise
// (or when retry is false) they are removed and returned to be failed.
func (a *accumulator) failed(tp topicPartition, err error, retry bool, retryAt time.Time, single bool) []*batch {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.mu.queues[tp]
	q.attempts++
	q.lastErr = err
	if retry {
		q.inFlight = 0
		q.retryAt = retryAt
		q.single = q.single || single
		return nil
	}
	done := q.batches[:q.inFlight]
	q.batches = q.batches[q.inFlight:]
	q.inFlight, q.attempts, q.retryAt = 0, 0, time.Time{}
	return done
}

// attemptsOf is how many times tp's head batches have failed so far.
func (a *accumulator) attemptsOf(tp topicPartition) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if q := a.mu.queues[tp]; q != nil {
		return q.attempts
	}
	return 0
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

// close refuses further appends and removes every batch that is not in
// flight, returning them to be failed.
func (a *accumulator) close() []*batch {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mu.closed = true
	var out []*batch
	for tp, q := range a.mu.queues {
		out = append(out, q.batches[q.inFlight:]...)
		q.batches = q.batches[:q.inFlight]
		if len(q.batches) == 0 {
			delete(a.mu.queues, tp)
		}
	}
	return out
}

// split replaces tp's one in-flight batch, which the broker refused as too
// large, by two halves re-encoded from it, ready to send at once (each is
// split again if still too large). It returns false, changing nothing,
// when the batch holds a single record or cannot be read back.
func (a *accumulator) split(tp topicPartition) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.mu.queues[tp]
	if q == nil || q.inFlight != 1 {
		return false
	}
	b := q.batches[0]
	if b.count < 2 || b.built == nil {
		return false
	}
	var it record.Iterator
	if err := it.Reset(b.built); err != nil {
		return false
	}
	half := (b.count + 1) / 2
	var children []*batch
	var c *batch
	var headers []record.Header
	for i := 0; it.Next(); i++ {
		if i == 0 || i == half {
			bl := a.builders.Get().(*record.Builder)
			bl.Reset(a.opts)
			c = &batch{tp: tp, builder: bl, created: b.created, deadline: b.deadline, sealed: true,
				done: make(chan struct{}), base: -1, appendTime: -1, parent: b, first: i}
			children = append(children, c)
		}
		r := it.Record()
		headers = headers[:0]
		for k, v := range r.Headers() {
			headers = append(headers, record.Header{Key: string(k), Value: v})
		}
		if err := c.builder.Append(r.Timestamp, r.Key, r.Value, headers); err != nil {
			return false
		}
		c.count++
	}
	if it.Err() != nil || len(children) != 2 || children[0].count+children[1].count != b.count {
		for _, c := range children {
			a.builders.Put(c.builder)
		}
		return false
	}
	b.children, b.left = children, len(children)
	a.builders.Put(b.builder)
	b.builder, b.built = nil, nil
	q.batches = append(children, q.batches[1:]...)
	q.inFlight, q.retryAt, q.single = 0, time.Time{}, true
	return true
}

// recycle returns a completed batch's builder for reuse.
func (a *accumulator) recycle(b *batch) {
	if b.builder != nil {
		a.builders.Put(b.builder)
		b.builder, b.built = nil, nil
	}
}
