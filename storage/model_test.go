package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stratalog/strata/storage/record"
)

// logModel is the in-memory model of a log the model-based test checks the
// real one against: the batches in order, and the log start offset.
type logModel struct {
	batches []record.Batch
	start   int64
	end     int64
}

func (m *logModel) append(b record.Batch) {
	m.batches = append(m.batches, b)
	m.end = b.NextOffset()
}

// truncate mirrors Log.TruncateTo: the batch holding offset goes whole.
func (m *logModel) truncate(offset int64) {
	if offset < m.start {
		m.batches, m.start, m.end = nil, offset, offset
		return
	}
	for i, b := range m.batches {
		if b.LastOffset() >= offset {
			m.batches = m.batches[:i]
			m.end = b.BaseOffset()
			m.start = min(m.start, m.end)
			return
		}
	}
}

// batchAt is the batch holding offset, or nil.
func (m *logModel) batchAt(offset int64) record.Batch {
	for _, b := range m.batches {
		if b.LastOffset() >= offset && b.BaseOffset() <= offset {
			return b
		}
	}
	return nil
}

// TestLogAgainstModel drives a log with random appends, reads, truncations,
// rolls, retention and reopens, and checks it against logModel after every
// step.
func TestLogAgainstModel(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4}
	steps := 600
	if testing.Short() {
		seeds, steps = seeds[:1], 200
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			cfg := testConfig()
			cfg.SegmentBytes = 1024 + int64(rng.IntN(4096))
			cfg.IndexIntervalBytes = int64(rng.IntN(512))
			cfg.RetentionMs = -1 // batches carry made-up timestamps
			dir := t.TempDir()
			l, err := Open(dir, cfg, OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { l.Close() }()
			m := &logModel{}
			epoch := int32(0)
			for step := range steps {
				op := rng.IntN(100)
				var what string
				switch {
				case op < 55:
					n := 1 + rng.IntN(6)
					b := makeBatch(t, record.Codec(rng.IntN(5)), n, fmt.Sprint(step), int64(step))
					if rng.IntN(10) == 0 {
						epoch++
					}
					what = fmt.Sprintf("append %d records epoch %d", n, epoch)
					if _, err := l.AppendAsLeader(b, epoch); err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
					m.append(record.Batch(b))
				case op < 75:
					off := m.start + rng.Int64N(m.end-m.start+2) - 1
					what = fmt.Sprintf("read %d", off)
					r, err := l.Read(off, 1+rng.IntN(4096))
					if off < m.start || off > m.end {
						if !errors.Is(err, ErrOffsetOutOfRange) {
							t.Fatalf("step %d %s: %v, want out of range [%d, %d]", step, what, err, m.start, m.end)
						}
						break
					}
					if err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
					want := m.batchAt(off)
					if want == nil {
						if r.Len != 0 {
							t.Fatalf("step %d %s: %d bytes at the log end", step, what, r.Len)
						}
						break
					}
					buf, err := r.Bytes(nil)
					if err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
					if len(buf) < len(want) || !bytes.Equal(buf[:len(want)], want) {
						t.Fatalf("step %d %s: region does not start with the batch at %d", step, what, want.BaseOffset())
					}
				case op < 83:
					off := m.start + rng.Int64N(m.end-m.start+1)
					if rng.IntN(8) == 0 {
						off = m.start - 1 - rng.Int64N(3) // below the start: truncate fully
						off = max(off, 0)
					}
					what = fmt.Sprintf("truncate to %d", off)
					if _, err := l.TruncateTo(off); err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
					m.truncate(off)
				case op < 88:
					what = "roll"
					if err := l.Roll(); err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
				case op < 93:
					off := m.start + rng.Int64N(m.end-m.start+1)
					what = fmt.Sprintf("delete records before %d", off)
					if _, err := l.DeleteRecordsBefore(off); err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
					m.start = max(m.start, off)
					for len(m.batches) > 0 && m.batches[0].LastOffset() < m.start {
						m.batches = m.batches[1:]
					}
				default:
					clean := rng.IntN(2) == 0
					what = fmt.Sprintf("reopen clean=%v", clean)
					start, hw := l.LogStartOffset(), l.HighWatermark()
					if err := l.Close(); err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
					if l, err = Open(dir, cfg, OpenOptions{LogStartOffset: start, HighWatermark: hw, CleanShutdown: clean}); err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
				}
				if l.LogEndOffset() != m.end || l.LogStartOffset() != m.start {
					t.Fatalf("step %d after %s: log [%d, %d), model [%d, %d)", step, what, l.LogStartOffset(), l.LogEndOffset(), m.start, m.end)
				}
			}
			got := readAll(t, l)
			if len(got) != len(m.batches) {
				t.Fatalf("final read: %d batches, model has %d", len(got), len(m.batches))
			}
			for i := range got {
				if !bytes.Equal(got[i], m.batches[i]) {
					t.Fatalf("final read: batch %d differs", i)
				}
			}
		})
	}
}
