package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/storage/record"
)

// fakeClock is a settable clock for segment.ms and retention tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.UnixMilli(1_700_000_000_000)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.SegmentBytes = 2048
	cfg.IndexIntervalBytes = 256
	cfg.MaxIndexSize = 4096
	cfg.FileDeleteDelayMs = 0
	return cfg
}

func openTestLog(t testing.TB, dir string, cfg Config, clock *fakeClock) *Log {
	t.Helper()
	opts := OpenOptions{}
	if clock != nil {
		opts.Now = clock.Now
	}
	l, err := Open(dir, cfg, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// makeBatch builds a batch of n records "k<i>"="<tag>-<i>" at timestamp ts+i.
func makeBatch(t testing.TB, codec record.Codec, n int, tag string, ts int64) []byte {
	t.Helper()
	b := record.NewBuilder(record.BatchOptions{Codec: codec})
	for i := range n {
		if err := b.Append(ts+int64(i), fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "%s-%d", tag, i), nil); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

// readAll reads every batch of the log from its start through Read and
// returns them, checking each region starts at a whole batch.
func readAll(t testing.TB, l *Log) []record.Batch {
	t.Helper()
	var out []record.Batch
	for off := l.LogStartOffset(); off < l.LogEndOffset(); {
		r, err := l.Read(off, 1<<20)
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		if r.Len == 0 {
			t.Fatalf("read %d: empty region below the log end %d", off, l.LogEndOffset())
		}
		buf, err := r.Bytes(nil)
		if err != nil {
			t.Fatalf("read %d: bytes: %v", off, err)
		}
		progressed := false
		for len(buf) > 0 {
			b, err := record.Parse(buf)
			if errors.Is(err, record.ErrShortBatch) {
				break
			}
			if err != nil {
				t.Fatalf("read %d: %v", off, err)
			}
			if err := b.Validate(); err != nil {
				t.Fatalf("read %d: %v", off, err)
			}
			if b.LastOffset() >= off {
				out = append(out, bytes.Clone(b))
				off = b.NextOffset()
				progressed = true
			}
			buf = buf[len(b):]
		}
		if !progressed {
			t.Fatalf("read %d: no batch at or after the offset", off)
		}
	}
	return out
}

func TestAppendAssignsOffsetsAndReadsBack(t *testing.T) {
	l := openTestLog(t, t.TempDir(), testConfig(), nil)
	var want [][]byte
	for i := range 50 {
		b := makeBatch(t, record.Codec(i%5), 1+i%4, fmt.Sprint(i), int64(1000*i))
		info, err := l.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		if info.FirstOffset != record.Batch(b).BaseOffset() || info.LastOffset != record.Batch(b).LastOffset() {
			t.Fatalf("append %d: info %+v, batch at %d", i, info, record.Batch(b).BaseOffset())
		}
		want = append(want, b)
	}
	if l.NumSegments() < 2 {
		t.Fatalf("expected the log to roll; %d segments", l.NumSegments())
	}
	got := readAll(t, l)
	if len(got) != len(want) {
		t.Fatalf("read %d batches, appended %d", len(got), len(want))
	}
	next := int64(0)
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("batch %d differs", i)
		}
		if got[i].BaseOffset() != next {
			t.Fatalf("batch %d at %d, want %d (offsets must be dense)", i, got[i].BaseOffset(), next)
		}
		next = got[i].NextOffset()
	}
	if l.LogEndOffset() != next {
		t.Fatalf("log end %d, want %d", l.LogEndOffset(), next)
	}
	// Every offset inside a batch reads from that batch's start.
	for _, b := range want {
		for o := record.Batch(b).BaseOffset(); o <= record.Batch(b).LastOffset(); o++ {
			r, err := l.Read(o, 1)
			if err != nil {
				t.Fatal(err)
			}
			buf, _ := r.Bytes(nil)
			if got, _ := record.Parse(buf); got.BaseOffset() != record.Batch(b).BaseOffset() {
				t.Fatalf("read %d: batch at %d, want %d", o, got.BaseOffset(), record.Batch(b).BaseOffset())
			}
			if r.Len != int64(len(b)) {
				t.Fatalf("read %d with maxBytes 1: region of %d bytes, want the whole first batch (%d)", o, r.Len, len(b))
			}
		}
	}
}

func TestReadBounds(t *testing.T) {
	l := openTestLog(t, t.TempDir(), testConfig(), nil)
	for i := range 3 {
		if _, err := l.Append(makeBatch(t, record.CodecNone, 2, fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := l.Read(6, 100); err != nil || r.Len != 0 {
		t.Fatalf("read at the log end: %v, %d bytes; want an empty region", err, r.Len)
	}
	if _, err := l.Read(7, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past the end: %v", err)
	}
	if _, err := l.Read(-1, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the start: %v", err)
	}
	// Up to a high watermark of 4: batches [0,1] and [2,3] only.
	r, err := l.ReadUpTo(0, 1<<20, 4)
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := r.Bytes(nil)
	b1, _ := record.Parse(buf)
	b2, _ := record.Parse(buf[len(b1):])
	if len(b1)+len(b2) != len(buf) || b2.LastOffset() != 3 {
		t.Fatalf("ReadUpTo(0, hw=4) returned %d bytes ending at offset %d", len(buf), b2.LastOffset())
	}
	if r, err := l.ReadUpTo(4, 1<<20, 4); err != nil || r.Len != 0 {
		t.Fatalf("ReadUpTo at the hw: %v, %d bytes", err, r.Len)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBatchBytes = 2048
	l := openTestLog(t, t.TempDir(), cfg, nil)
	good := makeBatch(t, record.CodecNone, 3, "good", 0)
	if _, err := l.Append(bytes.Clone(good)); err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 0xff
	badCodec := bytes.Clone(good)
	badCodec[record.AttributesOffset+1] |= 0x07
	record.Batch(badCodec).UpdateCRC()
	big := makeBatch(t, record.CodecNone, 1, string(bytes.Repeat([]byte("x"), 4096)), 0)
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"crc mismatch", flipped, record.ErrCorruptRecord},
		{"truncated batch", good[:len(good)-5], record.ErrCorruptRecord},
		{"unknown codec", badCodec, record.ErrUnknownCodec},
		{"too large", big, ErrRecordTooLarge},
		{"empty", nil, record.ErrCorruptRecord},
		{"good then garbage", append(bytes.Clone(good), 1, 2, 3), record.ErrCorruptRecord},
		{"bad magic", func() []byte { b := bytes.Clone(good); b[record.MagicOffset] = 1; return b }(), record.ErrCorruptRecord},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			leo, size := l.LogEndOffset(), l.Size()
			_, err := l.Append(tc.input)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if l.LogEndOffset() != leo || l.Size() != size {
				t.Fatalf("a rejected append changed the log: end %d->%d, size %d->%d", leo, l.LogEndOffset(), size, l.Size())
			}
		})
	}
	if _, err := l.AppendAsFollower(makeBatch(t, record.CodecNone, 1, "gap", 0)); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("follower append at a wrong offset: %v", err)
	}
}

func TestRollBySegmentMsAndIndexFull(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig()
	cfg.SegmentMs = 1000
	cfg.SegmentBytes = 1 << 30
	l := openTestLog(t, t.TempDir(), cfg, clock)
	ts := clock.Now().UnixMilli()
	for range 3 {
		if _, err := l.Append(makeBatch(t, record.CodecNone, 1, "a", ts)); err != nil {
			t.Fatal(err)
		}
	}
	if l.NumSegments() != 1 {
		t.Fatalf("%d segments before segment.ms", l.NumSegments())
	}
	clock.Advance(2 * time.Second)
	if _, err := l.Append(makeBatch(t, record.CodecNone, 1, "b", ts+2000)); err != nil {
		t.Fatal(err)
	}
	if l.NumSegments() != 2 {
		t.Fatalf("%d segments after segment.ms passed, want 2", l.NumSegments())
	}

	cfg = testConfig()
	cfg.SegmentBytes = 1 << 30
	cfg.IndexIntervalBytes = 0
	cfg.MaxIndexSize = 12 * 4 // 6 offset entries, 4 time entries
	l2 := openTestLog(t, t.TempDir(), cfg, nil)
	for i := range 30 {
		if _, err := l2.Append(makeBatch(t, record.CodecNone, 1, "c", int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if l2.NumSegments() < 5 {
		t.Fatalf("%d segments: a full index must roll the segment", l2.NumSegments())
	}
	if got := readAll(t, l2); len(got) != 30 {
		t.Fatalf("read %d batches, want 30", len(got))
	}
}

func TestTruncateTo(t *testing.T) {
	l := openTestLog(t, t.TempDir(), testConfig(), nil)
	for i := range 40 {
		if _, err := l.AppendAsLeader(makeBatch(t, record.CodecNone, 4, fmt.Sprint(i), int64(i)), int32(i/10)); err != nil {
			t.Fatal(err)
		}
	}
	// Offset 98 is inside the batch [96, 99]: the batch goes whole.
	leo, err := l.TruncateTo(98)
	if err != nil {
		t.Fatal(err)
	}
	if leo != 96 || l.LogEndOffset() != 96 {
		t.Fatalf("truncate to 98: log end %d (returned %d), want 96", l.LogEndOffset(), leo)
	}
	if e, ok := l.LeaderEpochs().Latest(); !ok || e.Epoch != 2 {
		t.Fatalf("latest epoch after truncation %+v, want 2", e)
	}
	// Truncate at a segment's base removes the segment whole.
	segs := l.segments()
	base := segs[1].base
	if _, err := l.TruncateTo(base); err != nil {
		t.Fatal(err)
	}
	if l.LogEndOffset() != base || l.NumSegments() != 1 {
		t.Fatalf("truncate to segment base %d: end %d, %d segments", base, l.LogEndOffset(), l.NumSegments())
	}
	if got := readAll(t, l); len(got) == 0 || got[len(got)-1].NextOffset() != base {
		t.Fatalf("after truncation, the log reads to %d", got[len(got)-1].NextOffset())
	}
	// Appends continue densely.
	info, err := l.Append(makeBatch(t, record.CodecNone, 2, "after", 0))
	if err != nil || info.FirstOffset != base {
		t.Fatalf("append after truncation: %+v, %v", info, err)
	}
	if err := l.TruncateFullyAndStartAt(1000); err != nil {
		t.Fatal(err)
	}
	if l.LogStartOffset() != 1000 || l.LogEndOffset() != 1000 {
		t.Fatalf("truncate fully: start %d end %d", l.LogStartOffset(), l.LogEndOffset())
	}
	if _, ok := l.LeaderEpochs().Latest(); ok {
		t.Fatal("truncate fully must clear the epoch cache")
	}
	info, err = l.Append(makeBatch(t, record.CodecNone, 1, "x", 0))
	if err != nil || info.FirstOffset != 1000 {
		t.Fatalf("append after truncate fully: %+v %v", info, err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	l, err := Open(dir, cfg, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		if _, err := l.AppendAsLeader(makeBatch(t, record.Codec(i%5), 3, fmt.Sprint(i), int64(i)), int32(i/20)); err != nil {
			t.Fatal(err)
		}
	}
	want := readAll(t, l)
	leo := l.LogEndOffset()
	epochs := l.LeaderEpochs().Entries()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, clean := range []bool{true, false} {
		l, err := Open(dir, cfg, OpenOptions{CleanShutdown: clean})
		if err != nil {
			t.Fatal(err)
		}
		if l.LogEndOffset() != leo {
			t.Fatalf("clean=%v: log end %d, want %d", clean, l.LogEndOffset(), leo)
		}
		got := readAll(t, l)
		if len(got) != len(want) {
			t.Fatalf("clean=%v: %d batches, want %d", clean, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("clean=%v: batch %d differs", clean, i)
			}
		}
		if fmt.Sprint(l.LeaderEpochs().Entries()) != fmt.Sprint(epochs) {
			t.Fatalf("clean=%v: epochs %v, want %v", clean, l.LeaderEpochs().Entries(), epochs)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOffsetForTimestamp(t *testing.T) {
	l := openTestLog(t, t.TempDir(), testConfig(), nil)
	// Batch i holds 4 records at timestamps 1000*i + {0,1,2,3}.
	for i := range 50 {
		if _, err := l.Append(makeBatch(t, record.Codec(i%5), 4, "t", int64(1000*i))); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		ts, offset, timestamp int64
		found                 bool
	}{
		{-5, 0, 0, true},
		{0, 0, 0, true},
		{2, 2, 2, true},
		{4, 4, 1000, true},
		{7002, 30, 7002, true},
		{49003, 199, 49003, true},
		{49004, 0, 0, false},
	}
	for _, tc := range cases {
		off, ts, found, err := l.OffsetForTimestamp(tc.ts)
		if err != nil {
			t.Fatal(err)
		}
		if found != tc.found || (found && (off != tc.offset || ts != tc.timestamp)) {
			t.Errorf("OffsetForTimestamp(%d) = %d, %d, %v; want %d, %d, %v", tc.ts, off, ts, found, tc.offset, tc.timestamp, tc.found)
		}
	}
}

func TestRetention(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig()
	cfg.SegmentBytes = 2048
	now := clock.Now().UnixMilli()
	t.Run("time", func(t *testing.T) {
		cfg := cfg
		cfg.RetentionMs = 60_000
		l := openTestLog(t, t.TempDir(), cfg, clock)
		for i := range 40 {
			// The first 20 batches are two minutes old, the rest are new.
			ts := now - 120_000
			if i >= 20 {
				ts = now
			}
			if _, err := l.Append(makeBatch(t, record.CodecNone, 5, "r", ts)); err != nil {
				t.Fatal(err)
			}
		}
		res, err := l.ApplyRetention()
		if err != nil {
			t.Fatal(err)
		}
		if res.Segments == 0 || l.LogStartOffset() == 0 || l.LogStartOffset() > 100 {
			t.Fatalf("time retention: %+v, log start %d", res, l.LogStartOffset())
		}
		if _, err := l.Read(0, 100); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read below the new log start: %v", err)
		}
		// An idle log whose newest record expired rolls and empties.
		clock.Advance(10 * time.Minute)
		if _, err := l.ApplyRetention(); err != nil {
			t.Fatal(err)
		}
		if l.LogStartOffset() != l.LogEndOffset() || l.Size() != 0 {
			t.Fatalf("expired log: start %d end %d size %d", l.LogStartOffset(), l.LogEndOffset(), l.Size())
		}
	})
	t.Run("size", func(t *testing.T) {
		cfg := cfg
		cfg.RetentionBytes = 5000
		l := openTestLog(t, t.TempDir(), cfg, clock)
		for range 60 {
			if _, err := l.Append(makeBatch(t, record.CodecNone, 5, "r", now)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.ApplyRetention(); err != nil {
			t.Fatal(err)
		}
		if l.Size() > 5000+2048 || l.Size() < 5000-2048 {
			t.Fatalf("size retention left %d bytes for retention.bytes 5000", l.Size())
		}
		if got := readAll(t, l); got[0].BaseOffset() != l.LogStartOffset() {
			t.Fatalf("first readable batch at %d, log start %d", got[0].BaseOffset(), l.LogStartOffset())
		}
	})
	t.Run("delete records", func(t *testing.T) {
		l := openTestLog(t, t.TempDir(), cfg, clock)
		for range 60 {
			if _, err := l.Append(makeBatch(t, record.CodecNone, 5, "r", now)); err != nil {
				t.Fatal(err)
			}
		}
		before := l.NumSegments()
		start, err := l.DeleteRecordsBefore(153)
		if err != nil || start != 153 || l.LogStartOffset() != 153 {
			t.Fatalf("delete records: start %d, %v", start, err)
		}
		if l.NumSegments() >= before {
			t.Fatalf("no segment deleted below offset 153 (%d segments)", l.NumSegments())
		}
		if _, err := l.Read(152, 10); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read below the raised start: %v", err)
		}
		if _, err := l.Read(153, 10); err != nil {
			t.Fatalf("read at the raised start: %v", err)
		}
		if _, err := l.DeleteRecordsBefore(l.LogEndOffset() + 1); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("delete records past the end: %v", err)
		}
	})
}

func TestReaderOfDeletedSegmentGetsCleanError(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes = 2048
	l := openTestLog(t, t.TempDir(), cfg, nil)
	for range 30 {
		if _, err := l.Append(makeBatch(t, record.CodecNone, 5, "d", 0)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := l.Read(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.DeleteRecordsBefore(l.LogEndOffset()); err != nil {
		t.Fatal(err)
	}
	l.bg.Wait() // the removal has run
	if _, err := r.Bytes(nil); !errors.Is(err, ErrSegmentDeleted) {
		t.Fatalf("bytes of a deleted region: %v, want ErrSegmentDeleted", err)
	}
	if _, err := r.Mmap(); !errors.Is(err, ErrSegmentDeleted) {
		t.Fatalf("mmap of a deleted region: %v, want ErrSegmentDeleted", err)
	}
	if files, _ := filepath.Glob(filepath.Join(l.Dir(), "*"+DeletedFileSuffix)); len(files) != 0 {
		t.Fatalf("deleted files left behind: %v", files)
	}
}

func TestFlushPolicyAdvancesRecoveryPoint(t *testing.T) {
	cfg := testConfig()
	cfg.FlushMessages = 10
	l := openTestLog(t, t.TempDir(), cfg, nil)
	if _, err := l.Append(makeBatch(t, record.CodecNone, 5, "f", 0)); err != nil {
		t.Fatal(err)
	}
	if l.RecoveryPoint() != 0 {
		t.Fatalf("recovery point %d before flush.messages is reached", l.RecoveryPoint())
	}
	if _, err := l.Append(makeBatch(t, record.CodecNone, 5, "f", 0)); err != nil {
		t.Fatal(err)
	}
	if l.RecoveryPoint() != 10 {
		t.Fatalf("recovery point %d after 10 records with flush.messages=10", l.RecoveryPoint())
	}
}

func TestWriteErrorSticks(t *testing.T) {
	l := openTestLog(t, t.TempDir(), testConfig(), nil)
	if _, err := l.Append(makeBatch(t, record.CodecNone, 1, "w", 0)); err != nil {
		t.Fatal(err)
	}
	// Pull the file out from under the writer.
	segs := l.segments()
	segs[len(segs)-1].file.File().Close()
	if _, err := l.Append(makeBatch(t, record.CodecNone, 1, "w", 0)); !errors.Is(err, ErrStorageFailed) {
		t.Fatalf("append on a broken file: %v", err)
	}
	if _, err := l.Append(makeBatch(t, record.CodecNone, 1, "w", 0)); !errors.Is(err, ErrStorageFailed) {
		t.Fatalf("the write error must stick: %v", err)
	}
	if l.LogEndOffset() != 1 {
		t.Fatalf("log end %d after failed appends, want 1", l.LogEndOffset())
	}
}

func TestConfigFromTopicConfig(t *testing.T) {
	base := DefaultConfig()
	cfg, err := base.FromTopicConfig(map[string]string{"segment.bytes": "2048", "cleanup.policy": "compact,delete", "retention.ms": "-1", "unknown.key": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SegmentBytes != 2048 || !cfg.Compact || !cfg.Delete || cfg.RetentionMs != -1 {
		t.Fatalf("parsed %+v", cfg)
	}
	for _, bad := range []map[string]string{
		{"segment.bytes": "ten"},
		{"segment.bytes": "10"},
		{"cleanup.policy": "archive"},
		{"retention.ms": "-2"},
		{"max.message.bytes": "99999999999"},
	} {
		if _, err := base.FromTopicConfig(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%v: %v, want ErrInvalidConfig", bad, err)
		}
	}
	if _, err := Open(t.TempDir(), Config{}, OpenOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("open with a zero config: %v", err)
	}
	_ = os.ErrNotExist
}
