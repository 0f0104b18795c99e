package storage

// The memory-mapped file under both indexes (index.go, timeindex.go).
//
// An index file is an array of fixed-size entries. A writable index is
// mapped at its maximum size; the first append after open (or after a trim)
// extends the file to that size (sparse, by ftruncate: Kafka's
// preallocation). The number of valid entries lives in memory and the file is
// cut back to entries*entrySize by TrimToValidSize and Close, so a cleanly
// closed file's size says how many entries it holds (Kafka's rule). A file
// that is still full length after a crash has a zeroed tail: the index's
// SanityCheck finds it and the log rebuilds the index. Because the extension
// waits for an append, opening a sealed segment's index writable leaves its
// file as it is, and a crash leaves full-length files only for the indexes
// written since they were opened.
//
//	file:    | entry 0 | entry 1 | ... | entry n-1 | zeroes (preallocated) ... |
//	         0                             n*entrySize                   mapLen
//
// Concurrency. One writer (Append, TruncateTo, Reset, TrimToValidSize,
// Rename, Close, Delete; serialised by mu) and any number of readers (Lookup,
// Entry, Entries, LastOffset, LastEntry, SanityCheck, Flush) that take no
// lock and never block:
//
//   - The mapping is made once at open and stays at the same address and
//     length until Close; the file is grown and shrunk underneath it with
//     ftruncate, never remapped, so a reader's slice never dangles.
//   - The entry count is published atomically after the entry's bytes are
//     written, so a reader that loads n sees n complete entries.
//   - Shrinking (TruncateTo, Reset, TrimToValidSize) and unmapping (Close,
//     Delete) first publish the new state, then wait for the readers that may
//     have seen the old one to leave (a grace period, as in RCU: readers
//     register in one of two counters chosen by a generation; the writer flips
//     the generation and waits for the old counter to drain). Only then are
//     entries zeroed, the file cut or the mapping removed. A reader therefore
//     never reads past the end of the file (SIGBUS) or an unmapped page
//     (SIGSEGV), and entries it reads are never overwritten under it.
//
// A reader that arrives after Close gets the empty answer (see each method).

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// mmapIndex is the part shared by OffsetIndex and TimeIndex: the file, its
// mapping, the entry count and the reader gate.
type mmapIndex struct {
	baseOffset int64
	entrySize  int
	writable   bool

	// data is the mapping: mapLen bytes, fixed from open to close. nil when
	// the mapping is empty (a read-only index of an empty file) or closed.
	// Written only by open and by close, after the grace period.
	data []byte
	// maxEntries is len(data)/entrySize: the index's capacity.
	maxEntries int
	// entries is the number of valid entries, published after their bytes.
	entries atomic.Int64

	// The reader gate.
	closed  atomic.Bool
	gen     atomic.Uint64
	readers [2]atomic.Int64

	// file is the open index file, fixed from open to close (Flush syncs it
	// as a registered reader, so Close closes it only after the grace period).
	file *os.File
	// badSize is set when the file's size at open was not a multiple of the
	// entry size; SanityCheck reports it until Reset.
	badSize atomic.Bool
	path    atomic.Pointer[string]

	// mu serialises the writer's operations; readers never take it.
	mu struct {
		sync.Mutex
		open     bool     // false once closed
		fileSize int64    // the file's current size
		entry    [16]byte // the entry being appended (writeEntryLocked)
	}
}

// openMmapIndex opens or creates the index file at path and maps it. A
// writable index is mapped at maxIndexSize rounded down to a multiple of
// entrySize (or at the existing file's size if that is larger, so no entry is
// lost), the file itself left as it is until the first append; a read-only
// index maps the file as it is.
func openMmapIndex(x *mmapIndex, path string, baseOffset int64, entrySize, maxIndexSize int, writable bool) error {
	x.baseOffset = baseOffset
	x.entrySize = entrySize
	x.writable = writable
	x.path.Store(&path)
	if baseOffset < 0 {
		return fmt.Errorf("%w: index %s: negative base offset %d", ErrInvalidConfig, path, baseOffset)
	}
	flag, prot := os.O_RDONLY, unix.PROT_READ
	if writable {
		if maxIndexSize < entrySize {
			return fmt.Errorf("%w: index %s: max index size %d is smaller than one entry (%d bytes)",
				ErrInvalidConfig, path, maxIndexSize, entrySize)
		}
		flag, prot = os.O_RDWR|os.O_CREATE, unix.PROT_READ|unix.PROT_WRITE
	}
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return fmt.Errorf("storage: open index: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("storage: open index: %w", err)
	}
	size := fi.Size()
	valid := size - size%int64(entrySize)
	if valid/int64(entrySize) > int64(maxInt32Entries) {
		f.Close()
		return fmt.Errorf("%w: %s: %d bytes is more entries than an index can address", ErrCorruptIndex, path, size)
	}
	mapLen := valid
	if writable {
		mapLen = max(valid, int64(maxIndexSize-maxIndexSize%entrySize))
		if mapLen > int64(maxInt32Entries)*int64(entrySize) {
			mapLen = int64(maxInt32Entries) * int64(entrySize)
		}
	}
	if mapLen > 0 {
		x.data, err = unix.Mmap(int(f.Fd()), 0, int(mapLen), prot, unix.MAP_SHARED)
		if err != nil {
			f.Close()
			return fmt.Errorf("storage: mmap index %s: %w", path, err)
		}
	}
	x.maxEntries = int(mapLen) / entrySize
	x.entries.Store(valid / int64(entrySize))
	x.file = f
	x.mu.open = true
	x.mu.fileSize = size
	x.badSize.Store(size%int64(entrySize) != 0)
	return nil
}

// maxInt32Entries bounds an index's entry count so that counts and slots fit
// an int32 on every platform.
const maxInt32Entries = 1<<31 - 1

// enter registers a reader; it returns false (and registers nothing) when the
// index is closed. Every true enter is paired with exit(g).
func (x *mmapIndex) enter() (uint64, bool) {
	for {
		g := x.gen.Load()
		x.readers[g&1].Add(1)
		if x.gen.Load() == g {
			if x.closed.Load() {
				x.readers[g&1].Add(-1)
				return 0, false
			}
			return g, true
		}
		// The writer flipped the generation meanwhile: register again in
		// the new one, so the writer does not wait for us forever.
		x.readers[g&1].Add(-1)
	}
}

func (x *mmapIndex) exit(g uint64) { x.readers[g&1].Add(-1) }

// synchronizeLocked waits until every reader that entered before the call
// has left. Called by the writer with mu held, after publishing the state
// those readers must no longer see.
func (x *mmapIndex) synchronizeLocked() {
	old := x.gen.Add(1) - 1
	for spin := 0; x.readers[old&1].Load() != 0; spin++ {
		if spin < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// relOffset converts offset to an offset relative to the base offset; ok is
// false when it does not fit an entry (below the base or beyond MaxInt32).
// Unlike a plain subtraction it cannot wrap around.
func (x *mmapIndex) relOffset(offset int64) (rel int64, ok bool) {
	if offset < x.baseOffset || offset-x.baseOffset > math.MaxInt32 {
		return 0, false
	}
	return offset - x.baseOffset, true
}

// searchKey maps a target offset onto the relative offsets stored in the
// index for a comparison: -1 below the base, MaxInt32+1 beyond the range.
func (x *mmapIndex) searchKey(offset int64) int64 {
	if offset < x.baseOffset {
		return -1
	}
	if offset-x.baseOffset > math.MaxInt32 {
		return math.MaxInt32 + 1
	}
	return offset - x.baseOffset
}

// pageSize is the unit in which the kernel backs the mapping.
var pageSize = os.Getpagesize()

// writeEntryLocked writes entry n (the writer, under mu). An entry that is
// the first to reach a page of the preallocated file goes through pwrite: a
// store into a hole of a shared file mapping makes the kernel allocate the
// block inside the page fault, which costs milliseconds for a file's first
// page on ext4 (BenchmarkIndexFillPage; 512 new partitions took seconds to
// take their first batches), where pwrite takes microseconds. Later entries
// on the page, which the kernel now backs, are plain stores.
func (x *mmapIndex) writeEntryLocked(n int, entry []byte) error {
	off := n * x.entrySize
	if n == 0 || (off+x.entrySize-1)/pageSize != (off-1)/pageSize {
		if _, err := x.file.WriteAt(entry, int64(off)); err != nil {
			return fmt.Errorf("storage: write index %s: %w", x.Path(), err)
		}
		return nil
	}
	copy(x.slot(n), entry)
	return nil
}

// slot returns entry i's bytes. The caller knows i < a count it loaded while
// registered as a reader, or is the writer.
func (x *mmapIndex) slot(i int) []byte {
	off := i * x.entrySize
	return x.data[off : off+x.entrySize : off+x.entrySize]
}

// BaseOffset is the offset of the segment's first record.
func (x *mmapIndex) BaseOffset() int64 { return x.baseOffset }

// Path is the index file's current name (it changes with Rename).
func (x *mmapIndex) Path() string { return *x.path.Load() }

// Entries is the number of valid entries.
func (x *mmapIndex) Entries() int { return int(x.entries.Load()) }

// MaxEntries is the capacity: for a writable index maxIndexSize/entrySize
// (or more when an existing file was larger), for a read-only one the number
// of entries the file held.
func (x *mmapIndex) MaxEntries() int { return x.maxEntries }

// beginAppendLocked checks that slot n can be written and makes sure the file
// covers it: the file is extended to the mapping's length the first time an
// append needs it after open or after TrimToValidSize.
func (x *mmapIndex) beginAppendLocked(n int) error {
	if !x.mu.open {
		return fmt.Errorf("%w: index %s", ErrClosed, x.Path())
	}
	if !x.writable {
		return fmt.Errorf("%w: index %s is read-only", ErrIndexFull, x.Path())
	}
	if n >= x.maxEntries {
		return fmt.Errorf("%w: %s has %d entries", ErrIndexFull, x.Path(), n)
	}
	if end := int64(n+1) * int64(x.entrySize); end > x.mu.fileSize {
		full := int64(len(x.data))
		if err := x.file.Truncate(full); err != nil {
			return fmt.Errorf("storage: preallocate index %s: %w", x.Path(), err)
		}
		x.mu.fileSize = full
	}
	return nil
}

// truncateEntriesLocked drops entries [n, Entries()): it publishes the new
// count, waits for readers that may have loaded the old one, then zeroes the
// dropped slots so that a crash before the next trim leaves a zero tail that
// SanityCheck recognises rather than stale entries that look valid.
func (x *mmapIndex) truncateEntriesLocked(n int) {
	old := int(x.entries.Load())
	if n >= old || !x.mu.open {
		return
	}
	x.entries.Store(int64(n))
	x.synchronizeLocked()
	if x.writable {
		clear(x.data[n*x.entrySize : old*x.entrySize])
	}
}

// TrimToValidSize cuts the file to the valid entries, so that the file's size
// tells a later open how many there are. The mapping stays; a later Append
// grows the file again. A no-op for a read-only index.
func (x *mmapIndex) TrimToValidSize() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.trimLocked()
}

func (x *mmapIndex) trimLocked() error {
	if !x.mu.open {
		return fmt.Errorf("%w: index %s", ErrClosed, x.Path())
	}
	if !x.writable {
		return nil
	}
	size := x.entries.Load() * int64(x.entrySize)
	if size == x.mu.fileSize {
		return nil
	}
	// Readers only read below the count they loaded. Counts published since
	// the last shrink only grew, and readers of older, larger counts were
	// waited for by that shrink: no reader looks past entries now, so
	// cutting the file here cannot strand one beyond the end (SIGBUS).
	if err := x.file.Truncate(size); err != nil {
		return fmt.Errorf("storage: trim index %s: %w", x.Path(), err)
	}
	x.mu.fileSize = size
	return nil
}

// Flush writes the mapping's dirty pages and the file's size to disk (msync,
// then fsync). It takes no lock: appends go on while it runs.
func (x *mmapIndex) Flush() error {
	g, ok := x.enter()
	if !ok {
		return fmt.Errorf("%w: index %s", ErrClosed, x.Path())
	}
	defer x.exit(g)
	if !x.writable {
		return nil
	}
	if x.data != nil {
		if err := unix.Msync(x.data, unix.MS_SYNC); err != nil {
			return fmt.Errorf("storage: msync index %s: %w", x.Path(), err)
		}
	}
	// The file stays open while a reader is registered (Close waits).
	if err := x.file.Sync(); err != nil {
		return fmt.Errorf("storage: fsync index %s: %w", x.Path(), err)
	}
	return nil
}

// Close trims the file to its valid size (writable indexes), unmaps it and
// closes it. It waits for readers in flight; readers arriving later get the
// empty answer. Closing twice returns nil.
func (x *mmapIndex) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.closeLocked(true)
}

func (x *mmapIndex) closeLocked(trim bool) error {
	if !x.mu.open {
		return nil
	}
	var errs []error
	if trim {
		errs = append(errs, x.trimLocked())
	}
	x.closed.Store(true)
	x.synchronizeLocked()
	if x.data != nil {
		if err := unix.Munmap(x.data); err != nil {
			errs = append(errs, fmt.Errorf("storage: munmap index %s: %w", x.Path(), err))
		}
		x.data = nil
	}
	if err := x.file.Close(); err != nil {
		errs = append(errs, fmt.Errorf("storage: close index %s: %w", x.Path(), err))
	}
	x.mu.open = false
	return errors.Join(errs...)
}

// Rename moves the index file to newPath. It works on an open index (the
// mapping follows the file) and on a closed one.
func (x *mmapIndex) Rename(newPath string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := os.Rename(x.Path(), newPath); err != nil {
		return fmt.Errorf("storage: rename index: %w", err)
	}
	x.path.Store(&newPath)
	return nil
}

// Delete closes the index (without trimming) and removes its file. A file
// that is already gone is not an error.
func (x *mmapIndex) Delete() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	cerr := x.closeLocked(false)
	if err := os.Remove(x.Path()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errors.Join(cerr, fmt.Errorf("storage: delete index: %w", err))
	}
	return cerr
}

// resetLocked empties the index and forgets a bad size found at open.
func (x *mmapIndex) resetLocked() {
	x.truncateEntriesLocked(0)
	x.badSize.Store(false)
}

// checkSize is the part of SanityCheck shared by both indexes.
func (x *mmapIndex) checkSize() error {
	if x.badSize.Load() {
		return fmt.Errorf("%w: %s: file size is not a multiple of the entry size %d", ErrCorruptIndex, x.Path(), x.entrySize)
	}
	return nil
}
