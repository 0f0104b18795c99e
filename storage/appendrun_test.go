package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stratalog/strata/storage/record"
)

// runTestBatches builds n batches of mixed sizes (1 to ~900 bytes of values),
// codecs and timestamps: mostly rising, sometimes falling back (the time
// index skips those), sometimes jumping past segment.ms. Every span-th batch
// claims a lastOffsetDelta of 1<<30, so a few of them push a segment's offset
// span past MaxInt32 (0: never).
func runTestBatches(t testing.TB, seed uint64, n, span int) [][]byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	ts := int64(1_700_000_000_000)
	var out [][]byte
	for i := range n {
		switch r := rng.IntN(10); {
		case r == 0:
			ts -= 40 // late timestamps: no time index entry
		case r == 1:
			ts += 5000 // past segment.ms in the cases that set it
		default:
			ts += int64(rng.IntN(20))
		}
		bl := record.NewBuilder(record.BatchOptions{Codec: record.Codec(rng.IntN(5)), PartitionLeaderEpoch: -1})
		records := 1 + rng.IntN(4)
		value := bytes.Repeat([]byte{byte('a' + i%26)}, rng.IntN(220))
		for j := range records {
			if err := bl.Append(ts+int64(j), fmt.Appendf(nil, "k%d-%d", i, j), value, nil); err != nil {
				t.Fatal(err)
			}
		}
		if span > 0 && i%span == span-1 {
			if err := bl.SetLastOffsetDelta(1 << 30); err != nil {
				t.Fatal(err)
			}
		}
		b, err := bl.Build()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(b))
	}
	return out
}

// dirFiles reads every file of a closed log's directory.
func dirFiles(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// runWriter appends batches in groups, as a follower when follower is set,
// else as a leader of epoch epochOf(first batch of the group) when epochOf is
// set, else with plain Append.
type runWriter struct {
	follower bool
	epochOf  func(i int) int32 // nil: plain Append
}

// write appends sizes[g] batches in call g (nil sizes: all in one call;
// the calls past len(sizes) take what is left).
func (w runWriter) write(t testing.TB, l *Log, batches [][]byte, sizes []int) {
	t.Helper()
	for i, g := 0, 0; i < len(batches); g++ {
		n := len(batches) - i
		if g < len(sizes) {
			n = min(sizes[g], n)
		}
		// A leader's append carries one epoch: cut the group where it changes.
		if w.epochOf != nil {
			for k := 1; k < n; k++ {
				if w.epochOf(i+k) != w.epochOf(i) {
					n = k
					break
				}
			}
		}
		in := slices.Concat(batches[i : i+n]...)
		var err error
		switch {
		case w.follower:
			_, err = l.AppendAsFollower(in)
		case w.epochOf != nil:
			_, err = l.AppendAsLeader(in, w.epochOf(i))
		default:
			_, err = l.Append(in)
		}
		if err != nil {
			t.Fatalf("append batches %d..%d: %v", i, i+n-1, err)
		}
		i += n
	}
}

// TestRunAppendMatchesBatchByBatch writes the same batches one append per
// batch (every run one batch long: the batch-by-batch path), all in one
// append, and in random groups, and checks the logs read the same and their
// segment, index and checkpoint files are the same byte for byte: the same
// roll points, the same index entries.
func TestRunAppendMatchesBatchByBatch(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(*Config)
		span int
	}{
		{"small-segments", func(c *Config) { c.SegmentBytes = 1024; c.IndexIntervalBytes = 100 }, 0},
		{"index-every-batch-nearly-full", func(c *Config) {
			c.SegmentBytes = 1 << 20
			c.IndexIntervalBytes = 0
			c.MaxIndexSize = 12 * 4 // 6 offset entries, 4 time entries (3 before the reserve)
		}, 0},
		{"full-index-and-small-segments", func(c *Config) {
			c.SegmentBytes = 2048
			c.IndexIntervalBytes = 150
			c.MaxIndexSize = 12 * 5 // 7 offset entries, 5 time entries
		}, 0},
		{"segment-ms", func(c *Config) { c.SegmentBytes = 1 << 20; c.SegmentMs = 3000; c.IndexIntervalBytes = 300 }, 0},
		{"offset-span", func(c *Config) { c.SegmentBytes = 1 << 20; c.IndexIntervalBytes = 500 }, 7},
		{"defaults", func(c *Config) {}, 0},
	}
	writers := []struct {
		name string
		w    runWriter
	}{
		{"append", runWriter{}},
		{"leader", runWriter{epochOf: func(i int) int32 { return int32(i / 45) }}},
	}
	for _, tc := range cases {
		for _, wc := range writers {
			t.Run(tc.name+"/"+wc.name, func(t *testing.T) {
				cfg := testConfig()
				cfg.RetentionMs = -1
				tc.cfg(&cfg)
				batches := runTestBatches(t, 42, 160, tc.span)
				ones := make([]int, len(batches))
				for i := range ones {
					ones[i] = 1
				}
				rng := rand.New(rand.NewPCG(1, 2))
				var random []int
				for range len(batches) {
					random = append(random, 1+rng.IntN(12))
				}
				layouts := []struct {
					name  string
					sizes []int
				}{{"one-per-append", ones}, {"all-in-one", nil}, {"random-groups", random}}

				clock := newFakeClock()
				var wantFiles map[string][]byte
				var wantRead []record.Batch
				var wantDir string
				for _, layout := range layouts {
					dir := t.TempDir()
					l, err := Open(dir, cfg, OpenOptions{Now: clock.Now})
					if err != nil {
						t.Fatal(err)
					}
					in := make([][]byte, len(batches))
					for i, b := range batches {
						in[i] = bytes.Clone(b)
					}
					wc.w.write(t, l, in, layout.sizes)
					got := readAll(t, l)
					segs := l.NumSegments()
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
					files := dirFiles(t, dir)
					if wantFiles == nil {
						wantFiles, wantRead, wantDir = files, got, dir
						if segs < 3 && tc.name != "defaults" {
							t.Fatalf("%s: %d segments: the case does not roll", layout.name, segs)
						}
						continue
					}
					if len(got) != len(wantRead) {
						t.Fatalf("%s: read %d batches, want %d", layout.name, len(got), len(wantRead))
					}
					for i := range got {
						if !bytes.Equal(got[i], wantRead[i]) {
							t.Fatalf("%s: batch %d differs from the batch-by-batch log's", layout.name, i)
						}
					}
					compareFiles(t, layout.name, files, wantFiles)
				}

				// A follower copying the leader's batches (offsets and epochs
				// as stored, epochs changing inside a run) writes the same files.
				for _, layout := range layouts[1:] {
					if wc.w.epochOf == nil {
						break // a follower takes only batches with a leader epoch
					}
					dir := t.TempDir()
					l, err := Open(dir, cfg, OpenOptions{Now: clock.Now})
					if err != nil {
						t.Fatal(err)
					}
					in := make([][]byte, len(wantRead))
					for i, b := range wantRead {
						in[i] = bytes.Clone(b)
					}
					runWriter{follower: true}.write(t, l, in, layout.sizes)
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
					compareFiles(t, "follower/"+layout.name, dirFiles(t, dir), wantFiles)
				}

				// Recovery of the run-written log from scratch finds it whole.
				l, err := Open(wantDir, cfg, OpenOptions{Now: clock.Now})
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				if got := readAll(t, l); len(got) != len(wantRead) {
					t.Fatalf("after recovery: %d batches, want %d", len(got), len(wantRead))
				}
			})
		}
	}
}

func compareFiles(t *testing.T, layout string, got, want map[string][]byte) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: no %s", layout, name)
			continue
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s: %s differs (%d bytes, want %d)", layout, name, len(g), len(w))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: extra file %s", layout, name)
		}
	}
}

// TestRunPlanStopsWhereABatchWouldRoll checks the planner itself: a run on an
// empty segment takes batches up to segment.bytes and refuses the next, and a
// run whose pending batches would fill the offset index stops before that.
func TestRunPlanStopsWhereABatchWouldRoll(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes = 4096
	cfg.IndexIntervalBytes = 1 << 20
	l := openTestLog(t, t.TempDir(), cfg, nil)
	b := record.Batch(makeBatch(t, record.CodecNone, 1, "x", 0))
	seg := l.segments()[0]
	run := startRun(seg, &l.mu.cfg, 0)
	fit := 0
	for !run.rolls(b) {
		run.add(b)
		fit++
	}
	if want := int(cfg.SegmentBytes) / len(b); fit != want {
		t.Fatalf("run took %d batches of %d bytes, want %d in segment.bytes %d", fit, len(b), want, cfg.SegmentBytes)
	}

	cfg.SegmentBytes = 1 << 20
	cfg.IndexIntervalBytes = 0 // an entry for every batch but the first
	cfg.MaxIndexSize = 12 * 8  // 12 offset entries, 8 time entries, 7 before the reserve
	l = openTestLog(t, t.TempDir(), cfg, nil)
	run = startRun(l.segments()[0], &l.mu.cfg, 0)
	fit = 0
	for !run.rolls(b) {
		run.add(b)
		fit++
	}
	// The first batch gets no entry, each later one an offset index entry;
	// the planner counts each as a possible time index entry too, and 7 of
	// those leave only the reserved slot.
	if fit != 8 {
		t.Fatalf("run took %d batches, want 8 before the time index is full", fit)
	}
}

// TestRunWriteErrorPublishesNothing: a failed write of a run fails the log
// and publishes none of the run's batches.
func TestRunWriteErrorPublishesNothing(t *testing.T) {
	l := openTestLog(t, t.TempDir(), testConfig(), nil)
	if _, err := l.Append(makeBatch(t, record.CodecNone, 1, "w", 0)); err != nil {
		t.Fatal(err)
	}
	segs := l.segments()
	active := segs[len(segs)-1]
	size := active.size.Load()
	active.file.File().Close()
	run := slices.Concat(makeBatch(t, record.CodecNone, 2, "a", 0), makeBatch(t, record.CodecNone, 3, "b", 0))
	if _, err := l.Append(run); !errors.Is(err, ErrStorageFailed) {
		t.Fatalf("append of a run on a broken file: %v", err)
	}
	if l.LogEndOffset() != 1 || active.size.Load() != size {
		t.Fatalf("log end %d, size %d after a failed run, want 1, %d", l.LogEndOffset(), active.size.Load(), size)
	}
	if _, err := l.Append(run); !errors.Is(err, ErrStorageFailed) {
		t.Fatalf("the write error must stick: %v", err)
	}
}
