package storage

import (
	"errors"
	"testing"

	"github.com/stratalog/strata/storage/record"
)

// idemBatch is a batch of n records from producer pid at (epoch, seq).
func idemBatch(t testing.TB, pid int64, epoch int16, seq int32, n int, ts int64) []byte {
	t.Helper()
	b := record.NewBuilder(record.BatchOptions{Idempotent: true, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq})
	for i := range n {
		if err := b.Append(ts+int64(i), nil, []byte{'v'}, nil); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), out...)
}

// TestIdempotentAppend walks the sequence rules of producerstate.go on a
// leader's log, then checks that a reopened log and a truncated one rebuild
// the state from the batch headers.
func TestIdempotentAppend(t *testing.T) {
	clock := newFakeClock()
	ts := clock.Now().UnixMilli()
	dir := t.TempDir()
	l := openTestLog(t, dir, testConfig(), clock)
	appendOK := func(b []byte, wantFirst int64, wantDup bool) {
		t.Helper()
		info, err := l.AppendAsLeader(b, 1)
		if err != nil || info.FirstOffset != wantFirst || info.Duplicate != wantDup {
			t.Fatalf("append: %+v %v, want first %d duplicate %v", info, err, wantFirst, wantDup)
		}
	}
	appendErr := func(b []byte, want error) {
		t.Helper()
		leo := l.LogEndOffset()
		if _, err := l.AppendAsLeader(b, 1); !errors.Is(err, want) {
			t.Fatalf("append: %v, want %v", err, want)
		}
		if l.LogEndOffset() != leo {
			t.Fatal("a refused append changed the log")
		}
	}
	// A new producer starts at sequence 0.
	appendErr(idemBatch(t, 7, 0, 5, 2, ts), ErrUnknownProducerID)
	appendOK(idemBatch(t, 7, 0, 0, 3, ts), 0, false)               // offsets 0-2, seq 0-2
	appendOK(makeBatch(t, record.CodecNone, 2, "x", ts), 3, false) // another, non-idempotent writer: 3-4
	appendOK(idemBatch(t, 7, 0, 3, 2, ts), 5, false)               // 5-6, seq 3-4
	// Two batches in one request: sequences must follow each other.
	two := append(idemBatch(t, 7, 0, 5, 1, ts), idemBatch(t, 7, 0, 6, 1, ts)...)
	appendOK(two, 7, false) // 7-8, seq 5-6 (one range with 5-6)
	// Gaps, and a gap inside one request.
	appendErr(idemBatch(t, 7, 0, 9, 1, ts), ErrOutOfOrderSequence)
	appendErr(append(idemBatch(t, 7, 0, 7, 1, ts), idemBatch(t, 7, 0, 9, 1, ts)...), ErrOutOfOrderSequence)
	// Resends answer the offsets of the first time, one batch or a request's two.
	appendOK(idemBatch(t, 7, 0, 0, 3, ts), 0, true)
	appendOK(idemBatch(t, 7, 0, 3, 2, ts), 5, true)
	appendOK(two, 7, true)
	// A resend mixed with new batches is refused.
	appendErr(append(idemBatch(t, 7, 0, 5, 1, ts), idemBatch(t, 7, 0, 7, 1, ts)...), ErrOutOfOrderSequence)
	// A newer epoch starts at 0; then the old one is fenced.
	appendErr(idemBatch(t, 7, 1, 7, 1, ts), ErrOutOfOrderSequence)
	appendOK(idemBatch(t, 7, 1, 0, 1, ts), 9, false)
	appendErr(idemBatch(t, 7, 0, 7, 1, ts), ErrInvalidProducerEpoch)
	// Producers are independent.
	appendOK(idemBatch(t, 8, 0, 0, 1, ts), 10, false)
	appendOK(idemBatch(t, 7, 1, 1, 1, ts), 11, false)

	// A reopened log rebuilds the state from the batch headers.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, dir, testConfig(), clock)
	appendOK(idemBatch(t, 7, 1, 1, 1, ts), 11, true)
	appendErr(idemBatch(t, 7, 0, 7, 1, ts), ErrInvalidProducerEpoch)
	appendOK(idemBatch(t, 8, 0, 1, 1, ts), 12, false)
	// Truncation (a follower's) forgets what went: offset 12 is gone, so
	// producer 8 continues after its batch at 10 again.
	if _, err := l.TruncateTo(12); err != nil {
		t.Fatal(err)
	}
	appendOK(idemBatch(t, 8, 0, 1, 1, ts), 12, false)
	// Follower appends keep the state (the batches carry their offsets).
	fb := idemBatch(t, 8, 0, 2, 2, ts)
	record.Batch(fb).SetBaseOffset(13)
	record.Batch(fb).SetPartitionLeaderEpoch(2)
	if _, err := l.AppendAsFollower(fb); err != nil {
		t.Fatal(err)
	}
	appendOK(idemBatch(t, 8, 0, 2, 2, ts), 13, true)
	appendOK(idemBatch(t, 8, 0, 4, 1, ts), 15, false)
}

// TestProducerStateRanges: resends are recognised among the last
// producerRanges ranges; consecutive batches merge into one range.
func TestProducerStateRanges(t *testing.T) {
	var e producerEntry
	off := int64(0)
	for i := range 10 { // ten batches of 2 records, each at a gap in offsets
		e.add(int32(2*i), int32(2*i+1), off)
		off += 5
	}
	if e.n != producerRanges {
		t.Fatalf("%d ranges", e.n)
	}
	if _, ok := e.find(8, 9); ok {
		t.Fatal("found a range older than the last five")
	}
	if o, ok := e.find(18, 19); !ok || o != 45 {
		t.Fatalf("last range: %d %v", o, ok)
	}
	var m producerEntry
	m.add(0, 1, 0)
	m.add(2, 5, 2) // follows in sequence and offset: merged
	if m.n != 1 {
		t.Fatalf("%d ranges after a contiguous add", m.n)
	}
	if o, ok := m.find(2, 5); !ok || o != 2 {
		t.Fatalf("merged range: %d %v", o, ok)
	}
	if lastSequence(2147483646, 3) != 1 || nextSequence(2147483647) != 0 {
		t.Fatal("sequence wrap")
	}
}
