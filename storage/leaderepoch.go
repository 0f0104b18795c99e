package storage

// The leader-epoch cache: for each leader epoch that wrote to this partition's
// log, the offset of its first record. A follower asks the leader for the end
// offset of its own latest epoch (EndOffsetFor) and truncates its log there,
// never to its high watermark (DESIGN §4).
//
// Kept in <partition dir>/leader-epoch-checkpoint, Kafka's file, written with
// WriteCheckpointFile (atomic replace):
//
//	0              version (LeaderEpochCheckpointVersion)
//	3              number of entries
//	0 0            epoch startOffset, one entry per line, in increasing order
//	2 1200
//	5 3000
//
// Entries strictly increase in both epoch and start offset.
//
// Concurrency: all methods are safe for concurrent use. The entries sit under
// a read-write mutex held only in memory; every change is written to the file
// before the method returns, by a separate flush mutex that is held across
// the write and fsync but never together with the entries' lock, so readers
// (Latest, EndOffsetFor, ...) never wait for the disk. The file write takes a
// snapshot of the entries at the time it runs, so it also carries any change
// made meanwhile by another caller.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// LeaderEpochCheckpointVersion is the version line of the cache's file,
// leader-epoch-checkpoint. Part of the format: do not change.
const LeaderEpochCheckpointVersion = 0

// UndefinedEpoch and UndefinedEpochOffset are what EndOffsetFor answers when
// it knows nothing about the requested epoch (Kafka's UNDEFINED_EPOCH and
// UNDEFINED_EPOCH_OFFSET; they travel in OffsetForLeaderEpoch responses).
// Part of the protocol: do not change.
const (
	UndefinedEpoch       int32 = -1
	UndefinedEpochOffset int64 = -1
)

// ErrInvalidEpochEntry: a leader epoch or start offset below zero was given
// to the leader-epoch cache.
var ErrInvalidEpochEntry = errors.New("storage: invalid leader epoch entry")

// EpochEntry is the first offset written by a leader epoch.
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

func (e EpochEntry) String() string {
	return fmt.Sprintf("EpochEntry(epoch=%d, startOffset=%d)", e.Epoch, e.StartOffset)
}

// LeaderEpochCache is a partition's leader-epoch cache backed by its
// leader-epoch-checkpoint file.
type LeaderEpochCache struct {
	path string

	mu struct {
		sync.RWMutex
		entries []EpochEntry
		version uint64 // counts changes
	}

	// flushMu serialises file writes; it is held across the write and the
	// fsyncs, never together with mu.
	flushMu sync.Mutex
	flushed uint64 // the version the file holds; guarded by flushMu
}

// OpenLeaderEpochCache reads the cache from the checkpoint file at path. A
// missing file is an empty cache (the file is created by the first change). A
// file that does not parse, has a negative value or entries that do not
// strictly increase in epoch and start offset returns ErrCorruptCheckpoint.
func OpenLeaderEpochCache(path string) (*LeaderEpochCache, error) {
	lines, err := ReadCheckpointFile(path, LeaderEpochCheckpointVersion)
	if err != nil {
		return nil, err
	}
	c := &LeaderEpochCache{path: path}
	entries := make([]EpochEntry, 0, len(lines))
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: %s: entry %d %q: want \"epoch startOffset\"", ErrCorruptCheckpoint, path, i, l)
		}
		epoch, err1 := strconv.ParseInt(f[0], 10, 32)
		start, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || epoch < 0 || start < 0 {
			return nil, fmt.Errorf("%w: %s: entry %d %q: bad epoch or offset", ErrCorruptCheckpoint, path, i, l)
		}
		e := EpochEntry{Epoch: int32(epoch), StartOffset: start}
		if n := len(entries); n > 0 && (e.Epoch <= entries[n-1].Epoch || e.StartOffset <= entries[n-1].StartOffset) {
			return nil, fmt.Errorf("%w: %s: entry %d %v does not follow %v", ErrCorruptCheckpoint, path, i, e, entries[n-1])
		}
		entries = append(entries, e)
	}
	c.mu.entries = entries
	return c, nil
}

// Path is the checkpoint file's name.
func (c *LeaderEpochCache) Path() string { return c.path }

// Assign records that epoch's first record is at startOffset. It follows
// Kafka's LeaderEpochFileCache.assign:
//
//   - When epoch is already the latest and startOffset is not below its start
//     offset, nothing changes (the common case, on every append; it takes
//     only a read lock).
//   - Otherwise every entry from the end whose epoch is >= epoch or whose
//     start offset is >= startOffset is removed, and the new entry appended.
//     So a larger epoch starting at or before a newer entry's start replaces
//     it, the latest epoch can move its start back, and an epoch lower than
//     the latest (which a log append never produces once the follower has
//     truncated) truncates the cache to it rather than being ignored: the
//     cache follows what was last written to the log.
//
// A negative epoch or start offset returns ErrInvalidEpochEntry and changes
// nothing. The change is durable when Assign returns nil; on a write error
// the cache has changed in memory only, and the next change rewrites the
// file.
func (c *LeaderEpochCache) Assign(epoch int32, startOffset int64) error {
	if epoch < 0 || startOffset < 0 {
		return fmt.Errorf("%w: epoch %d, start offset %d", ErrInvalidEpochEntry, epoch, startOffset)
	}
	e := EpochEntry{Epoch: epoch, StartOffset: startOffset}
	c.mu.RLock()
	needed := c.assignNeededLocked(e)
	c.mu.RUnlock()
	if !needed {
		return nil
	}
	c.mu.Lock()
	if !c.assignNeededLocked(e) {
		c.mu.Unlock()
		return nil
	}
	entries := c.mu.entries
	n := len(entries)
	for n > 0 && (entries[n-1].Epoch >= e.Epoch || entries[n-1].StartOffset >= e.StartOffset) {
		n--
	}
	c.mu.entries = append(entries[:n], e)
	c.mu.version++
	v := c.mu.version
	c.mu.Unlock()
	return c.persist(v)
}

func (c *LeaderEpochCache) assignNeededLocked(e EpochEntry) bool {
	n := len(c.mu.entries)
	if n == 0 {
		return true
	}
	last := c.mu.entries[n-1]
	return e.Epoch != last.Epoch || e.StartOffset < last.StartOffset
}

// Latest is the entry of the latest epoch; false when the cache is empty.
func (c *LeaderEpochCache) Latest() (EpochEntry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if n := len(c.mu.entries); n > 0 {
		return c.mu.entries[n-1], true
	}
	return EpochEntry{}, false
}

// Earliest is the entry of the earliest epoch; false when the cache is empty.
func (c *LeaderEpochCache) Earliest() (EpochEntry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.mu.entries) > 0 {
		return c.mu.entries[0], true
	}
	return EpochEntry{}, false
}

// Entries returns a copy of the entries, oldest first.
func (c *LeaderEpochCache) Entries() []EpochEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.mu.entries)
}

// EndOffsetFor answers OffsetForLeaderEpoch: the largest epoch <= requested
// that this log knows, and the end offset of requestedEpoch (the start offset
// of the first epoch after it). Kafka's endOffsetFor, case by case:
//
//	requested < 0 (UndefinedEpoch)          -> (UndefinedEpoch, UndefinedEpochOffset)
//	cache empty                             -> (UndefinedEpoch, UndefinedEpochOffset)
//	requested == latest epoch               -> (latest epoch, logEndOffset)
//	requested > latest epoch                -> (UndefinedEpoch, UndefinedEpochOffset)
//	requested < earliest epoch              -> (requested, earliest.StartOffset)
//	otherwise                               -> (largest epoch <= requested,
//	                                            start of the first epoch > requested)
//
// The "requested < earliest" row is current Kafka's (older Kafka answered
// undefined): the epochs before the earliest entry were removed with the log's
// start (TruncateFromStart), and answering the earliest start offset lets a
// follower that still has those epochs truncate to where the leader's log
// diverges instead of falling back to its high watermark.
func (c *LeaderEpochCache) EndOffsetFor(requestedEpoch int32, logEndOffset int64) (epoch int32, endOffset int64) {
	if requestedEpoch < 0 {
		return UndefinedEpoch, UndefinedEpochOffset
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	entries := c.mu.entries
	n := len(entries)
	if n == 0 {
		return UndefinedEpoch, UndefinedEpochOffset
	}
	if requestedEpoch == entries[n-1].Epoch {
		return requestedEpoch, logEndOffset
	}
	// higher is the first entry with an epoch > requested.
	higher, _ := slices.BinarySearchFunc(entries, requestedEpoch, func(e EpochEntry, t int32) int {
		if e.Epoch <= t {
			return -1
		}
		return 1
	})
	switch {
	case higher == n:
		return UndefinedEpoch, UndefinedEpochOffset
	case higher == 0:
		return requestedEpoch, entries[0].StartOffset
	default:
		return entries[higher-1].Epoch, entries[higher].StartOffset
	}
}

// TruncateFromEnd removes the entries whose start offset is >= endOffset
// (the log was truncated to endOffset). A negative endOffset does nothing.
func (c *LeaderEpochCache) TruncateFromEnd(endOffset int64) error {
	if endOffset < 0 {
		return nil
	}
	c.mu.Lock()
	entries := c.mu.entries
	n := len(entries)
	for n > 0 && entries[n-1].StartOffset >= endOffset {
		n--
	}
	if n == len(entries) {
		c.mu.Unlock()
		return nil
	}
	c.mu.entries = entries[:n]
	c.mu.version++
	v := c.mu.version
	c.mu.Unlock()
	return c.persist(v)
}

// TruncateFromStart drops what lies below startOffset (the log start moved
// up to it): the entries starting at or below startOffset are replaced by
// one, the last of them, whose start becomes startOffset. So
// TruncateFromStart(6) on [(1,0) (2,4) (3,8)] leaves [(2,6) (3,8)].
func (c *LeaderEpochCache) TruncateFromStart(startOffset int64) error {
	c.mu.Lock()
	entries := c.mu.entries
	k := 0 // entries[:k] start at or below startOffset
	for k < len(entries) && entries[k].StartOffset <= startOffset {
		k++
	}
	if k == 0 || (k == 1 && entries[0].StartOffset == startOffset) {
		c.mu.Unlock()
		return nil
	}
	kept := make([]EpochEntry, 0, len(entries)-k+1)
	kept = append(kept, EpochEntry{Epoch: entries[k-1].Epoch, StartOffset: startOffset})
	c.mu.entries = append(kept, entries[k:]...)
	c.mu.version++
	v := c.mu.version
	c.mu.Unlock()
	return c.persist(v)
}

// Clear removes every entry and writes the empty cache.
func (c *LeaderEpochCache) Clear() error {
	c.mu.Lock()
	c.mu.entries = nil
	c.mu.version++
	v := c.mu.version
	c.mu.Unlock()
	return c.persist(v)
}

// persist makes sure the file holds version v of the entries or a later one.
func (c *LeaderEpochCache) persist(v uint64) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if c.flushed >= v {
		return nil // a later caller's write already carried this change
	}
	c.mu.RLock()
	entries := slices.Clone(c.mu.entries)
	cur := c.mu.version
	c.mu.RUnlock()
	lines := make([]string, len(entries))
	for i, e := range entries {
		lines[i] = strconv.FormatInt(int64(e.Epoch), 10) + " " + strconv.FormatInt(e.StartOffset, 10)
	}
	if err := WriteCheckpointFile(c.path, LeaderEpochCheckpointVersion, lines); err != nil {
		return fmt.Errorf("storage: leader epoch cache: %w", err)
	}
	c.flushed = cur
	return nil
}
