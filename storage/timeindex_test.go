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

func openTestTimeIndex(t testing.TB, base int64, maxSize int) *TimeIndex {
	t.Helper()
	x, err := OpenTimeIndex(filepath.Join(t.TempDir(), "00000000000000000000.timeindex"), base, maxSize, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

func TestTimeIndexFormat(t *testing.T) {
	x := openTestTimeIndex(t, 1000, 1024)
	if err := x.MaybeAppend(0x0102030405060708, 1003); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(x.Path())
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 3}
	if !bytes.Equal(raw, want) {
		t.Fatalf("file %x, want %x", raw, want)
	}
}

func TestTimeIndexMaybeAppendLookup(t *testing.T) {
	x := openTestTimeIndex(t, 100, 5*12+11) // 5 entries, the last one reserved
	if x.MaxEntries() != 5 || x.IsFull() {
		t.Fatalf("max %d full %v", x.MaxEntries(), x.IsFull())
	}
	if ts, off := x.LastEntry(); ts != NoTimestamp || off != 100 {
		t.Fatalf("empty LastEntry = %d,%d", ts, off)
	}
	if ts, off := x.Lookup(math.MaxInt64); ts != NoTimestamp || off != 100 {
		t.Fatalf("empty Lookup = %d,%d", ts, off)
	}
	// Negative timestamps and timestamps that do not grow are skipped.
	for _, e := range [][2]int64{{-5, 100}, {-1, 100}, {1000, 101}, {1000, 105}, {999, 106}, {2000, 110}, {2000, 110}, {3000, 110}, {4000, 150}} {
		if err := x.MaybeAppend(e[0], e[1]); err != nil {
			t.Fatalf("MaybeAppend(%d, %d): %v", e[0], e[1], err)
		}
	}
	if x.Entries() != 4 || !x.IsFull() {
		t.Fatalf("entries %d full %v; want 4, full (last slot reserved)", x.Entries(), x.IsFull())
	}
	// The reserved slot still takes the sealing entry; then it is truly full.
	if err := x.MaybeAppend(5000, 160); err != nil {
		t.Fatal(err)
	}
	if err := x.MaybeAppend(6000, 170); !errors.Is(err, ErrIndexFull) {
		t.Fatalf("append to full: %v", err)
	}
	if err := x.MaybeAppend(5000, 170); err != nil {
		t.Fatalf("no-op on a full index: %v", err)
	}
	if ts, off := x.LastEntry(); ts != 5000 || off != 160 {
		t.Fatalf("LastEntry = %d,%d", ts, off)
	}
	for _, tc := range [][3]int64{
		{math.MinInt64, NoTimestamp, 100}, {-1, NoTimestamp, 100}, {999, NoTimestamp, 100}, {1000, 1000, 101},
		{1999, 1000, 101}, {2000, 2000, 110}, {3500, 3000, 110}, {4000, 4000, 150}, {math.MaxInt64, 5000, 160},
	} {
		if ts, off := x.Lookup(tc[0]); ts != tc[1] || off != tc[2] {
			t.Errorf("Lookup(%d) = %d,%d want %d,%d", tc[0], ts, off, tc[1], tc[2])
		}
	}
	if ts, off := x.Entry(1); ts != 2000 || off != 110 {
		t.Errorf("Entry(1) = %d,%d", ts, off)
	}
	if ts, off := x.Entry(5); ts != NoTimestamp || off != -1 {
		t.Errorf("Entry(5) = %d,%d", ts, off)
	}
}

func TestTimeIndexRejects(t *testing.T) {
	x := openTestTimeIndex(t, 100, 1024)
	if err := x.MaybeAppend(10, 150); err != nil {
		t.Fatal(err)
	}
	if err := x.MaybeAppend(20, 149); !errors.Is(err, ErrCorruptIndex) {
		t.Errorf("offset going back: %v", err)
	}
	if err := x.MaybeAppend(5, 149); !errors.Is(err, ErrCorruptIndex) {
		t.Errorf("offset going back with an old timestamp: %v", err)
	}
	if err := x.MaybeAppend(20, 99); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Errorf("below base: %v", err)
	}
	if err := x.MaybeAppend(20, 100+math.MaxInt32+1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Errorf("overflow: %v", err)
	}
	if x.Entries() != 1 {
		t.Fatalf("%d entries", x.Entries())
	}
	if _, err := OpenTimeIndex(filepath.Join(t.TempDir(), "x"), 0, 11, true); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("max size below one entry: %v", err)
	}
}

func TestTimeIndexTruncateAndReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "00000000000000000000.timeindex")
	x, err := OpenTimeIndex(path, 0, 1200, true)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets may repeat (Kafka allows it): entries 1 and 2 share offset 20,
	// and truncating to 20 removes both.
	for _, e := range [][2]int64{{100, 10}, {200, 20}, {300, 20}, {400, 30}, {500, 40}} {
		if err := x.MaybeAppend(e[0], e[1]); err != nil {
			t.Fatal(err)
		}
	}
	x.TruncateTo(20)
	if ts, off := x.LastEntry(); x.Entries() != 1 || ts != 100 || off != 10 {
		t.Fatalf("TruncateTo(20): %d entries, last %d,%d", x.Entries(), ts, off)
	}
	if err := x.MaybeAppend(150, 15); err != nil {
		t.Fatal(err)
	}
	x.TruncateTo(1000)
	if x.Entries() != 2 {
		t.Fatalf("TruncateTo past the end: %d entries", x.Entries())
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != 24 {
		t.Fatalf("closed size %d", got)
	}
	ro, err := OpenTimeIndex(path, 0, 1200, false)
	if err != nil {
		t.Fatal(err)
	}
	if ro.Entries() != 2 || !ro.IsFull() || ro.SanityCheck() != nil {
		t.Fatalf("read-only: %d entries, full %v, %v", ro.Entries(), ro.IsFull(), ro.SanityCheck())
	}
	if err := ro.MaybeAppend(1000, 50); !errors.Is(err, ErrIndexFull) {
		t.Fatalf("read-only append: %v", err)
	}
	ro.Close()
	w, err := OpenTimeIndex(path, 0, 1200, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Entries() != 2 || w.MaxEntries() != 100 || w.SanityCheck() != nil {
		t.Fatalf("reopened: %d entries, max %d", w.Entries(), w.MaxEntries())
	}
	w.Reset()
	if w.Entries() != 0 {
		t.Fatal("Reset kept entries")
	}
}

func TestTimeIndexCrashZeroTail(t *testing.T) {
	for _, n := range []int{0, 2, 9} {
		x := openTestTimeIndex(t, 0, 10*12)
		for i := 0; i < n; i++ {
			if err := x.MaybeAppend(int64(1000+i), int64(i)); err != nil {
				t.Fatal(err)
			}
		}
		y, err := OpenTimeIndex(simulateCrash(t, x.Path()), 0, 10*12, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := y.SanityCheck(); n > 0 && !errors.Is(err, ErrCorruptIndex) {
			t.Errorf("n=%d: SanityCheck = %v", n, err)
		} else if n == 0 && (err != nil || y.Entries() != 0) {
			t.Errorf("never appended to: %d entries, %v", y.Entries(), err)
		}
		y.Close()
	}
}

func TestTimeIndexSanityCheckCorrupt(t *testing.T) {
	entry := func(ts int64, rel int32) []byte {
		var b [12]byte
		binary.BigEndian.PutUint64(b[0:], uint64(ts))
		binary.BigEndian.PutUint32(b[8:], uint32(rel))
		return b[:]
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"good", cat(entry(5, 0), entry(6, 0), entry(9, 4)), true},
		{"torn", cat(entry(5, 0), []byte{1}), false},
		{"timestamp repeats", cat(entry(5, 0), entry(5, 1)), false},
		{"offset goes back", cat(entry(5, 3), entry(6, 1)), false},
		{"negative timestamp", cat(entry(-2, 0)), false},
		{"negative offset", cat(entry(1, -1)), false},
	} {
		path := filepath.Join(t.TempDir(), "0.timeindex")
		if err := os.WriteFile(path, tc.raw, 0o644); err != nil {
			t.Fatal(err)
		}
		x, err := OpenTimeIndex(path, 0, 1200, true)
		if err != nil {
			t.Fatal(err)
		}
		err = x.SanityCheck()
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrCorruptIndex)) {
			t.Errorf("%s: SanityCheck = %v", tc.name, err)
		}
		x.Lookup(7)
		x.Close()
	}
}

func TestTimeIndexLookupMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 682, 683, 684, 3000} {
		x := openTestTimeIndex(t, 0, n*12)
		tss := make([]int64, n)
		offs := make([]int64, n)
		ts, off := rng.Int64N(100), int64(0)
		for i := range n {
			tss[i], offs[i] = ts, off
			if err := x.MaybeAppend(ts, off); err != nil {
				t.Fatal(err)
			}
			ts += 1 + rng.Int64N(50)
			off += rng.Int64N(3)
		}
		for range 2000 {
			target := rng.Int64N(ts + 10)
			wantTs, wantOff := NoTimestamp, int64(0)
			for i := range n {
				if tss[i] <= target {
					wantTs, wantOff = tss[i], offs[i]
				}
			}
			if gotTs, gotOff := x.Lookup(target); gotTs != wantTs || gotOff != wantOff {
				t.Fatalf("n=%d Lookup(%d) = %d,%d want %d,%d", n, target, gotTs, gotOff, wantTs, wantOff)
			}
		}
	}
}

func TestTimeIndexConcurrentReaders(t *testing.T) {
	const max = 1024
	x := openTestTimeIndex(t, 0, max*12)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 9))
			for !stop.Load() {
				target := rng.Int64N(max * 20)
				ts, off := x.Lookup(target)
				if ts > target || (ts != NoTimestamp && ts != 10*off) || (ts == NoTimestamp && off != 0) {
					t.Errorf("Lookup(%d) = %d,%d", target, ts, off)
					return
				}
				x.LastEntry()
			}
		}(uint64(r))
	}
	for round := 0; round < 6; round++ {
		x.Reset()
		truncs := 0
		for i := int64(1); ; i++ {
			if err := x.MaybeAppend(10*i, i); errors.Is(err, ErrIndexFull) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			if i%300 == 0 && truncs < 3 {
				truncs++
				x.TruncateTo(i - 50)
				_, i = x.LastEntry()
				if err := x.TrimToValidSize(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := x.Delete(); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()
}

// FuzzTimeIndexFile: any file content opens without panicking; when
// SanityCheck passes, Lookup agrees with a linear scan.
func FuzzTimeIndexFile(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1}, int64(7))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, int64(7))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, target int64) {
		path := filepath.Join(dir, "0.timeindex")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		x, err := OpenTimeIndex(path, 10, 96, true)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		ts, off := x.Lookup(target)
		if x.SanityCheck() == nil {
			wantTs, wantOff := NoTimestamp, int64(10)
			for i := 0; i < x.Entries(); i++ {
				if s, o := x.Entry(i); s <= target {
					wantTs, wantOff = s, o
				}
			}
			if ts != wantTs || off != wantOff {
				t.Fatalf("Lookup(%d) = %d,%d; scan says %d,%d", target, ts, off, wantTs, wantOff)
			}
		}
		x.LastEntry()
		x.TruncateTo(target)
		_ = x.MaybeAppend(target, 20)
	})
}
