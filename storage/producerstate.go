package storage

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/stratalog/strata/storage/record"
)

// Idempotent producers (Kafka's ProducerStateManager, reduced to what an
// idempotent, non-transactional producer needs).
//
// A batch whose producer id is not record.NoProducerID carries (producer id,
// producer epoch, base sequence); its records have sequences base ..
// base+lastOffsetDelta. A leader append checks each such batch against the
// producer's state in this partition:
//
//   - epoch older than the producer's:            ErrInvalidProducerEpoch
//   - epoch newer:                                 the first sequence must be 0
//   - same epoch, first sequence = last + 1:       appended (sequences wrap from MaxInt32 to 0)
//   - same epoch, sequences inside a cached range: a duplicate; nothing is written and the
//     append answers the offsets the records got the first time (AppendInfo.Duplicate)
//   - same epoch, anything else:                   ErrOutOfOrderSequence
//   - no state for the producer id:                the first sequence must be 0, else
//     ErrUnknownProducerID (the state went with retention, or expired)
//
// So a producer that pipelines several requests and resends a failed one
// can neither reorder nor duplicate its records. Follower appends update the
// state without checking it (the leader did), so a new leader has it.
//
// The state is not written anywhere: it is rebuilt from the batch headers of
// the log, lazily, at the first idempotent leader append after the log was
// opened or truncated (one header read per batch; Kafka snapshots it at
// segment rolls to bound that scan, which this implementation does not).
// A producer whose last batch is older than ProducerIDExpiration (by its max
// timestamp, as Kafka's producer.id.expiration.ms) is forgotten.

// ProducerIDExpiration is how long the state of a producer that has not
// written is kept (Kafka's producer.id.expiration.ms default).
const ProducerIDExpiration = 24 * time.Hour

// producerRanges is how many ranges of appended sequences a producer's
// state remembers for duplicate detection; a producer keeps at most this
// many requests in flight per partition (Kafka's 5).
const producerRanges = 5

// MaxInFlightIdempotent is the most requests an idempotent producer may
// have in flight per partition for its resends to be recognised as
// duplicates.
const MaxInFlightIdempotent = producerRanges

// Errors of idempotent appends. Compare with errors.Is.
var (
	// ErrOutOfOrderSequence: the batch's first sequence does not follow the
	// producer's last one (an earlier batch is missing or was not appended).
	ErrOutOfOrderSequence = errors.New("storage: out of order sequence number")
	// ErrInvalidProducerEpoch: the batch's producer epoch is older than
	// the partition's state for that producer (a fenced producer).
	ErrInvalidProducerEpoch = errors.New("storage: invalid producer epoch")
	// ErrUnknownProducerID: no state for the producer id and a first
	// sequence other than 0.
	ErrUnknownProducerID = errors.New("storage: unknown producer id")
)

// seqRange is a run of records of one producer appended at consecutive
// offsets: sequence s is at offset firstOffset + (s - firstSeq).
type seqRange struct {
	firstSeq, lastSeq int32
	firstOffset       int64
}

func (r seqRange) lastOffset() int64 { return r.firstOffset + int64(r.lastSeq-r.firstSeq) }

// producerEntry is one producer's state in one partition.
type producerEntry struct {
	epoch         int16
	ranges        [producerRanges]seqRange // ring, oldest first from head
	n, head       int
	lastTimestamp int64
}

func (e *producerEntry) last() *seqRange {
	if e.n == 0 {
		return nil
	}
	return &e.ranges[(e.head+e.n-1)%producerRanges]
}

// add records an appended batch: it extends the last range when it follows
// it in both sequence and offset, else it starts a new one (dropping the
// oldest past producerRanges).
func (e *producerEntry) add(firstSeq, lastSeq int32, firstOffset int64) {
	if l := e.last(); l != nil && firstSeq == l.lastSeq+1 && l.lastSeq < math.MaxInt32 && firstOffset == l.lastOffset()+1 && lastSeq >= firstSeq {
		l.lastSeq = lastSeq
		return
	}
	r := seqRange{firstSeq: firstSeq, lastSeq: lastSeq, firstOffset: firstOffset}
	if e.n < producerRanges {
		e.ranges[(e.head+e.n)%producerRanges] = r
		e.n++
		return
	}
	e.ranges[e.head] = r
	e.head = (e.head + 1) % producerRanges
}

// find returns the offset of firstSeq when [firstSeq, lastSeq] lies inside
// one remembered range.
func (e *producerEntry) find(firstSeq, lastSeq int32) (int64, bool) {
	for i := range e.n {
		r := e.ranges[(e.head+i)%producerRanges]
		if firstSeq >= r.firstSeq && lastSeq <= r.lastSeq && firstSeq <= lastSeq {
			return r.firstOffset + int64(firstSeq-r.firstSeq), true
		}
	}
	return 0, false
}

// producerStates is a log's producer state. Guarded by the log's writer lock.
type producerStates struct {
	loaded    bool // rebuilt from the log since open or the last truncation
	m         map[int64]*producerEntry
	lastSweep int64 // ms
}

func (ps *producerStates) reset() { ps.loaded, ps.m = false, nil }

// apply records a batch appended to the log (leader or follower).
func (ps *producerStates) apply(b record.Batch) {
	pid := b.ProducerID()
	if pid == record.NoProducerID || !ps.loaded {
		return
	}
	if ps.m == nil {
		ps.m = map[int64]*producerEntry{}
	}
	e := ps.m[pid]
	if e == nil || b.ProducerEpoch() != e.epoch {
		e = &producerEntry{epoch: b.ProducerEpoch()}
		ps.m[pid] = e
	}
	first := b.BaseSequence()
	e.add(first, lastSequence(first, b.LastOffsetDelta()), b.BaseOffset())
	e.lastTimestamp = max(e.lastTimestamp, b.MaxTimestamp())
}

// lastSequence is the sequence of a batch's last offset, wrapping past MaxInt32.
func lastSequence(first, lastDelta int32) int32 {
	if int64(first)+int64(lastDelta) > math.MaxInt32 {
		return int32(int64(first) + int64(lastDelta) - math.MaxInt32 - 1)
	}
	return first + lastDelta
}

// nextSequence is the sequence after s.
func nextSequence(s int32) int32 {
	if s == math.MaxInt32 {
		return 0
	}
	return s + 1
}

// seqCheck is the outcome of checking one batch.
type seqCheck struct {
	dup       bool
	dupOffset int64 // the first record's offset when dup
}

// check validates an idempotent batch for a leader append; pending holds
// what earlier batches of the same append will have made of the state.
func (ps *producerStates) check(b record.Batch, pending map[int64]pendingSeq) (seqCheck, error) {
	pid, epoch, first := b.ProducerID(), b.ProducerEpoch(), b.BaseSequence()
	last := lastSequence(first, b.LastOffsetDelta())
	if epoch < 0 || first < 0 {
		return seqCheck{}, fmt.Errorf("%w: producer %d with epoch %d and sequence %d", record.ErrCorruptRecord, pid, epoch, first)
	}
	if p, ok := pending[pid]; ok {
		if epoch != p.epoch || first != nextSequence(p.last) {
			return seqCheck{}, fmt.Errorf("%w: producer %d epoch %d: batch at sequence %d after %d in one request", ErrOutOfOrderSequence, pid, epoch, first, p.last)
		}
		pending[pid] = pendingSeq{epoch, last}
		return seqCheck{}, nil
	}
	e := ps.m[pid]
	switch {
	case e == nil:
		if first != 0 {
			return seqCheck{}, fmt.Errorf("%w: producer %d has no state in this partition and sent sequence %d (not 0)", ErrUnknownProducerID, pid, first)
		}
	case epoch < e.epoch:
		return seqCheck{}, fmt.Errorf("%w: producer %d sent epoch %d, the partition has %d", ErrInvalidProducerEpoch, pid, epoch, e.epoch)
	case epoch > e.epoch:
		if first != 0 {
			return seqCheck{}, fmt.Errorf("%w: producer %d starts epoch %d at sequence %d (not 0)", ErrOutOfOrderSequence, pid, epoch, first)
		}
	default:
		if off, ok := e.find(first, last); ok {
			return seqCheck{dup: true, dupOffset: off}, nil
		}
		if l := e.last(); l != nil && first != nextSequence(l.lastSeq) {
			return seqCheck{}, fmt.Errorf("%w: producer %d epoch %d sent sequence %d, expected %d", ErrOutOfOrderSequence, pid, epoch, first, nextSequence(l.lastSeq))
		}
	}
	pending[pid] = pendingSeq{epoch, last}
	return seqCheck{}, nil
}

type pendingSeq struct {
	epoch int16
	last  int32
}

// sweep forgets producers whose last batch is older than ProducerIDExpiration,
// at most once a minute.
func (ps *producerStates) sweep(nowMs int64) {
	if nowMs-ps.lastSweep < int64(time.Minute/time.Millisecond) {
		return
	}
	ps.lastSweep = nowMs
	for pid, e := range ps.m {
		if nowMs-e.lastTimestamp >= int64(ProducerIDExpiration/time.Millisecond) {
			delete(ps.m, pid)
		}
	}
}

// loadProducersLocked rebuilds the producer state from the headers of every
// batch in the log.
func (l *Log) loadProducersLocked() error {
	ps := &l.mu.producers
	ps.m, ps.loaded = map[int64]*producerEntry{}, true
	var hdr [record.HeaderSize]byte
	for _, s := range l.segments() {
		for pos, size := int64(0), s.size.Load(); pos < size; {
			h, err := s.readHeader(pos, &hdr)
			if err != nil {
				ps.reset()
				return fmt.Errorf("storage: rebuild producer state: %w", err)
			}
			ps.apply(h)
			pos += int64(h.Size())
		}
	}
	ps.sweep(l.now().UnixMilli())
	return nil
}

// ProducerAppendWait returns a channel that the next append of an idempotent
// producer's batches closes. A leader whose append failed with
// ErrOutOfOrderSequence or ErrUnknownProducerID takes it, tries again, and
// waits on it before the next try: a pipelining producer's requests may
// reach the log in another order than they were sent (gRPC serves the
// requests of one connection concurrently, where Kafka's broker serves them
// one at a time), and the earlier one is usually a moment away.
func (l *Log) ProducerAppendWait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.producerWake == nil {
		l.mu.producerWake = make(chan struct{})
	}
	return l.mu.producerWake
}
