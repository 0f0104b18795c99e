package storage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratalog/strata/storage/record"
)

type kv struct {
	offset int64
	key    string
	value  []byte // nil: tombstone
}

// readRecords reads every record of the log in order.
func readRecords(t testing.TB, l *Log) []kv {
	t.Helper()
	var out []kv
	var it record.Iterator
	for _, b := range readAll(t, l) {
		if err := it.Reset(b); err != nil {
			t.Fatal(err)
		}
		for it.Next() {
			r := it.Record()
			if r.Offset < l.LogStartOffset() {
				continue
			}
			out = append(out, kv{r.Offset, string(r.Key), bytes.Clone(r.Value)})
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func compactConfig() Config {
	cfg := testConfig()
	cfg.SegmentBytes = 1500
	cfg.Compact, cfg.Delete = true, false
	cfg.DeleteRetentionMs = 60_000
	return cfg
}

// appendKeyed appends one batch of records key=value (value "" is a tombstone).
func appendKeyed(t testing.TB, l *Log, codec record.Codec, pairs ...string) {
	t.Helper()
	b := record.NewBuilder(record.BatchOptions{Codec: codec})
	for i := 0; i < len(pairs); i += 2 {
		var v []byte
		if pairs[i+1] != "" {
			v = []byte(pairs[i+1])
		}
		if err := b.Append(1000, []byte(pairs[i]), v, []record.Header{{Key: "h", Value: []byte(pairs[i])}}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(bytes.Clone(out)); err != nil {
		t.Fatal(err)
	}
}

func TestCompactKeepsLatestPerKey(t *testing.T) {
	clock := newFakeClock()
	l := openTestLog(t, t.TempDir(), compactConfig(), clock)
	latest := map[string]kv{}
	for i := range 120 {
		key := fmt.Sprintf("key-%d", i%10)
		val := fmt.Sprintf("v%d", i)
		appendKeyed(t, l, record.Codec(i%5), key, val)
		latest[key] = kv{int64(i), key, []byte(val)}
	}
	before := readRecords(t, l)
	segsBefore := l.NumSegments()
	res, err := l.Compact()
	if err != nil {
		t.Fatal(err)
	}
	if res.RecordsAfter >= res.RecordsBefore || res.BytesAfter >= res.BytesBefore {
		t.Fatalf("compaction removed nothing: %+v", res)
	}
	after := readRecords(t, l)
	if l.NumSegments() > segsBefore {
		t.Fatalf("segments grew from %d to %d", segsBefore, l.NumSegments())
	}
	// Offsets are preserved; every record kept is the latest of its key in the
	// cleaned range, or in the active segment.
	activeBase := l.segments()[l.NumSegments()-1].base
	seen := map[string]bool{}
	for _, r := range after {
		if r.offset >= activeBase {
			continue
		}
		if seen[r.key] {
			t.Fatalf("key %s kept twice in the cleaned range", r.key)
		}
		seen[r.key] = true
		if orig := before[r.offset]; orig.key != r.key || !bytes.Equal(orig.value, r.value) {
			t.Fatalf("offset %d changed: %v -> %v", r.offset, orig, r)
		}
	}
	final := map[string]kv{}
	for _, r := range after {
		final[r.key] = r
	}
	for k, want := range latest {
		if got := final[k]; got.offset != want.offset || !bytes.Equal(got.value, want.value) {
			t.Fatalf("latest of %s: got %+v, want %+v", k, got, want)
		}
	}
	if l.LogEndOffset() != 120 {
		t.Fatalf("log end %d after compaction", l.LogEndOffset())
	}
	// A second pass has nothing new to clean and is skipped.
	res2, err := l.Compact()
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Skipped || res2.Groups != 0 {
		t.Fatalf("second pass with nothing new: %+v", res2)
	}
	// New sealed data over new keys only: the pass runs (twice, the first
	// also cleans what was active before), but groups it cannot shrink are
	// not rewritten.
	var res3 CompactResult
	for round := range 2 {
		for i := range 20 {
			appendKeyed(t, l, record.CodecNone, fmt.Sprintf("fresh-%d-%d", round, i), "x")
		}
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
		if res3, err = l.Compact(); err != nil {
			t.Fatal(err)
		}
	}
	if res3.Skipped || res3.RecordsAfter != res3.RecordsBefore || res3.Groups != 0 {
		t.Fatalf("a pass over already-compact data rewrote groups: %+v", res3)
	}
	// Reopen after compaction reads the same.
	after = readRecords(t, l)
	dir := l.Dir()
	l.Close()
	l2 := openTestLog(t, dir, compactConfig(), clock)
	if got := readRecords(t, l2); fmt.Sprint(got) != fmt.Sprint(after) {
		t.Fatal("records differ after reopen")
	}
}

func TestCompactTombstonesLiveForDeleteRetention(t *testing.T) {
	clock := newFakeClock()
	l := openTestLog(t, t.TempDir(), compactConfig(), clock)
	appendKeyed(t, l, record.CodecNone, "a", "1", "b", "1")
	appendKeyed(t, l, record.CodecNone, "a", "") // tombstone for a
	for i := range 40 {
		appendKeyed(t, l, record.CodecNone, fmt.Sprintf("other-%d", i), "x")
	}
	if _, err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	has := func(key string, tomb bool) bool {
		for _, r := range readRecords(t, l) {
			if r.key == key && (r.value == nil) == tomb {
				return true
			}
		}
		return false
	}
	if has("a", false) {
		t.Fatal("a's old value survived its tombstone")
	}
	if !has("a", true) {
		t.Fatal("the tombstone must stay for delete.retention.ms")
	}
	clock.Advance(30 * time.Second)
	l.Compact()
	if !has("a", true) {
		t.Fatal("the tombstone went before delete.retention.ms")
	}
	clock.Advance(31 * time.Second)
	res, err := l.Compact()
	if err != nil {
		t.Fatal(err)
	}
	if has("a", true) || res.TombstonesDrop != 1 {
		t.Fatalf("the tombstone outlived delete.retention.ms: %+v", res)
	}
	if !has("b", false) {
		t.Fatal("b lost")
	}
}

// TestCompactCrashSafety leaves each step's files behind as a crash would
// and checks the log opens to either the old or the new state.
func TestCompactCrashSafety(t *testing.T) {
	clock := newFakeClock()
	build := func(t *testing.T) (string, []kv) {
		dir := t.TempDir()
		l, err := Open(dir, compactConfig(), OpenOptions{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 60 {
			appendKeyed(t, l, record.CodecNone, fmt.Sprintf("k%d", i%4), fmt.Sprint(i))
		}
		recs := readRecords(t, l)
		l.Close()
		return dir, recs
	}
	latestOf := func(recs []kv) map[string]string {
		m := map[string]string{}
		for _, r := range recs {
			m[r.key] = string(r.value)
		}
		return m
	}
	t.Run("cleaned left behind", func(t *testing.T) {
		dir, recs := build(t)
		os.WriteFile(filepath.Join(dir, SegmentFileName(0, LogFileSuffix+CleanedFileSuffix)), []byte("partial"), 0o644)
		l := openTestLog(t, dir, compactConfig(), clock)
		if got := readRecords(t, l); fmt.Sprint(got) != fmt.Sprint(recs) {
			t.Fatal("log changed by a leftover .cleaned file")
		}
		if _, err := os.Stat(filepath.Join(dir, SegmentFileName(0, LogFileSuffix+CleanedFileSuffix))); !os.IsNotExist(err) {
			t.Fatal(".cleaned not removed")
		}
	})
	t.Run("swap committed, old segments still there", func(t *testing.T) {
		dir, recs := build(t)
		// Compact a copy to get the cleaned first segments, then plant its
		// first segment as a .swap beside the original segments.
		cdir := copyDir(t, dir)
		lc := openTestLog(t, cdir, compactConfig(), clock)
		if _, err := lc.Compact(); err != nil {
			t.Fatal(err)
		}
		lc.Close()
		cleaned, err := os.ReadFile(filepath.Join(cdir, SegmentFileName(0, LogFileSuffix)))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, SegmentFileName(0, LogFileSuffix+SwapFileSuffix)), cleaned, 0o644)
		l := openTestLog(t, dir, compactConfig(), clock)
		got := readRecords(t, l)
		if fmt.Sprint(latestOf(got)) != fmt.Sprint(latestOf(recs)) {
			t.Fatalf("latest values changed by completing the swap: %v vs %v", latestOf(got), latestOf(recs))
		}
		if l.LogEndOffset() != 60 {
			t.Fatalf("log end %d", l.LogEndOffset())
		}
		for i := 1; i < len(got); i++ {
			if got[i].offset <= got[i-1].offset {
				t.Fatalf("offsets not increasing after swap: %d then %d", got[i-1].offset, got[i].offset)
			}
		}
	})
}

// TestCompactSwapAbortedByTruncation truncates the log while a pass is
// between writing a group and swapping it in: the swap must not bring the
// truncated records back.
func TestCompactSwapAbortedByTruncation(t *testing.T) {
	l := openTestLog(t, t.TempDir(), compactConfig(), newFakeClock())
	for i := range 80 {
		appendKeyed(t, l, record.CodecNone, fmt.Sprintf("k%d", i%3), fmt.Sprint(i))
	}
	l.beforeSwap = func() {
		l.beforeSwap = nil
		if _, err := l.TruncateTo(5); err != nil {
			t.Error(err)
		}
	}
	if _, err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	if l.LogEndOffset() != 5 {
		t.Fatalf("log end %d, want 5", l.LogEndOffset())
	}
	got := readRecords(t, l)
	if len(got) != 5 || got[len(got)-1].offset != 4 {
		t.Fatalf("after truncation during compaction: %v", got)
	}
	if files, _ := filepath.Glob(filepath.Join(l.Dir(), "*"+SwapFileSuffix)); len(files) != 0 {
		t.Fatalf("swap files left: %v", files)
	}
}
