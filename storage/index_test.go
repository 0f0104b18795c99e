package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func openTestIndex(t testing.TB, base int64, maxSize int) *OffsetIndex {
	t.Helper()
	x, err := OpenOffsetIndex(filepath.Join(t.TempDir(), "00000000000000000000.index"), base, maxSize, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// The bytes on disk are Kafka's: pin them.
func TestOffsetIndexFormat(t *testing.T) {
	x := openTestIndex(t, 1000, 1024)
	if err := x.Append(1003, 100); err != nil {
		t.Fatal(err)
	}
	if err := x.Append(1000+math.MaxInt32, math.MaxInt32); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(x.Path())
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0, 3, 0, 0, 0, 100, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff}
	if !bytes.Equal(raw, want) {
		t.Fatalf("file %x, want %x", raw, want)
	}
	if OffsetIndexEntrySize != 8 || TimeIndexEntrySize != 12 || NoTimestamp != -1 {
		t.Fatal("format constants changed")
	}
}

func TestOffsetIndexAppendLookup(t *testing.T) {
	x := openTestIndex(t, 100, 10*8+7) // rounded down to 10 entries
	if x.MaxEntries() != 10 || x.Entries() != 0 || x.IsFull() || x.LastOffset() != 100 || x.BaseOffset() != 100 {
		t.Fatalf("new index: max %d entries %d full %v last %d", x.MaxEntries(), x.Entries(), x.IsFull(), x.LastOffset())
	}
	if off, pos := x.Lookup(500); off != 100 || pos != 0 {
		t.Fatalf("empty lookup = %d,%d", off, pos)
	}
	for i := int64(0); i < 10; i++ {
		if err := x.Append(100+10*i+5, int32(1000*i)); err != nil {
			t.Fatal(err)
		}
	}
	if !x.IsFull() || x.LastOffset() != 195 {
		t.Fatalf("full %v last %d", x.IsFull(), x.LastOffset())
	}
	if err := x.Append(300, 99999); !errors.Is(err, ErrIndexFull) {
		t.Fatalf("append to full index: %v", err)
	}
	for _, tc := range []struct {
		target int64
		off    int64
		pos    int32
	}{
		{0, 100, 0}, {99, 100, 0}, {100, 100, 0}, {104, 100, 0}, {105, 105, 0}, {106, 105, 0},
		{114, 105, 0}, {115, 115, 1000}, {194, 185, 8000}, {195, 195, 9000}, {math.MaxInt64, 195, 9000},
		{math.MinInt64, 100, 0},
	} {
		if off, pos := x.Lookup(tc.target); off != tc.off || pos != tc.pos {
			t.Errorf("Lookup(%d) = %d,%d want %d,%d", tc.target, off, pos, tc.off, tc.pos)
		}
	}
	if off, pos := x.Entry(3); off != 135 || pos != 3000 {
		t.Errorf("Entry(3) = %d,%d", off, pos)
	}
	for _, i := range []int{-1, 10, 1 << 40} {
		if off, pos := x.Entry(i); off != -1 || pos != -1 {
			t.Errorf("Entry(%d) = %d,%d", i, off, pos)
		}
	}
}

func TestOffsetIndexAppendRejects(t *testing.T) {
	x := openTestIndex(t, 100, 1024)
	if err := x.Append(110, 50); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		off  int64
		pos  int32
		want error
	}{
		{110, 60, ErrCorruptIndex},                         // not after the last offset
		{105, 60, ErrCorruptIndex},                         // before it
		{120, 40, ErrCorruptIndex},                         // position goes back
		{120, -1, ErrCorruptIndex},                         // negative position
		{99, 60, ErrOffsetOutOfRange},                      // below the base offset
		{100 + math.MaxInt32 + 1, 60, ErrOffsetOutOfRange}, // relative offset overflows
	} {
		if err := x.Append(tc.off, tc.pos); !errors.Is(err, tc.want) {
			t.Errorf("Append(%d, %d) = %v, want %v", tc.off, tc.pos, err, tc.want)
		}
	}
	if x.Entries() != 1 {
		t.Fatalf("rejected appends changed the index: %d entries", x.Entries())
	}
	// A base offset near MaxInt64: offset - base must not wrap around.
	hi := openTestIndex(t, math.MaxInt64-10, 1024)
	if err := hi.Append(math.MinInt64, 0); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Append(MinInt64) with base MaxInt64-10 = %v", err)
	}
	if err := hi.Append(math.MaxInt64, 0); err != nil {
		t.Fatal(err)
	}
	if off, _ := hi.Lookup(math.MinInt64); off != math.MaxInt64-10 {
		t.Fatalf("Lookup(MinInt64) = %d", off)
	}
	hi.TruncateTo(math.MinInt64)
	if hi.Entries() != 0 {
		t.Fatal("TruncateTo(MinInt64) kept entries")
	}
	if _, err := OpenOffsetIndex(filepath.Join(t.TempDir(), "x.index"), 0, 7, true); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("max size below one entry: %v", err)
	}
	if _, err := OpenOffsetIndex(filepath.Join(t.TempDir(), "x.index"), -1, 1024, true); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative base offset: %v", err)
	}
}

func TestOffsetIndexCloseTrimsAndReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "00000000000000000050.index")
	x, err := OpenOffsetIndex(path, 50, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != 0 {
		t.Fatalf("new index file has %d bytes before any append", got)
	}
	for i := int64(0); i < 7; i++ {
		if err := x.Append(50+i*3, int32(i*10)); err != nil {
			t.Fatal(err)
		}
	}
	if got := fileSize(t, path); got != 4096 {
		t.Fatalf("preallocated size %d", got)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := fileSize(t, path); got != 7*8 {
		t.Fatalf("closed size %d, want %d", got, 7*8)
	}
	if off, pos := x.Lookup(60); off != 50 || pos != 0 {
		t.Fatalf("Lookup after Close = %d,%d", off, pos)
	}
	if err := x.Append(100, 100); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := x.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close: %v", err)
	}
	if err := x.SanityCheck(); !errors.Is(err, ErrClosed) {
		t.Fatalf("SanityCheck after Close: %v", err)
	}

	// Read-only: maps the file as it is, is full, refuses appends.
	ro, err := OpenOffsetIndex(path, 50, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	if ro.Entries() != 7 || ro.MaxEntries() != 7 || !ro.IsFull() || ro.LastOffset() != 68 {
		t.Fatalf("read-only: entries %d max %d full %v last %d", ro.Entries(), ro.MaxEntries(), ro.IsFull(), ro.LastOffset())
	}
	if err := ro.SanityCheck(); err != nil {
		t.Fatal(err)
	}
	if err := ro.Append(100, 100); !errors.Is(err, ErrIndexFull) {
		t.Fatalf("read-only Append: %v", err)
	}
	if off, pos := ro.Lookup(62); off != 62 || pos != 40 {
		t.Fatalf("read-only Lookup = %d,%d", off, pos)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != 7*8 {
		t.Fatalf("read-only close changed the size to %d", got)
	}

	// Writable again: entries kept, the file untouched until an append
	// extends it to the max size.
	w, err := OpenOffsetIndex(path, 50, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Entries() != 7 || w.MaxEntries() != 512 || fileSize(t, path) != 7*8 {
		t.Fatalf("reopened: entries %d max %d size %d", w.Entries(), w.MaxEntries(), fileSize(t, path))
	}
	if err := w.SanityCheck(); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(80, 70); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != 4096 {
		t.Fatalf("size after an append %d", got)
	}
	if off, pos := w.Lookup(1000); off != 80 || pos != 70 {
		t.Fatalf("Lookup = %d,%d", off, pos)
	}
}

// A file larger than the configured maximum (the config shrank) keeps every
// entry.
func TestOffsetIndexLargerThanMax(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.index")
	x, err := OpenOffsetIndex(path, 0, 800, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 100; i++ {
		if err := x.Append(i, int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	x.Close()
	y, err := OpenOffsetIndex(path, 0, 80, true)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	if y.Entries() != 100 || !y.IsFull() || y.SanityCheck() != nil {
		t.Fatalf("entries %d full %v", y.Entries(), y.IsFull())
	}
}

func TestOffsetIndexTruncate(t *testing.T) {
	x := openTestIndex(t, 0, 1024)
	fill := func() {
		x.Reset()
		for i := int64(1); i <= 10; i++ {
			if err := x.Append(i*10, int32(i*100)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		to      int64
		entries int
		last    int64
	}{
		{1000, 10, 100}, {101, 10, 100}, {100, 9, 90}, {95, 9, 90}, {91, 9, 90}, {90, 8, 80},
		{11, 1, 10}, {10, 0, 0}, {0, 0, 0}, {-5, 0, 0},
	} {
		fill()
		x.TruncateTo(tc.to)
		if x.Entries() != tc.entries || x.LastOffset() != tc.last {
			t.Errorf("TruncateTo(%d): %d entries, last %d; want %d, %d", tc.to, x.Entries(), x.LastOffset(), tc.entries, tc.last)
		}
		if err := x.SanityCheck(); err != nil {
			t.Errorf("TruncateTo(%d): %v", tc.to, err)
		}
	}
	// Appending after a truncation reuses the slots.
	fill()
	x.TruncateTo(55)
	if err := x.Append(55, 550); err != nil {
		t.Fatal(err)
	}
	if off, pos := x.Lookup(70); off != 55 || pos != 550 {
		t.Fatalf("Lookup after truncate+append = %d,%d", off, pos)
	}
}

// TrimToValidSize cuts the file; a later Append grows it again.
func TestOffsetIndexTrimThenAppend(t *testing.T) {
	x := openTestIndex(t, 0, 8*1024)
	for i := int64(0); i < 3; i++ {
		if err := x.Append(i, int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.TrimToValidSize(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, x.Path()); got != 24 {
		t.Fatalf("trimmed size %d", got)
	}
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	if x.IsFull() {
		t.Fatal("trimmed index reports full")
	}
	for i := int64(3); i < 1024; i++ { // well past the trimmed size and its page
		if err := x.Append(i, int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	if off, pos := x.Lookup(1000); off != 1000 || pos != 1000 {
		t.Fatalf("Lookup = %d,%d", off, pos)
	}
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
}

// simulateCrash copies an open index's file as a crash would leave it: the
// mapping's pages are in the page cache, the file is still full length.
func simulateCrash(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crashed := path + ".crashed"
	if err := os.WriteFile(crashed, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return crashed
}

// After a crash the file is full length with a zero tail: SanityCheck fails,
// Reset and a rebuild make it pass. An index never appended to is left empty.
func TestOffsetIndexCrashZeroTail(t *testing.T) {
	for _, n := range []int{0, 1, 2, 50, 127} {
		x := openTestIndex(t, 1000, 128*8)
		for i := 0; i < n; i++ {
			if err := x.Append(1000+int64(i)*2, int32(i)*64); err != nil {
				t.Fatal(err)
			}
		}
		crashed := simulateCrash(t, x.Path())
		y, err := OpenOffsetIndex(crashed, 1000, 128*8, true)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if y.Entries() != 0 || y.SanityCheck() != nil {
				t.Fatalf("never appended to: %d entries, %v", y.Entries(), y.SanityCheck())
			}
			y.Close()
			continue
		}
		if y.Entries() != 128 {
			t.Fatalf("n=%d: full-length file opened with %d entries", n, y.Entries())
		}
		if err := y.SanityCheck(); !errors.Is(err, ErrCorruptIndex) {
			t.Fatalf("n=%d: SanityCheck on a zero tail = %v", n, err)
		}
		y.Reset()
		for i := 0; i < n; i++ {
			if err := y.Append(1000+int64(i)*2, int32(i)*64); err != nil {
				t.Fatal(err)
			}
		}
		if err := y.SanityCheck(); err != nil {
			t.Fatalf("n=%d: rebuilt: %v", n, err)
		}
		y.Close()
	}
}

// Opening a cleanly closed index writable and crashing without appending
// leaves a file that passes SanityCheck: no rebuild for sealed segments.
func TestOffsetIndexCrashAfterReopenWithoutAppend(t *testing.T) {
	x := openTestIndex(t, 0, 1024)
	for i := int64(0); i < 5; i++ {
		if err := x.Append(i*2, int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	y, err := OpenOffsetIndex(x.Path(), 0, 1024, true)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	y.Lookup(5)
	if err := y.Flush(); err != nil {
		t.Fatal(err)
	}
	z, err := OpenOffsetIndex(simulateCrash(t, y.Path()), 0, 1024, true)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	if z.Entries() != 5 || z.SanityCheck() != nil {
		t.Fatalf("after crash: %d entries, %v", z.Entries(), z.SanityCheck())
	}
}

// Truncated entries are zeroed, so a crash after a truncation does not bring
// them back as valid-looking entries.
func TestOffsetIndexCrashAfterTruncate(t *testing.T) {
	x := openTestIndex(t, 0, 16*8)
	for i := int64(0); i < 16; i++ {
		if err := x.Append(i, int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	x.TruncateTo(8)
	y, err := OpenOffsetIndex(simulateCrash(t, x.Path()), 0, 16*8, true)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	if err := y.SanityCheck(); !errors.Is(err, ErrCorruptIndex) {
		t.Fatalf("SanityCheck = %v", err)
	}
}

func TestOffsetIndexSanityCheckCorrupt(t *testing.T) {
	entry := func(rel, pos int32) []byte {
		var b [8]byte
		binary.BigEndian.PutUint32(b[0:], uint32(rel))
		binary.BigEndian.PutUint32(b[4:], uint32(pos))
		return b[:]
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"empty", nil, true},
		{"good", cat(entry(0, 0), entry(5, 100), entry(9, 100)), true},
		{"torn size", cat(entry(0, 0), []byte{1, 2, 3}), false},
		{"offset repeats", cat(entry(1, 0), entry(1, 10)), false},
		{"offset goes back", cat(entry(5, 0), entry(3, 10)), false},
		{"position goes back", cat(entry(1, 50), entry(2, 10)), false},
		{"negative offset", cat(entry(-1, 0)), false},
		{"negative position", cat(entry(0, -7)), false},
	} {
		for _, writable := range []bool{false, true} {
			path := filepath.Join(t.TempDir(), "0.index")
			if err := os.WriteFile(path, tc.raw, 0o644); err != nil {
				t.Fatal(err)
			}
			x, err := OpenOffsetIndex(path, 0, 1024, writable)
			if err != nil {
				t.Fatalf("%s: open: %v", tc.name, err)
			}
			err = x.SanityCheck()
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrCorruptIndex)) {
				t.Errorf("%s (writable %v): SanityCheck = %v", tc.name, writable, err)
			}
			// Lookups on a corrupt index return some entry; they never crash.
			x.Lookup(3)
			x.Lookup(math.MaxInt64)
			if writable && !tc.ok {
				x.Reset()
				if err := x.SanityCheck(); err != nil {
					t.Errorf("%s: after Reset: %v", tc.name, err)
				}
			}
			x.Close()
		}
	}
}

func TestOffsetIndexRenameDelete(t *testing.T) {
	dir := t.TempDir()
	x, err := OpenOffsetIndex(filepath.Join(dir, "a.index"), 0, 1024, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Append(5, 5); err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(dir, "a.index.deleted")
	if err := x.Rename(moved); err != nil {
		t.Fatal(err)
	}
	if x.Path() != moved {
		t.Fatalf("Path = %s", x.Path())
	}
	if err := x.Append(6, 6); err != nil { // the mapping followed the file
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, moved); got != 16 {
		t.Fatalf("size %d", got)
	}
	back := filepath.Join(dir, "b.index")
	if err := x.Rename(back); err != nil { // also works closed
		t.Fatal(err)
	}
	y, err := OpenOffsetIndex(back, 0, 1024, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := y.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(back); !os.IsNotExist(err) {
		t.Fatalf("file still there: %v", err)
	}
	if err := y.Delete(); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if off, pos := y.Lookup(6); off != 0 || pos != 0 {
		t.Fatalf("Lookup after Delete = %d,%d", off, pos)
	}
}

// Lookup agrees with a linear scan on random sparse indexes, including ones
// large enough to use the warm section.
func TestOffsetIndexLookupMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 1024, 1025, 1026, 5000} {
		base := rng.Int64N(1 << 40)
		x := openTestIndex(t, base, n*8)
		offs := make([]int64, n)
		pos := make([]int32, n)
		o, p := base+rng.Int64N(3), int32(0)
		for i := range n {
			offs[i], pos[i] = o, p
			if err := x.Append(o, p); err != nil {
				t.Fatal(err)
			}
			o += 1 + rng.Int64N(20)
			p += int32(rng.IntN(4000))
		}
		for range 2000 {
			target := base - 5 + rng.Int64N(o-base+10)
			wantOff, wantPos := base, int32(0)
			for i := range n {
				if offs[i] <= target {
					wantOff, wantPos = offs[i], pos[i]
				}
			}
			if gotOff, gotPos := x.Lookup(target); gotOff != wantOff || gotPos != wantPos {
				t.Fatalf("n=%d Lookup(%d) = %d,%d want %d,%d", n, target, gotOff, gotPos, wantOff, wantPos)
			}
		}
	}
}

// One writer appends, truncates and trims while readers look up; then the
// index is closed under them. Every answer a reader gets is an entry the
// index held (position = 10 * relative offset) and <= its target. Run with
// -race; a reader past the file end or the mapping would crash the process.
func TestOffsetIndexConcurrentReaders(t *testing.T) {
	const max = 2048
	x := openTestIndex(t, 1000, max*8)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var lookups atomic.Int64
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			for !stop.Load() {
				target := 1000 + rng.Int64N(max*3)
				off, pos := x.Lookup(target)
				if off > target && off != 1000 {
					t.Errorf("Lookup(%d) = %d, past the target", target, off)
					return
				}
				if int64(pos) != 10*(off-1000) {
					t.Errorf("Lookup(%d) = %d,%d: not an entry", target, off, pos)
					return
				}
				x.LastOffset()
				x.Entry(rng.IntN(max))
				lookups.Add(1)
			}
		}(uint64(r))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 8; round++ {
		x.Reset()
		truncs := 0
		for i := int64(0); !x.IsFull(); i += 1 + rng.Int64N(3) {
			if err := x.Append(1000+i, int32(10*i)); err != nil {
				t.Fatal(err)
			}
			if i%512 == 0 && truncs < 3 {
				truncs++
				x.TruncateTo(1000 + i - rng.Int64N(100))
				if err := x.TrimToValidSize(); err != nil {
					t.Fatal(err)
				}
				i = x.LastOffset() - 1000
			}
		}
		if err := x.SanityCheck(); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d lookups", lookups.Load())
}

// FuzzOffsetIndexFile: any file content opens (read-only and writable)
// without panicking; when SanityCheck passes, Lookup agrees with a linear
// scan of the entries.
func FuzzOffsetIndexFile(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 0, 0, 0, 100}, int64(5))
	f.Add([]byte{0, 0, 0, 3, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0}, int64(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 7}, int64(-1))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, target int64) {
		path := filepath.Join(dir, "0.index")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, writable := range []bool{false, true} {
			x, err := OpenOffsetIndex(path, 10, 64, writable)
			if err != nil {
				t.Fatal(err)
			}
			off, pos := x.Lookup(target)
			if x.SanityCheck() == nil {
				wantOff, wantPos := int64(10), int32(0)
				for i := 0; i < x.Entries(); i++ {
					if o, p := x.Entry(i); o <= target {
						wantOff, wantPos = o, p
					}
				}
				if off != wantOff || pos != wantPos {
					t.Fatalf("Lookup(%d) = %d,%d; scan says %d,%d", target, off, pos, wantOff, wantPos)
				}
			}
			x.TruncateTo(target)
			x.Close()
		}
	})
}
