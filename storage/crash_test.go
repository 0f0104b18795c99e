package storage

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stratalog/strata/storage/record"
)

// writeCrashFixture writes a log of n batches in several segments, closes it,
// and returns its directory and the batches in order.
func writeCrashFixture(t testing.TB, n int) (string, Config, []record.Batch) {
	t.Helper()
	return writeCrashFixtureInRuns(t, n, 1)
}

// writeCrashFixtureInRuns is writeCrashFixture with up to perAppend batches
// per append (a leader append carries one epoch: groups stop at each tenth
// batch, where the epoch changes), so the log writes them in runs.
func writeCrashFixtureInRuns(t testing.TB, n, perAppend int) (string, Config, []record.Batch) {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 1024
	cfg.IndexIntervalBytes = 200
	cfg.RetentionMs = -1
	l, err := Open(dir, cfg, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var batches []record.Batch
	var group []byte
	start := 0 // index of the group's first batch
	for i := range n {
		b := makeBatch(t, record.Codec(i%5), 1+i%5, fmt.Sprint(i), int64(i))
		group = append(group, b...)
		batches = append(batches, b)
		if i+1-start < perAppend && (i+1)%10 != 0 && i != n-1 {
			continue
		}
		if _, err := l.AppendAsLeader(group, int32(i/10)); err != nil {
			t.Fatal(err)
		}
		// Keep the batches as stored: offsets and epoch assigned in place.
		for j, rest := start, group; len(rest) > 0; j++ {
			stored, _ := record.Parse(rest)
			copy(batches[j], stored)
			rest = rest[len(stored):]
		}
		group, start = group[:0], i+1
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, cfg, batches
}

func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		out.Close()
	}
	return dst
}

func logFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"+LogFileSuffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// checkValidPrefix opens dir as after a crash and checks the log is exactly
// the first k batches of want for some k >= minKeep, with sound indexes.
func checkValidPrefix(t *testing.T, dir string, cfg Config, want []record.Batch, minKeep int) {
	t.Helper()
	l, err := Open(dir, cfg, OpenOptions{})
	if err != nil {
		t.Fatalf("open after crash: %v", err)
	}
	got := readAll(t, l)
	if len(got) < minKeep || len(got) > len(want) {
		t.Fatalf("recovered %d batches, want between %d and %d", len(got), minKeep, len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("recovered batch %d differs from what was written", i)
		}
	}
	wantEnd := int64(0)
	if len(got) > 0 {
		wantEnd = got[len(got)-1].NextOffset()
	}
	if l.LogEndOffset() != wantEnd {
		t.Fatalf("log end %d, want %d", l.LogEndOffset(), wantEnd)
	}
	if e, ok := l.LeaderEpochs().Latest(); ok && e.StartOffset >= wantEnd {
		t.Fatalf("epoch cache entry %+v at or past the log end %d", e, wantEnd)
	}
	// Appends continue at the recovered end.
	info, err := l.AppendAsLeader(makeBatch(t, record.CodecNone, 1, "after", 0), 99)
	if err != nil || info.FirstOffset != wantEnd {
		t.Fatalf("append after recovery: %+v, %v", info, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	next := int64(-1)
	for _, p := range logFiles(t, dir) {
		rep, err := VerifySegment(p, cfg.MaxIndexSize, next)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Problems) > 0 {
			t.Fatalf("after recovery %s: %v", filepath.Base(p), rep.Problems)
		}
		next = rep.NextOffset
	}
}

// TestCrashAtAnyByte cuts the last segment at every batch boundary and at
// random bytes, and the middle segment at random bytes, and checks each
// recovers to a valid prefix.
func TestCrashAtAnyByte(t *testing.T) {
	src, cfg, batches := writeCrashFixture(t, 60)
	files := logFiles(t, src)
	if len(files) < 3 {
		t.Fatalf("fixture has %d segments, want several", len(files))
	}
	rng := rand.New(rand.NewPCG(7, 7))
	cuts := 25
	if testing.Short() {
		cuts = 8
	}
	for _, which := range []int{len(files) - 1, len(files) / 2} {
		fi, err := os.Stat(files[which])
		if err != nil {
			t.Fatal(err)
		}
		for range cuts {
			cut := rng.Int64N(fi.Size())
			t.Run(fmt.Sprintf("segment%d-cut%d", which, cut), func(t *testing.T) {
				dir := copyDir(t, src)
				if err := os.Truncate(filepath.Join(dir, filepath.Base(files[which])), cut); err != nil {
					t.Fatal(err)
				}
				checkValidPrefix(t, dir, cfg, batches, 0)
			})
		}
	}
}

// TestCrashAtAnyByteAfterRunAppends is TestCrashAtAnyByte on a log written
// ten batches per append, so in runs of one write each.
func TestCrashAtAnyByteAfterRunAppends(t *testing.T) {
	src, cfg, batches := writeCrashFixtureInRuns(t, 60, 10)
	one, _, _ := writeCrashFixture(t, 60)
	files := logFiles(t, src)
	if len(files) < 3 {
		t.Fatalf("fixture has %d segments, want several", len(files))
	}
	if want := logFiles(t, one); len(want) != len(files) {
		t.Fatalf("%d segments written in runs, %d batch by batch", len(files), len(want))
	}
	rng := rand.New(rand.NewPCG(8, 8))
	fi, err := os.Stat(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		cut := rng.Int64N(fi.Size())
		t.Run(fmt.Sprintf("cut%d", cut), func(t *testing.T) {
			dir := copyDir(t, src)
			if err := os.Truncate(filepath.Join(dir, filepath.Base(files[len(files)-1])), cut); err != nil {
				t.Fatal(err)
			}
			checkValidPrefix(t, dir, cfg, batches, 0)
		})
	}
}

// TestCrashGarbageTail appends zeros (a preallocated tail) and random bytes
// to the active segment, and flips a byte inside a batch.
func TestCrashGarbageTail(t *testing.T) {
	src, cfg, batches := writeCrashFixture(t, 40)
	files := logFiles(t, src)
	last := filepath.Base(files[len(files)-1])
	rng := rand.New(rand.NewPCG(9, 9))
	tails := map[string][]byte{
		"zeros": make([]byte, 5000),
		"random": func() []byte {
			b := make([]byte, 777)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return b
		}(),
		"header": batches[0][:record.HeaderSize],
	}
	for name, tail := range tails {
		t.Run(name, func(t *testing.T) {
			dir := copyDir(t, src)
			f, err := os.OpenFile(filepath.Join(dir, last), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tail)
			f.Close()
			checkValidPrefix(t, dir, cfg, batches, len(batches))
		})
	}
	t.Run("flipped byte", func(t *testing.T) {
		dir := copyDir(t, src)
		p := filepath.Join(dir, last)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0x5a
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		checkValidPrefix(t, dir, cfg, batches, 0)
	})
}

// TestCrashRebuildsIndexes removes and corrupts indexes and checks reads
// still find every batch.
func TestCrashRebuildsIndexes(t *testing.T) {
	src, cfg, batches := writeCrashFixture(t, 60)
	dir := copyDir(t, src)
	idx, _ := filepath.Glob(filepath.Join(dir, "*"+IndexFileSuffix))
	tix, _ := filepath.Glob(filepath.Join(dir, "*"+TimeIndexFileSuffix))
	os.Remove(idx[0])
	os.WriteFile(idx[1], bytes.Repeat([]byte{0xff}, 64), 0o644)
	os.WriteFile(tix[0], []byte{1, 2, 3}, 0o644)
	// A clean-shutdown open must still notice the damage.
	l, err := Open(dir, cfg, OpenOptions{CleanShutdown: true, RecoveryPoint: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, l)
	if len(got) != len(batches) {
		t.Fatalf("read %d batches, want %d", len(got), len(batches))
	}
	if _, _, found, err := l.OffsetForTimestamp(30); err != nil || !found {
		t.Fatalf("time lookup after rebuild: %v %v", found, err)
	}
	l.Close()
	checkValidPrefix(t, dir, cfg, batches, len(batches))
}

// FuzzRecovery writes arbitrary bytes after a valid prefix of the active
// segment: opening never panics, recovers at least the prefix, and a second
// open sees the same log.
func FuzzRecovery(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 100))
	f.Add(makeBatch(f, record.CodecNone, 2, "seed", 0))
	f.Add(makeBatch(f, record.CodecZstd, 3, "seed", 0)[:70])
	base, cfg, batches := writeCrashFixture(f, 8)
	last := filepath.Base(logFiles(f, base)[len(logFiles(f, base))-1])
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := copyDir(t, base)
		fd, err := os.OpenFile(filepath.Join(dir, last), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fd.Write(tail)
		fd.Close()
		l, err := Open(dir, cfg, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, l)
		for i := range min(len(got), len(batches)) {
			if !bytes.Equal(got[i], batches[i]) {
				t.Fatalf("batch %d changed", i)
			}
		}
		if len(got) < len(batches) {
			t.Fatalf("lost %d of the valid batches", len(batches)-len(got))
		}
		end := l.LogEndOffset()
		l.Close()
		l2, err := Open(dir, cfg, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		if l2.LogEndOffset() != end || len(readAll(t, l2)) != len(got) {
			t.Fatalf("second open differs: end %d vs %d", l2.LogEndOffset(), end)
		}
	})
}
