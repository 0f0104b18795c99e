package storage

// The time index: Kafka's .timeindex file, byte for byte.
//
// File name: the segment's base offset as 20 decimal digits, then
// ".timeindex" (00000000000000000000.timeindex). The file is an array of
// 12-byte entries, big-endian, with no header:
//
//	 0                               8               12
//	+-------------------------------+---------------+
//	|           timestamp           | relativeOffset|   entry 0
//	+-------------------------------+---------------+
//	...
//
//	timestamp      int64  a max timestamp seen so far in the segment (ms)
//	relativeOffset int32  offset - baseOffset of the record that carries it
//
// Timestamps strictly increase from entry to entry, relative offsets never
// decrease. A lookup answers "the largest indexed timestamp <= target, and the
// offset to start scanning from".
//
// The last slot is kept for the entry the log writes when the segment is
// sealed (its max timestamp): IsFull reports full one entry early, while
// MaybeAppend still fills that slot (Kafka's reserve, so a sealed segment's
// time index always ends with its largest timestamp).
//
// See mmap.go for preallocation, trimming and the concurrency contract.

import (
	"encoding/binary"
	"fmt"
)

// TimeIndexEntrySize is the size of a time index entry. Part of the format:
// do not change.
const TimeIndexEntrySize = 12

// NoTimestamp is the timestamp the time index returns when it has no entry to
// answer with (Kafka's RecordBatch.NO_TIMESTAMP). Part of the format: do not
// change.
const NoTimestamp int64 = -1

// TimeIndex is a segment's sparse timestamp -> offset index.
type TimeIndex struct {
	mmapIndex
}

// OpenTimeIndex opens (creating it when writable) the time index at path for
// the segment starting at baseOffset; see OpenOffsetIndex. maxIndexSize is
// rounded down to a multiple of 12.
func OpenTimeIndex(path string, baseOffset int64, maxIndexSize int, writable bool) (*TimeIndex, error) {
	x := &TimeIndex{}
	if err := openMmapIndex(&x.mmapIndex, path, baseOffset, TimeIndexEntrySize, maxIndexSize, writable); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *TimeIndex) entryAt(i int) (ts int64, rel int32) {
	b := x.slot(i)
	return int64(binary.BigEndian.Uint64(b[0:8])), int32(binary.BigEndian.Uint32(b[8:12]))
}

func (x *TimeIndex) tsAt(i int) int64 {
	off := i * TimeIndexEntrySize
	return int64(binary.BigEndian.Uint64(x.data[off : off+8]))
}

func (x *TimeIndex) relAt(i int) int64 {
	off := i*TimeIndexEntrySize + 8
	return int64(int32(binary.BigEndian.Uint32(x.data[off : off+4])))
}

// IsFull reports whether the segment must roll: true once only the reserved
// last slot is left (when the index has room for more than one entry). A
// read-only index is always full.
func (x *TimeIndex) IsFull() bool { return x.IsFullAfter(0) }

// IsFullAfter is IsFull once n more entries are appended: the log asks it
// about batches it has yet to write in the current run (appendrun.go).
func (x *TimeIndex) IsFullAfter(n int) bool {
	if x.maxEntries > 1 {
		return x.Entries()+n >= x.maxEntries-1
	}
	return x.Entries()+n >= x.maxEntries
}

// MaybeAppend adds (timestamp, offset) when timestamp is greater than the
// last entry's (NoTimestamp when empty, so negative timestamps are never
// indexed); otherwise it does nothing and returns nil. The offset must not be
// below the last entry's (else ErrCorruptIndex) and must lie in [baseOffset,
// baseOffset+MaxInt32] (else ErrOffsetOutOfRange). It may use the reserved
// last slot; with no slot left it returns ErrIndexFull (also for a read-only
// index), and ErrClosed once closed.
func (x *TimeIndex) MaybeAppend(timestamp int64, offset int64) error {
	rel, ok := x.relOffset(offset)
	if !ok {
		return fmt.Errorf("%w: offset %d does not fit time index %s (base offset %d)", ErrOffsetOutOfRange, offset, x.Path(), x.baseOffset)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.mu.open {
		return fmt.Errorf("%w: index %s", ErrClosed, x.Path())
	}
	n := int(x.entries.Load())
	lastTs, lastRel := NoTimestamp, int32(0)
	if n > 0 {
		lastTs, lastRel = x.entryAt(n - 1)
	}
	if rel < int64(lastRel) {
		return fmt.Errorf("%w: %s: offset %d is before the last entry's %d", ErrCorruptIndex, x.Path(), offset, x.baseOffset+int64(lastRel))
	}
	if timestamp <= lastTs {
		return nil
	}
	if err := x.beginAppendLocked(n); err != nil {
		return err
	}
	b := x.mu.entry[:TimeIndexEntrySize]
	binary.BigEndian.PutUint64(b[0:8], uint64(timestamp))
	binary.BigEndian.PutUint32(b[8:12], uint32(rel))
	if err := x.writeEntryLocked(n, b); err != nil {
		return err
	}
	x.entries.Store(int64(n + 1))
	return nil
}

// Lookup returns the largest indexed timestamp <= targetTimestamp and its
// offset, or (NoTimestamp, BaseOffset()) when there is none (or the index is
// closed). Records with timestamps >= target are at or after the returned
// offset. It takes no lock and does not allocate.
func (x *TimeIndex) Lookup(targetTimestamp int64) (timestamp int64, offset int64) {
	g, ok := x.enter()
	if !ok {
		return NoTimestamp, x.baseOffset
	}
	timestamp, offset = NoTimestamp, x.baseOffset
	if i := x.floorSlot(targetTimestamp, int(x.entries.Load())); i >= 0 {
		ts, rel := x.entryAt(i)
		timestamp, offset = ts, x.baseOffset+int64(rel)
	}
	x.exit(g)
	return timestamp, offset
}

// floorSlot returns the largest slot below n whose timestamp is <= target,
// or -1.
func (x *TimeIndex) floorSlot(target int64, n int) int {
	if n == 0 {
		return -1
	}
	lo, hi := 0, n-1
	if warm := n - 1 - warmSectionBytes/TimeIndexEntrySize; warm > 0 {
		if x.tsAt(warm) <= target {
			lo = warm
		} else {
			hi = warm - 1
		}
	}
	if lo == 0 && x.tsAt(0) > target {
		return -1
	}
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if x.tsAt(mid) <= target {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// Entry returns entry i, or (NoTimestamp, -1) when i is out of range or the
// index is closed.
func (x *TimeIndex) Entry(i int) (timestamp int64, offset int64) {
	g, ok := x.enter()
	if !ok {
		return NoTimestamp, -1
	}
	timestamp, offset = NoTimestamp, -1
	if i >= 0 && i < int(x.entries.Load()) {
		ts, rel := x.entryAt(i)
		timestamp, offset = ts, x.baseOffset+int64(rel)
	}
	x.exit(g)
	return timestamp, offset
}

// LastEntry returns the last entry, or (NoTimestamp, BaseOffset()) when the
// index is empty or closed.
func (x *TimeIndex) LastEntry() (timestamp int64, offset int64) {
	g, ok := x.enter()
	if !ok {
		return NoTimestamp, x.baseOffset
	}
	timestamp, offset = NoTimestamp, x.baseOffset
	if n := int(x.entries.Load()); n > 0 {
		ts, rel := x.entryAt(n - 1)
		timestamp, offset = ts, x.baseOffset+int64(rel)
	}
	x.exit(g)
	return timestamp, offset
}

// TruncateTo removes every entry whose offset is >= offset.
func (x *TimeIndex) TruncateTo(offset int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.mu.open {
		return
	}
	rel := x.searchKey(offset)
	lo, hi := 0, int(x.entries.Load())
	for lo < hi { // first slot whose offset is >= offset
		mid := int(uint(lo+hi) >> 1)
		if x.relAt(mid) < rel {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	x.truncateEntriesLocked(lo)
}

// Reset removes every entry (to rebuild the index).
func (x *TimeIndex) Reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.resetLocked()
}

// SanityCheck verifies the whole index: a file size that was a multiple of
// 12, timestamps >= 0 and strictly increasing, relative offsets >= 0 and
// never decreasing. A full-length file left by a crash has a zero tail, which
// fails the check. It returns an error wrapping ErrCorruptIndex naming the
// first bad entry, or ErrClosed. O(entries).
func (x *TimeIndex) SanityCheck() error {
	g, ok := x.enter()
	if !ok {
		return fmt.Errorf("%w: index %s", ErrClosed, x.Path())
	}
	defer x.exit(g)
	if err := x.checkSize(); err != nil {
		return err
	}
	data := x.data[:int(x.entries.Load())*TimeIndexEntrySize]
	var prevTs int64
	var prevRel int32
	for i := 0; len(data) >= TimeIndexEntrySize; i++ {
		ts, rel := int64(binary.BigEndian.Uint64(data[0:8])), int32(binary.BigEndian.Uint32(data[8:12]))
		data = data[TimeIndexEntrySize:]
		switch {
		case ts < 0:
			return fmt.Errorf("%w: %s: entry %d: negative timestamp %d", ErrCorruptIndex, x.Path(), i, ts)
		case rel < 0:
			return fmt.Errorf("%w: %s: entry %d: negative relative offset %d", ErrCorruptIndex, x.Path(), i, rel)
		case i > 0 && ts <= prevTs:
			return fmt.Errorf("%w: %s: entry %d: timestamp %d is not after entry %d's %d",
				ErrCorruptIndex, x.Path(), i, ts, i-1, prevTs)
		case i > 0 && rel < prevRel:
			return fmt.Errorf("%w: %s: entry %d: offset %d is before entry %d's %d",
				ErrCorruptIndex, x.Path(), i, x.baseOffset+int64(rel), i-1, x.baseOffset+int64(prevRel))
		}
		prevTs, prevRel = ts, rel
	}
	return nil
}
