package storage

// The offset index: Kafka's .index file, byte for byte.
//
// File name: the segment's base offset as 20 decimal digits, then ".index"
// (00000000000000000000.index). The file is an array of 8-byte entries,
// big-endian, with no header:
//
//	 0               4               8
//	+---------------+---------------+
//	| relativeOffset|   position    |   entry 0
//	+---------------+---------------+
//	| relativeOffset|   position    |   entry 1
//	+---------------+---------------+
//	...
//
//	relativeOffset int32  offset - baseOffset (the offset of the last record of
//	                      the batch the entry points at)
//	position       int32  byte position of that batch in the segment's .log
//
// The index is sparse (the log adds an entry every index.interval.bytes) and
// sorted: relative offsets strictly increase, positions never decrease. A
// lookup answers "the largest indexed offset <= target, and where its batch
// starts"; the reader scans the .log forward from there.
//
// See mmap.go for preallocation, trimming and the concurrency contract:
// appends come from one writer; Lookup, Entry, Entries, LastOffset and
// SanityCheck take no lock and may run concurrently with anything.

import (
	"encoding/binary"
	"fmt"
)

// OffsetIndexEntrySize is the size of an offset index entry. Part of the
// format: do not change.
const OffsetIndexEntrySize = 8

// warmSectionBytes is how much of an index's tail is searched first: most
// lookups (followers and consumers near the end) land there, so its pages stay
// hot in the cache (Kafka's "warm section").
const warmSectionBytes = 8192

// OffsetIndex is a segment's sparse offset -> position index.
type OffsetIndex struct {
	mmapIndex
}

// OpenOffsetIndex opens (creating it when writable) the offset index at path
// for the segment starting at baseOffset. The number of entries is the file's
// size / 8 (Close trims the file to its entries). A writable index holds up
// to maxIndexSize rounded down to a multiple of 8 bytes of entries (more if
// the existing file is larger); its file is extended to that size by the
// first append, not by the open, so reopening a sealed segment's index
// writable leaves its file alone. A read-only index maps the file as it is
// and can not be appended to. After an unclean shutdown the file may still be
// full length with a zero tail: call SanityCheck and rebuild the index when
// it fails.
func OpenOffsetIndex(path string, baseOffset int64, maxIndexSize int, writable bool) (*OffsetIndex, error) {
	x := &OffsetIndex{}
	if err := openMmapIndex(&x.mmapIndex, path, baseOffset, OffsetIndexEntrySize, maxIndexSize, writable); err != nil {
		return nil, err
	}
	return x, nil
}

// entryAt decodes entry i. The caller ensures i is below a count it may read.
func (x *OffsetIndex) entryAt(i int) (rel int32, pos int32) {
	b := x.slot(i)
	return int32(binary.BigEndian.Uint32(b[0:4])), int32(binary.BigEndian.Uint32(b[4:8]))
}

func (x *OffsetIndex) relAt(i int) int64 {
	off := i * OffsetIndexEntrySize
	return int64(int32(binary.BigEndian.Uint32(x.data[off : off+4])))
}

// IsFull reports whether Append would fail with ErrIndexFull for lack of
// room: the segment must roll. A read-only index is always full.
func (x *OffsetIndex) IsFull() bool { return x.IsFullAfter(0) }

// IsFullAfter is IsFull once n more entries are appended: the log asks it
// about batches it has yet to write in the current run (appendrun.go).
func (x *OffsetIndex) IsFullAfter(n int) bool { return x.Entries()+n >= x.maxEntries }

// Append adds an entry for offset at position. The offset must be greater
// than the last entry's (else ErrCorruptIndex) and within [baseOffset,
// baseOffset+MaxInt32] (else ErrOffsetOutOfRange); the position must be >= 0
// and >= the last entry's (else ErrCorruptIndex). A full or read-only index
// returns ErrIndexFull, a closed one ErrClosed.
func (x *OffsetIndex) Append(offset int64, position int32) error {
	rel, ok := x.relOffset(offset)
	if !ok {
		return fmt.Errorf("%w: offset %d does not fit index %s (base offset %d)", ErrOffsetOutOfRange, offset, x.Path(), x.baseOffset)
	}
	if position < 0 {
		return fmt.Errorf("%w: %s: negative position %d for offset %d", ErrCorruptIndex, x.Path(), position, offset)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	n := int(x.entries.Load())
	if err := x.beginAppendLocked(n); err != nil {
		return err
	}
	if n > 0 {
		lastRel, lastPos := x.entryAt(n - 1)
		if rel <= int64(lastRel) {
			return fmt.Errorf("%w: %s: offset %d is not after the last entry's %d", ErrCorruptIndex, x.Path(), offset, x.baseOffset+int64(lastRel))
		}
		if position < lastPos {
			return fmt.Errorf("%w: %s: position %d is before the last entry's %d", ErrCorruptIndex, x.Path(), position, lastPos)
		}
	}
	b := x.mu.entry[:OffsetIndexEntrySize]
	binary.BigEndian.PutUint32(b[0:4], uint32(rel))
	binary.BigEndian.PutUint32(b[4:8], uint32(position))
	if err := x.writeEntryLocked(n, b); err != nil {
		return err
	}
	x.entries.Store(int64(n + 1))
	return nil
}

// Lookup returns the largest indexed offset <= target and its position, or
// (BaseOffset(), 0) when there is none (or the index is closed): reading the
// .log from the returned position finds target if the segment holds it. It
// takes no lock and does not allocate.
func (x *OffsetIndex) Lookup(target int64) (offset int64, position int32) {
	g, ok := x.enter()
	if !ok {
		return x.baseOffset, 0
	}
	offset, position = x.baseOffset, 0
	if i := x.floorSlot(target, int(x.entries.Load())); i >= 0 {
		rel, pos := x.entryAt(i)
		offset, position = x.baseOffset+int64(rel), pos
	}
	x.exit(g)
	return offset, position
}

// floorSlot returns the largest slot below n whose offset is <= target, or -1.
func (x *OffsetIndex) floorSlot(target int64, n int) int {
	if n == 0 {
		return -1
	}
	rel := x.searchKey(target)
	if rel < 0 {
		return -1
	}
	// Search the warm tail first; fall back to the whole index.
	lo, hi := 0, n-1
	if warm := n - 1 - warmSectionBytes/OffsetIndexEntrySize; warm > 0 {
		if x.relAt(warm) <= rel {
			lo = warm
		} else {
			hi = warm - 1
		}
	}
	if lo == 0 && x.relAt(0) > rel {
		return -1
	}
	// Invariant: relAt(lo) <= rel; the answer is in [lo, hi].
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if x.relAt(mid) <= rel {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// ceilSlotLocked returns the smallest slot below n whose offset is >= target,
// or n. Called by the writer.
func (x *OffsetIndex) ceilSlotLocked(target int64, n int) int {
	rel := x.searchKey(target)
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if x.relAt(mid) < rel {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Entry returns entry i (for dump-log and checks), or (-1, -1) when i is out
// of range or the index is closed.
func (x *OffsetIndex) Entry(i int) (offset int64, position int32) {
	g, ok := x.enter()
	if !ok {
		return -1, -1
	}
	offset, position = -1, -1
	if i >= 0 && i < int(x.entries.Load()) {
		rel, pos := x.entryAt(i)
		offset, position = x.baseOffset+int64(rel), pos
	}
	x.exit(g)
	return offset, position
}

// LastOffset is the last entry's offset, or BaseOffset() when the index is
// empty or closed.
func (x *OffsetIndex) LastOffset() int64 {
	g, ok := x.enter()
	if !ok {
		return x.baseOffset
	}
	last := x.baseOffset
	if n := int(x.entries.Load()); n > 0 {
		last += x.relAt(n - 1)
	}
	x.exit(g)
	return last
}

// TruncateTo removes every entry whose offset is >= offset.
func (x *OffsetIndex) TruncateTo(offset int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.mu.open {
		return
	}
	n := int(x.entries.Load())
	x.truncateEntriesLocked(x.ceilSlotLocked(offset, n))
}

// Reset removes every entry (to rebuild the index).
func (x *OffsetIndex) Reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.resetLocked()
}

// SanityCheck verifies the whole index: a file size that was a multiple of 8,
// relative offsets >= 0 and strictly increasing, positions >= 0 and never
// decreasing. A full-length file left by a crash has a zero tail, which fails
// the check (two entries that are both zero do not increase). It returns an
// error wrapping ErrCorruptIndex naming the first bad entry, or ErrClosed. It
// reads every entry: O(entries), about a millisecond for 10 MiB in the page
// cache.
func (x *OffsetIndex) SanityCheck() error {
	g, ok := x.enter()
	if !ok {
		return fmt.Errorf("%w: index %s", ErrClosed, x.Path())
	}
	defer x.exit(g)
	if err := x.checkSize(); err != nil {
		return err
	}
	data := x.data[:int(x.entries.Load())*OffsetIndexEntrySize]
	var prevRel, prevPos int32
	for i := 0; len(data) >= OffsetIndexEntrySize; i++ {
		rel, pos := int32(binary.BigEndian.Uint32(data[0:4])), int32(binary.BigEndian.Uint32(data[4:8]))
		data = data[OffsetIndexEntrySize:]
		switch {
		case rel < 0:
			return fmt.Errorf("%w: %s: entry %d: negative relative offset %d", ErrCorruptIndex, x.Path(), i, rel)
		case pos < 0:
			return fmt.Errorf("%w: %s: entry %d: negative position %d", ErrCorruptIndex, x.Path(), i, pos)
		case i > 0 && rel <= prevRel:
			return fmt.Errorf("%w: %s: entry %d: offset %d is not after entry %d's %d",
				ErrCorruptIndex, x.Path(), i, x.baseOffset+int64(rel), i-1, x.baseOffset+int64(prevRel))
		case i > 0 && pos < prevPos:
			return fmt.Errorf("%w: %s: entry %d: position %d is before entry %d's %d",
				ErrCorruptIndex, x.Path(), i, pos, i-1, prevPos)
		}
		prevRel, prevPos = rel, pos
	}
	return nil
}
