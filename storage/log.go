package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/storage/record"
)

// LeaderEpochCheckpointFile is the leader-epoch cache's file in a log's
// directory. Part of the format: do not change.
const LeaderEpochCheckpointFile = "leader-epoch-checkpoint"

// Log is one partition's log: a list of segments, of which only the last (the
// active segment) is written.
//
// Concurrency: one writer at a time (Append*, Truncate*, roll, retention and
// compaction's swap take the writer lock); any number of readers, which take
// no lock: they load the current segment list and offsets atomically, and a
// segment removed under them makes their read fail with ErrSegmentDeleted.
// fsync never happens under the writer lock.
type Log struct {
	dir    string
	logger *slog.Logger
	now    func() time.Time

	segs          atomic.Pointer[[]*segment] // sorted by base; immutable once published
	leo           atomic.Int64
	logStart      atomic.Int64
	recoveryPoint atomic.Int64
	hw            atomic.Int64

	epochs *LeaderEpochCache

	mu struct {
		sync.Mutex
		cfg              Config
		unflushedRecords int64
		firstUnflushed   time.Time // zero when everything is flushed
		werr             error     // sticky write error
		closed           bool
		// Compaction's bookkeeping: truncations counts rewrites of existing
		// offsets (a swap prepared before one is dropped); cleanedUpTo is the
		// end of the sealed range the last full pass cleaned and nextHorizon
		// the earliest delete horizon it left, so a pass with nothing to do
		// is skipped.
		truncations uint64
		cleanedGen  uint64
		cleanedUpTo int64
		nextHorizon int64
		// producers is the idempotent producers' state (producerstate.go);
		// producerWake is closed (and cleared) by the next idempotent append.
		producers    producerStates
		producerWake chan struct{}
	}

	flushMu sync.Mutex     // serializes fsyncs (never held with mu)
	bg      sync.WaitGroup // async flushes and deletions
	closing chan struct{}  // closed by Close

	beforeSwap func() // test hook: runs before compaction swaps a group in
}

// OpenOptions are what the owner of a log knows about it from its checkpoints.
type OpenOptions struct {
	// RecoveryPoint is the offset below which the log was fsynced (from the
	// recovery-point checkpoint); 0 when unknown.
	RecoveryPoint int64
	// LogStartOffset is the first readable offset (from the log-start checkpoint).
	LogStartOffset int64
	// HighWatermark, from the replication checkpoint; clamped to the log end.
	HighWatermark int64
	// CleanShutdown skips validating batches after the recovery point.
	CleanShutdown bool
	Logger        *slog.Logger
	// Now is the clock (segment.ms, retention); time.Now when nil.
	Now func() time.Time
}

// AppendInfo describes what an append wrote.
type AppendInfo struct {
	FirstOffset  int64
	LastOffset   int64
	MaxTimestamp int64
	Records      int64
	Bytes        int64
	// Duplicate: the batches were resent by an idempotent producer and are
	// in the log already; nothing was written and the offsets are where
	// they were stored the first time (see producerstate.go).
	Duplicate bool
}

// Open opens (creating if needed) the log in dir, removes leftovers of
// interrupted deletions and compactions, and recovers the tail after an
// unclean shutdown: every batch after the recovery point is validated (CRC,
// lengths, monotonic offsets), a torn or corrupt tail is cut, and indexes
// that are missing or fail their check are rebuilt.
func Open(dir string, cfg Config, opts OpenOptions) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: open log: %w", err)
	}
	l := &Log{dir: dir, logger: opts.Logger, now: opts.Now, closing: make(chan struct{})}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.mu.cfg = cfg
	l.mu.cleanedUpTo = -1
	epochs, err := OpenLeaderEpochCache(filepath.Join(dir, LeaderEpochCheckpointFile))
	if err != nil {
		return nil, err
	}
	l.epochs = epochs
	if err := l.load(opts); err != nil {
		l.closeSegments()
		return nil, err
	}
	return l, nil
}

// Dir is the log's directory.
func (l *Log) Dir() string { return l.dir }

// LogEndOffset is the offset the next appended record will get.
func (l *Log) LogEndOffset() int64 { return l.leo.Load() }

// LogStartOffset is the first offset a reader may ask for.
func (l *Log) LogStartOffset() int64 { return l.logStart.Load() }

// RecoveryPoint is the offset below which everything is fsynced.
func (l *Log) RecoveryPoint() int64 { return l.recoveryPoint.Load() }

// HighWatermark is the offset below which records are committed (set by the
// partition's replication logic; the log only stores and clamps it).
func (l *Log) HighWatermark() int64 { return l.hw.Load() }

// SetHighWatermark stores hw, clamped to [LogStartOffset, LogEndOffset].
func (l *Log) SetHighWatermark(hw int64) {
	l.hw.Store(min(max(hw, l.LogStartOffset()), l.LogEndOffset()))
}

// LeaderEpochs is the log's leader-epoch cache.
func (l *Log) LeaderEpochs() *LeaderEpochCache { return l.epochs }

// Config returns the log's current configuration.
func (l *Log) Config() Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.cfg
}

// SetConfig replaces the configuration (a topic config change).
func (l *Log) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.cfg = cfg
	return nil
}

// Size is the total size of the log's segment files in bytes.
func (l *Log) Size() int64 {
	var n int64
	for _, s := range *l.segs.Load() {
		n += s.size.Load()
	}
	return n
}

// NumSegments is the number of segments, the active one included.
func (l *Log) NumSegments() int { return len(*l.segs.Load()) }

func (l *Log) segments() []*segment { return *l.segs.Load() }

func (l *Log) publish(segs []*segment) { l.segs.Store(&segs) }

// floorSegment is the index of the last segment whose base is <= offset, or -1.
func floorSegment(segs []*segment, offset int64) int {
	return sort.Search(len(segs), func(i int) bool { return segs[i].base > offset }) - 1
}

// Append appends one or more whole batches, concatenated as in a produce
// request, assigning offsets in place from the log end offset. Each batch
// keeps the partition leader epoch it carries. Every batch is validated
// before anything is written: a bad one fails the whole call with
// record.ErrCorruptRecord, ErrRecordTooLarge or record.ErrUnknownCodec and
// changes nothing.
func (l *Log) Append(batches []byte) (AppendInfo, error) {
	return l.append(batches, -1, false)
}

// AppendAsLeader is Append that also stamps every batch with leaderEpoch and
// records the epoch's start offset in the leader-epoch cache.
func (l *Log) AppendAsLeader(batches []byte, leaderEpoch int32) (AppendInfo, error) {
	if leaderEpoch < 0 {
		return AppendInfo{}, fmt.Errorf("%w: leader epoch %d", ErrInvalidConfig, leaderEpoch)
	}
	return l.append(batches, leaderEpoch, false)
}

// AppendAsFollower appends batches copied from the leader, keeping their
// offsets and epochs. The first batch must start at the log end offset and
// the batches must follow each other densely, else ErrOffsetOutOfRange.
func (l *Log) AppendAsFollower(batches []byte) (AppendInfo, error) {
	return l.append(batches, -1, true)
}

// validate splits batches into whole batches and checks each one.
func validateBatches(batches []byte, maxBatch int, visit func(record.Batch) error) error {
	if len(batches) == 0 {
		return fmt.Errorf("%w: empty append", record.ErrCorruptRecord)
	}
	for rest := batches; len(rest) > 0; {
		b, err := record.Parse(rest)
		if errors.Is(err, record.ErrShortBatch) {
			return fmt.Errorf("%w: %d trailing bytes are not a whole batch", record.ErrCorruptRecord, len(rest))
		}
		if err != nil {
			return err
		}
		if len(b) > maxBatch {
			return fmt.Errorf("%w: batch of %d bytes, max.message.bytes is %d", ErrRecordTooLarge, len(b), maxBatch)
		}
		if err := b.Validate(); err != nil {
			return err
		}
		if err := visit(b); err != nil {
			return err
		}
		rest = rest[len(b):]
	}
	return nil
}

// AppendAsLeaderUnflushed is AppendAsLeader without the fsync the flush
// policy (flush.messages, flush.ms) may call for: flushDue reports that one
// is, and the caller runs Flush once it has let go of what must not wait for
// an fsync — a partition leader lets its followers fetch the records
// meanwhile, as Kafka's leader does, so its fsync and theirs overlap.
func (l *Log) AppendAsLeaderUnflushed(batches []byte, leaderEpoch int32) (info AppendInfo, flushDue bool, err error) {
	if leaderEpoch < 0 {
		return AppendInfo{}, false, fmt.Errorf("%w: leader epoch %d", ErrInvalidConfig, leaderEpoch)
	}
	return l.appendUnflushed(batches, leaderEpoch, false)
}

func (l *Log) append(batches []byte, leaderEpoch int32, follower bool) (AppendInfo, error) {
	info, flush, err := l.appendUnflushed(batches, leaderEpoch, follower)
	if err != nil {
		return AppendInfo{}, err
	}
	if flush {
		if err := l.Flush(); err != nil {
			return info, err
		}
	}
	return info, nil
}

func (l *Log) appendUnflushed(batches []byte, leaderEpoch int32, follower bool) (AppendInfo, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	info, flush, err := l.appendLocked(batches, leaderEpoch, follower)
	if err != nil {
		return AppendInfo{}, false, err
	}
	return info, flush, nil
}

func (l *Log) appendLocked(batches []byte, leaderEpoch int32, follower bool) (info AppendInfo, flush bool, err error) {
	if l.mu.closed {
		return info, false, ErrClosed
	}
	if l.mu.werr != nil {
		return info, false, l.mu.werr
	}
	cfg := &l.mu.cfg
	next := l.leo.Load()
	info.FirstOffset, info.MaxTimestamp = -1, -1
	// Validate everything first: a bad batch anywhere changes nothing.
	expect := next
	var pending map[int64]pendingSeq // idempotent producers in this append
	n, dups := 0, 0
	err = validateBatches(batches, cfg.MaxBatchBytes, func(b record.Batch) error {
		if int64(len(b)) > cfg.SegmentBytes {
			return fmt.Errorf("%w: batch of %d bytes, segment.bytes is %d", ErrRecordTooLarge, len(b), cfg.SegmentBytes)
		}
		if follower {
			if b.BaseOffset() != expect {
				return fmt.Errorf("%w: follower batch at %d, log end is %d", ErrOffsetOutOfRange, b.BaseOffset(), expect)
			}
			if b.PartitionLeaderEpoch() < 0 {
				return fmt.Errorf("%w: follower batch without a leader epoch", record.ErrCorruptRecord)
			}
		}
		expect += int64(b.LastOffsetDelta()) + 1
		n++
		if follower || b.ProducerID() == record.NoProducerID {
			return nil
		}
		if !l.mu.producers.loaded {
			if err := l.loadProducersLocked(); err != nil {
				return err
			}
		}
		if pending == nil {
			pending = map[int64]pendingSeq{}
		}
		c, err := l.mu.producers.check(b, pending)
		if err != nil {
			return err
		}
		if c.dup {
			// A resend: every batch of the append must be one, at the
			// offsets that follow each other (they were appended together).
			if dups > 0 && c.dupOffset != info.LastOffset+1 {
				return fmt.Errorf("%w: producer %d resent batches that were not appended together", ErrOutOfOrderSequence, b.ProducerID())
			}
			if dups == 0 {
				info.FirstOffset = c.dupOffset
			}
			info.LastOffset = c.dupOffset + int64(b.LastOffsetDelta())
			info.MaxTimestamp = max(info.MaxTimestamp, b.MaxTimestamp())
			info.Records += int64(b.RecordCount())
			dups++
		}
		return nil
	})
	if err == nil && dups > 0 && dups != n {
		err = fmt.Errorf("%w: a request mixes resent and new batches of an idempotent producer", ErrOutOfOrderSequence)
	}
	if err != nil {
		return AppendInfo{}, false, err
	}
	if dups > 0 {
		info.Duplicate = true
		return info, false, nil
	}
	now := l.now()
	// One write per run of batches bound for the same segment (appendrun.go),
	// then each batch is accounted in order as if written alone.
	for rest := batches; len(rest) > 0; {
		b, _ := record.Parse(rest)
		planned := assignOffsets(b, next, leaderEpoch, follower)
		seg, err := l.maybeRollLocked(b, now)
		if err != nil {
			return info, false, l.failLocked(err)
		}
		run := startRun(seg, cfg, now.UnixMilli())
		run.add(b)
		n := len(b)
		for n < len(rest) {
			b, _ := record.Parse(rest[n:])
			after := assignOffsets(b, planned, leaderEpoch, follower)
			if run.rolls(b) {
				break
			}
			run.add(b)
			n += len(b)
			planned = after
		}
		if err := seg.writeRun(rest[:n]); err != nil {
			return info, false, l.failLocked(err)
		}
		for written := rest[:n]; len(written) > 0; {
			b, _ := record.Parse(written)
			written = written[len(b):]
			if err := seg.addBatch(b, cfg.IndexIntervalBytes); err != nil {
				return info, false, l.failLocked(err)
			}
			if e := b.PartitionLeaderEpoch(); e >= 0 {
				if latest, ok := l.epochs.Latest(); !ok || e > latest.Epoch {
					if err := l.epochs.Assign(e, b.BaseOffset()); err != nil {
						return info, false, l.failLocked(err)
					}
				}
			}
			if info.FirstOffset < 0 {
				info.FirstOffset = b.BaseOffset()
			}
			info.LastOffset = b.LastOffset()
			info.MaxTimestamp = max(info.MaxTimestamp, b.MaxTimestamp())
			info.Records += int64(b.RecordCount())
			info.Bytes += int64(len(b))
			next = b.NextOffset()
			l.leo.Store(next)
			l.mu.producers.apply(b)
		}
		rest = rest[n:]
	}
	if pending != nil {
		l.mu.producers.sweep(now.UnixMilli())
		if l.mu.producerWake != nil {
			close(l.mu.producerWake)
			l.mu.producerWake = nil
		}
	}
	l.mu.unflushedRecords += info.Records
	if l.mu.firstUnflushed.IsZero() {
		l.mu.firstUnflushed = now
	}
	flush = (cfg.FlushMessages > 0 && l.mu.unflushedRecords >= cfg.FlushMessages) ||
		(cfg.FlushMs > 0 && now.Sub(l.mu.firstUnflushed) >= time.Duration(cfg.FlushMs)*time.Millisecond)
	return info, flush, nil
}

// failed is the log's sticky write error, nil while it is healthy.
func (l *Log) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.werr
}

// failLocked makes err stick: the log refuses writes until reopened.
func (l *Log) failLocked(err error) error {
	if !errors.Is(err, ErrStorageFailed) {
		err = fmt.Errorf("%w: %v", ErrStorageFailed, err)
	}
	l.mu.werr = err
	l.logger.Error("log failed; refusing writes until reopened", "dir", l.dir, "err", err)
	return err
}

// maybeRollLocked returns the segment b goes to, rolling a new one when the
// active segment is full by size, age, index, or offset span (segmentRun.rolls
// decides, on the segment as it is).
func (l *Log) maybeRollLocked(b record.Batch, now time.Time) (*segment, error) {
	segs := l.segments()
	active := segs[len(segs)-1]
	run := startRun(active, &l.mu.cfg, now.UnixMilli())
	if !run.rolls(b) {
		return active, nil
	}
	return l.rollLocked(now)
}

// rollLocked seals the active segment and starts a new one at the log end.
// The sealed segment is fsynced in the background, which advances the
// recovery point past it.
func (l *Log) rollLocked(now time.Time) (*segment, error) {
	segs := l.segments()
	active := segs[len(segs)-1]
	leo := l.leo.Load()
	if active.size.Load() == 0 {
		return active, nil
	}
	if err := active.seal(); err != nil {
		return nil, err
	}
	seg, err := createSegment(l.dir, leo, &l.mu.cfg, now)
	if err != nil {
		return nil, err
	}
	next := make([]*segment, len(segs), len(segs)+1)
	copy(next, segs)
	l.publish(append(next, seg))
	l.logger.Debug("rolled segment", "dir", l.dir, "base", leo)
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		if err := l.flushTo(leo); err != nil {
			l.logger.Error("flush after roll", "dir", l.dir, "err", err)
		}
	}()
	return seg, nil
}

// Roll forces a new active segment (if the active one is not empty).
func (l *Log) Roll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return ErrClosed
	}
	if l.mu.werr != nil {
		return l.mu.werr
	}
	_, err := l.rollLocked(l.now())
	if err != nil {
		return l.failLocked(err)
	}
	return nil
}

// Flush fsyncs everything up to the log end and advances the recovery point.
func (l *Log) Flush() error { return l.flushTo(l.LogEndOffset()) }

// MaybeFlush applies flush.ms: it flushes when the oldest unflushed append is
// older than FlushMs. The owner calls it on a timer.
func (l *Log) MaybeFlush() error {
	l.mu.Lock()
	due := l.mu.cfg.FlushMs > 0 && !l.mu.firstUnflushed.IsZero() &&
		l.now().Sub(l.mu.firstUnflushed) >= time.Duration(l.mu.cfg.FlushMs)*time.Millisecond
	l.mu.Unlock()
	if !due {
		return nil
	}
	return l.Flush()
}

// flushTo fsyncs the segments holding offsets in [recovery point, upTo).
func (l *Log) flushTo(upTo int64) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	rp := l.recoveryPoint.Load()
	if upTo <= rp {
		return nil
	}
	segs := l.segments()
	for i := max(floorSegment(segs, rp), 0); i < len(segs) && segs[i].base < upTo; i++ {
		if err := segs[i].flush(); err != nil {
			l.mu.Lock()
			err = l.failLocked(err)
			l.mu.Unlock()
			return err
		}
	}
	if upTo >= l.LogEndOffset() {
		l.mu.Lock()
		l.mu.unflushedRecords = 0
		l.mu.firstUnflushed = time.Time{}
		l.mu.Unlock()
	}
	for {
		cur := l.recoveryPoint.Load()
		if upTo <= cur || l.recoveryPoint.CompareAndSwap(cur, upTo) {
			return nil
		}
	}
}

// Read returns the file region that starts at the batch holding offset and
// runs up to maxBytes, within one segment and below the log end. The region
// holds at least the whole first batch even when it is larger than maxBytes,
// so a reader always makes progress; it may end inside a batch (a reader
// drops a trailing partial batch). An offset equal to the log end gives an
// empty region; one outside [LogStartOffset, LogEndOffset] ErrOffsetOutOfRange.
func (l *Log) Read(offset int64, maxBytes int) (Region, error) {
	return l.ReadUpTo(offset, maxBytes, math.MaxInt64)
}

// ReadUpTo is Read that stops before the batch holding maxOffset (a consumer
// reads up to the high watermark: ReadUpTo(o, n, HighWatermark())).
func (l *Log) ReadUpTo(offset int64, maxBytes int, maxOffset int64) (Region, error) {
	for attempt := 0; ; attempt++ {
		r, err := l.read(offset, maxBytes, maxOffset)
		// A segment removed between the lookup and the read: look again.
		if errors.Is(err, ErrSegmentDeleted) && attempt < 3 {
			continue
		}
		return r, err
	}
}

func (l *Log) read(offset int64, maxBytes int, maxOffset int64) (Region, error) {
	segs := l.segments()
	leo, start := l.leo.Load(), l.logStart.Load()
	if offset < start || offset > leo {
		return Region{}, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, offset, start, leo)
	}
	maxOffset = min(maxOffset, leo)
	if offset >= maxOffset || maxBytes <= 0 {
		return Region{}, nil
	}
	for i := max(floorSegment(segs, offset), 0); i < len(segs); i++ {
		seg := segs[i]
		var hbuf [record.HeaderSize]byte
		pos, found, err := seg.seek(offset, &hbuf)
		hdr := record.Batch(hbuf[:])
		if err != nil {
			return Region{}, err
		}
		if !found {
			continue // compaction left nothing at or after offset here
		}
		if hdr.BaseOffset() >= maxOffset {
			return Region{}, nil
		}
		end := seg.size.Load()
		if i == len(segs)-1 || segs[i+1].base > maxOffset {
			if end, err = seg.positionOf(maxOffset); err != nil {
				return Region{}, err
			}
		}
		n := min(int64(maxBytes), end-pos)
		n = max(n, int64(hdr.Size()))
		return Region{File: seg.file, Pos: pos, Len: n}, nil
	}
	return Region{}, nil
}

// OffsetForTimestamp finds the first record whose timestamp is >= ts and
// returns its offset and timestamp; found is false when no record is that
// late (Kafka's ListOffsets by timestamp).
func (l *Log) OffsetForTimestamp(ts int64) (offset, timestamp int64, found bool, err error) {
	start := l.logStart.Load()
	var it record.Iterator
	for _, seg := range l.segments() {
		if seg.maxTimestamp.Load() < ts {
			continue
		}
		_, o := seg.timeIndex.Lookup(ts)
		pos, err := seg.positionOf(max(o, start))
		if err != nil {
			return 0, 0, false, err
		}
		var hbuf [record.HeaderSize]byte
		for size := seg.size.Load(); pos < size; {
			h, err := seg.readHeader(pos, &hbuf)
			if err != nil {
				return 0, 0, false, err
			}
			n := int64(h.Size())
			if h.MaxTimestamp() >= ts && h.LastOffset() >= start {
				buf := GetBuffer(int(n))
				b := record.Batch(buf[:n])
				_, err := seg.file.File().ReadAt(b, pos)
				if err == nil {
					err = it.Reset(b)
				}
				for err == nil && it.Next() {
					r := it.Record()
					if r.Timestamp >= ts && r.Offset >= start {
						PutBuffer(buf)
						return r.Offset, r.Timestamp, true, nil
					}
				}
				if err == nil {
					err = it.Err()
				}
				PutBuffer(buf)
				if err != nil {
					return 0, 0, false, err
				}
			}
			pos += n
		}
	}
	return 0, 0, false, nil
}

// Close flushes nothing (durability is the flush policy's) but waits for
// background work, trims the active segment's indexes and closes every file.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil
	}
	l.mu.closed = true
	close(l.closing)
	l.mu.Unlock()
	l.bg.Wait()
	return l.closeSegments()
}

func (l *Log) closeSegments() error {
	p := l.segs.Load()
	if p == nil {
		return nil
	}
	var errs []error
	for _, s := range *p {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}

// parseSegmentBase reads the base offset from a file name such as
// 00000000000000000042.log, 00000000000000000042.log.swap.
func parseSegmentBase(name string) (int64, bool) {
	if len(name) < 20 {
		return 0, false
	}
	base, err := strconv.ParseInt(name[:20], 10, 64)
	if err != nil || base < 0 {
		return 0, false
	}
	return base, strings.HasPrefix(name[20:], ".")
}
