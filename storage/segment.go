package storage

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/storage/record"
)

// A segment is three files named by the offset of their first batch, padded to
// 20 digits so they sort by name:
//
//	00000000000000000000.log        record batches, back to back, Kafka v2 format
//	00000000000000000000.index      sparse offset index (see index.go)
//	00000000000000000000.timeindex  sparse time index (see timeindex.go)
//
// Suffixes added during deletion and compaction (see log.go and cleaner.go):
//
//	.deleted   removed from the log, waiting for its readers to finish
//	.cleaned   a compacted copy being written; deleted if found at open
//	.swap      a complete compacted copy; found at open, it replaces the
//	           segments it covers
//
// The file names are part of the format: do not change.
const (
	LogFileSuffix       = ".log"
	IndexFileSuffix     = ".index"
	TimeIndexFileSuffix = ".timeindex"
	DeletedFileSuffix   = ".deleted"
	CleanedFileSuffix   = ".cleaned"
	SwapFileSuffix      = ".swap"
)

// SegmentFileName is the name of the file of kind suffix for the segment at base.
func SegmentFileName(base int64, suffix string) string { return fmt.Sprintf("%020d%s", base, suffix) }

// segment is one .log file with its two indexes. The writer fields are
// guarded by the owning Log's writer lock; size and the max-timestamp pair are
// atomics so readers can bound their reads without a lock.
type segment struct {
	base      int64
	dir       string
	file      *SegmentFile
	index     *OffsetIndex
	timeIndex *TimeIndex

	size                 atomic.Int64 // bytes of whole batches in .log
	maxTimestamp         atomic.Int64 // largest batch max timestamp, -1 if none
	offsetOfMaxTimestamp atomic.Int64

	renamed atomic.Bool // the files carry the .deleted suffix
	gone    atomic.Bool // closed or renamed: no longer the log's

	// Writer state.
	created         int64 // creation (or open) time, ms
	firstBatchTS    int64 // the first batch's max timestamp, -1 while empty
	bytesSinceIndex int64
}

func (s *segment) path(suffix string) string {
	return filepath.Join(s.dir, SegmentFileName(s.base, suffix))
}

// createSegment makes a new empty segment at base, replacing any leftover files.
func createSegment(dir string, base int64, cfg *Config, now time.Time) (*segment, error) {
	name := filepath.Join(dir, SegmentFileName(base, LogFileSuffix))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: create segment: %w", err)
	}
	for _, suffix := range []string{IndexFileSuffix, TimeIndexFileSuffix} {
		if err := os.Remove(filepath.Join(dir, SegmentFileName(base, suffix))); err != nil && !errors.Is(err, os.ErrNotExist) {
			f.Close()
			return nil, fmt.Errorf("storage: create segment: %w", err)
		}
	}
	s, err := openSegmentFiles(dir, base, f, cfg)
	if err != nil {
		return nil, err
	}
	s.created = now.UnixMilli()
	return s, nil
}

// openSegment opens an existing segment. Its size is the file's size; the
// caller recovers it (recover) when the tail may be torn.
func openSegment(dir string, base int64, cfg *Config, now time.Time) (*segment, error) {
	name := filepath.Join(dir, SegmentFileName(base, LogFileSuffix))
	f, err := os.OpenFile(name, os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: open segment: %w", err)
	}
	s, err := openSegmentFiles(dir, base, f, cfg)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("storage: open segment: %w", err)
	}
	s.size.Store(fi.Size())
	s.created = now.UnixMilli()
	if ts, off := s.timeIndex.LastEntry(); ts >= 0 {
		s.maxTimestamp.Store(ts)
		s.offsetOfMaxTimestamp.Store(off)
	}
	return s, nil
}

func openSegmentFiles(dir string, base int64, f *os.File, cfg *Config) (*segment, error) {
	s := &segment{base: base, dir: dir, file: OpenSegmentFile(f), firstBatchTS: -1}
	s.maxTimestamp.Store(-1)
	s.offsetOfMaxTimestamp.Store(base)
	var err error
	if s.index, err = OpenOffsetIndex(s.path(IndexFileSuffix), base, cfg.MaxIndexSize, true); err != nil {
		f.Close()
		return nil, err
	}
	if s.timeIndex, err = OpenTimeIndex(s.path(TimeIndexFileSuffix), base, cfg.MaxIndexSize, true); err != nil {
		s.index.Close()
		f.Close()
		return nil, err
	}
	return s, nil
}

// indexesSane reports whether both indexes pass their sanity checks and point
// inside the log file.
func (s *segment) indexesSane() bool {
	if s.index.SanityCheck() != nil || s.timeIndex.SanityCheck() != nil {
		return false
	}
	if n := s.index.Entries(); n > 0 {
		if _, pos := s.index.Entry(n - 1); int64(pos) >= s.size.Load() {
			return false
		}
	}
	return true
}

// readHeader reads the batch header at pos into buf and checks its framing
// against the segment's size. A header that runs past size is ErrShortBatch.
func (s *segment) readHeader(pos int64, buf *[record.HeaderSize]byte) (record.Batch, error) {
	size := s.size.Load()
	if pos+record.HeaderSize > size {
		return nil, record.ErrShortBatch
	}
	if _, err := s.file.File().ReadAt(buf[:], pos); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil, fmt.Errorf("%w: %s", ErrSegmentDeleted, s.path(LogFileSuffix))
		}
		return nil, fmt.Errorf("storage: read %s at %d: %w", s.path(LogFileSuffix), pos, err)
	}
	b := record.Batch(buf[:])
	if b.Magic() != record.Magic || b.Size() < record.HeaderSize {
		return nil, fmt.Errorf("%w: bad header at %s:%d", record.ErrCorruptRecord, s.path(LogFileSuffix), pos)
	}
	if pos+int64(b.Size()) > size {
		return nil, record.ErrShortBatch
	}
	return b, nil
}

// seek finds the first batch whose last offset is >= target, scanning
// from the index's floor entry, and leaves its header in hdr. found is false
// when every batch in the segment ends before target; pos is then the size.
func (s *segment) seek(target int64, hdr *[record.HeaderSize]byte) (pos int64, found bool, err error) {
	_, p := s.index.Lookup(target)
	pos = int64(p)
	for size := s.size.Load(); pos < size; {
		h, err := s.readHeader(pos, hdr)
		if err != nil {
			return 0, false, err
		}
		if h.LastOffset() >= target {
			return pos, true, nil
		}
		pos += int64(h.Size())
	}
	return s.size.Load(), false, nil
}

// positionOf is the byte position of the first batch whose last offset is
// >= target, or the segment's size.
func (s *segment) positionOf(target int64) (int64, error) {
	var hdr [record.HeaderSize]byte
	pos, _, err := s.seek(target, &hdr)
	return pos, err
}

// writeRun writes run, one or more whole batches with their offsets assigned,
// at the end of the segment in one write, and publishes none of it: the
// caller then accounts each batch with addBatch, in order, which is what
// moves size (and so what readers may see). Called with the log's writer lock
// held.
func (s *segment) writeRun(run []byte) error {
	if _, err := s.file.File().WriteAt(run, s.size.Load()); err != nil {
		return fmt.Errorf("%w: write %s: %v", ErrStorageFailed, s.path(LogFileSuffix), err)
	}
	return nil
}

// addBatch accounts b, the next batch writeRun wrote after the segment's
// current size: the roll clock, the indexes, then the size that publishes it.
// Called with the log's writer lock held.
func (s *segment) addBatch(b record.Batch, indexInterval int64) error {
	pos := s.size.Load()
	if pos == 0 {
		s.firstBatchTS = b.MaxTimestamp()
	}
	if err := s.indexBatch(b, pos, indexInterval); err != nil {
		return err
	}
	s.size.Add(int64(len(b)))
	return nil
}

// waitedForRoll is how long a segment has been open for segment.ms, as
// Kafka measures it: from its first batch's timestamp to the incoming
// batch's, or from the segment's creation when timestamps are missing.
func waitedForRoll(firstBatchTS, createdMs, nowMs, batchTS int64) int64 {
	if firstBatchTS >= 0 && batchTS >= 0 {
		return batchTS - firstBatchTS
	}
	return nowMs - createdMs
}

// indexDue reports whether the batch after bytesSinceIndex bytes of
// unindexed batches gets an entry in the indexes (index.interval.bytes).
func indexDue(bytesSinceIndex, indexInterval int64) bool {
	return bytesSinceIndex > indexInterval
}

// indexBatch accounts a batch written at pos: the max timestamp, and an
// entry in both indexes once indexInterval bytes have passed since the last.
func (s *segment) indexBatch(b record.Batch, pos, indexInterval int64) error {
	if ts := b.MaxTimestamp(); ts > s.maxTimestamp.Load() {
		s.maxTimestamp.Store(ts)
		s.offsetOfMaxTimestamp.Store(b.LastOffset())
	}
	if indexDue(s.bytesSinceIndex, indexInterval) {
		if err := s.index.Append(b.LastOffset(), int32(pos)); err != nil {
			return err
		}
		if err := s.timeIndex.MaybeAppend(s.maxTimestamp.Load(), s.offsetOfMaxTimestamp.Load()); err != nil {
			return err
		}
		s.bytesSinceIndex = 0
	}
	s.bytesSinceIndex += int64(len(b))
	return nil
}

// nextOffset scans the tail after the last index entry for the offset after
// the segment's last batch; base if the segment is empty.
func (s *segment) nextOffset() (int64, error) {
	var buf [record.HeaderSize]byte
	_, p := s.index.Lookup(math.MaxInt64)
	pos, next := int64(p), s.base
	size := s.size.Load()
	for pos < size {
		h, err := s.readHeader(pos, &buf)
		if err != nil {
			return 0, err
		}
		next = h.NextOffset()
		pos += int64(h.Size())
	}
	return next, nil
}

// recover validates every batch from the start of the segment, rebuilds both
// indexes, and truncates the file at the first torn or corrupt batch. It
// returns the offset after the last valid batch and the number of bytes cut.
// expectNext is the smallest offset the first batch may have.
func (s *segment) recover(expectNext int64, indexInterval int64, onBatch func(record.Batch)) (next int64, cut int64, err error) {
	f := s.file.File()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("storage: recover %s: %w", s.path(LogFileSuffix), err)
	}
	fileSize := fi.Size()
	s.index.Reset()
	s.timeIndex.Reset()
	s.maxTimestamp.Store(-1)
	s.offsetOfMaxTimestamp.Store(s.base)
	s.bytesSinceIndex = 0
	s.firstBatchTS = -1
	s.size.Store(0)
	next = max(expectNext, s.base)

	pos, _, err := ScanBatches(f, fileSize, func(pos int64, b record.Batch) error {
		if b.BaseOffset() < next {
			return fmt.Errorf("%w: offset %d after %d", record.ErrCorruptRecord, b.BaseOffset(), next)
		}
		if b.LastOffset()-s.base > math.MaxInt32 {
			return fmt.Errorf("%w: offset %d too far from segment base %d", record.ErrCorruptRecord, b.LastOffset(), s.base)
		}
		if err := s.indexBatch(b, pos, indexInterval); err != nil {
			return err
		}
		if pos == 0 {
			s.firstBatchTS = b.MaxTimestamp()
		}
		if onBatch != nil {
			onBatch(b)
		}
		next = b.NextOffset()
		s.size.Store(pos + int64(len(b)))
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("storage: recover %s: %w", s.path(LogFileSuffix), err)
	}
	if pos < fileSize {
		if err := s.truncateFile(pos); err != nil {
			return 0, 0, fmt.Errorf("%w: truncate %s: %v", ErrStorageFailed, s.path(LogFileSuffix), err)
		}
	}
	return next, fileSize - pos, nil
}

// truncateTo removes every batch whose last offset is >= offset. A batch that
// straddles offset goes whole. It returns the segment's new next offset.
func (s *segment) truncateTo(offset int64) (int64, error) {
	pos, err := s.positionOf(offset)
	if err != nil {
		return 0, err
	}
	if err := s.truncateFile(pos); err != nil {
		return 0, fmt.Errorf("%w: truncate %s: %v", ErrStorageFailed, s.path(LogFileSuffix), err)
	}
	s.size.Store(pos)
	if pos == 0 {
		s.firstBatchTS = -1
	}
	s.index.TruncateTo(offset)
	s.timeIndex.TruncateTo(offset)
	// Recompute the max timestamp and the next offset from what is left.
	s.maxTimestamp.Store(-1)
	s.offsetOfMaxTimestamp.Store(s.base)
	var buf [record.HeaderSize]byte
	next := s.base
	_, p := s.index.Lookup(math.MaxInt64)
	if ts, off := s.timeIndex.LastEntry(); ts >= 0 {
		s.maxTimestamp.Store(ts)
		s.offsetOfMaxTimestamp.Store(off)
	}
	for q := int64(p); q < pos; {
		h, err := s.readHeader(q, &buf)
		if err != nil {
			return 0, err
		}
		if h.MaxTimestamp() > s.maxTimestamp.Load() {
			s.maxTimestamp.Store(h.MaxTimestamp())
			s.offsetOfMaxTimestamp.Store(h.LastOffset())
		}
		next = h.NextOffset()
		q += int64(h.Size())
	}
	// Every entry left in the index names a batch before pos, so the walk
	// from the last one reaches the last remaining batch (none: base).
	s.bytesSinceIndex = 0
	return next, nil
}

// truncateFile cuts the .log file at size. A live mapping of the file
// (Region.Mmap, held only for the length of one send) makes SegmentFile
// refuse, since a mapped page past the new end would fault; truncation waits
// for it, up to a bound.
func (s *segment) truncateFile(size int64) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.file.Truncate(size)
		if !errors.Is(err, ErrRegionMapped) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// seal finishes a segment that stops being active: its time index gets the
// segment's max timestamp as its last entry and both indexes shrink to size.
func (s *segment) seal() error {
	if ts := s.maxTimestamp.Load(); ts >= 0 {
		if err := s.timeIndex.MaybeAppend(ts, s.offsetOfMaxTimestamp.Load()); err != nil && !errors.Is(err, ErrIndexFull) {
			return err
		}
	}
	if err := s.index.TrimToValidSize(); err != nil {
		return err
	}
	return s.timeIndex.TrimToValidSize()
}

// flush fsyncs the log file and both indexes. A segment deleted meanwhile
// (by retention or truncation, while a background flush ran) has nothing
// left to make durable.
func (s *segment) flush() error {
	err := s.file.File().Sync()
	if err != nil {
		err = fmt.Errorf("%w: fsync %s: %v", ErrStorageFailed, s.path(LogFileSuffix), err)
	} else if err = s.index.Flush(); err == nil {
		err = s.timeIndex.Flush()
	}
	if err != nil && s.gone.Load() {
		return nil
	}
	return err
}

// rebuildIndexes rebuilds both indexes from the log file, keeping its size.
func (s *segment) rebuildIndexes(indexInterval int64) error {
	_, _, err := s.recover(s.base, indexInterval, nil)
	return err
}

// close closes the files; the indexes are trimmed to their valid size.
func (s *segment) close() error {
	s.gone.Store(true)
	err := errors.Join(s.index.Close(), s.timeIndex.Close())
	s.file.CloseWhenUnused()
	return err
}

// renameDeleted gives the segment's files the .deleted suffix; the log no
// longer lists it, readers that hold it keep their open file.
func (s *segment) renameDeleted() error {
	s.gone.Store(true)
	s.renamed.Store(true)

	var errs []error
	if err := os.Rename(s.path(LogFileSuffix), s.path(LogFileSuffix+DeletedFileSuffix)); err != nil {
		errs = append(errs, err)
	}
	if err := s.index.Rename(s.path(IndexFileSuffix + DeletedFileSuffix)); err != nil {
		errs = append(errs, err)
	}
	if err := s.timeIndex.Rename(s.path(TimeIndexFileSuffix + DeletedFileSuffix)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// remove closes the segment (the fd closes once its last reader is done) and
// deletes its files: the .deleted ones once renamed, since a new segment
// (compaction's replacement, a restarted log) may own the plain names by then.
func (s *segment) remove() error {
	var errs []error
	errs = append(errs, s.index.Delete(), s.timeIndex.Delete())
	s.file.CloseWhenUnused()
	name := s.path(LogFileSuffix)
	if s.renamed.Load() {
		name = s.path(LogFileSuffix + DeletedFileSuffix)
	}
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
