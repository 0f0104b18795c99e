package storage

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/stratalog/strata/storage/record"
)

// benchDir is where benchmarks write: STRATA_BENCH_DIR (so a script can put
// the log on the same disk as its dd baseline) or a temp dir.
func benchDir(b *testing.B) string {
	if d := os.Getenv("STRATA_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// benchBatch builds one batch of n records of size bytes each.
func benchBatch(b *testing.B, codec record.Codec, n, size int) []byte {
	bl := record.NewBuilder(record.BatchOptions{Codec: codec})
	value := bytes.Repeat([]byte("strata-bench-"), size/13+1)[:size]
	for i := range n {
		if err := bl.Append(int64(i), fmt.Appendf(nil, "key-%08d", i), value, nil); err != nil {
			b.Fatal(err)
		}
	}
	out, err := bl.Build()
	if err != nil {
		b.Fatal(err)
	}
	return bytes.Clone(out)
}

// BenchmarkAppend appends 1 KiB records in 16 KiB and 1 MiB batches to a log
// with the default flush policy (the page cache). allocs/op is per batch;
// allocs/record divides it by the records in a batch.
func BenchmarkAppend(b *testing.B) {
	for _, tc := range []struct {
		name    string
		records int
	}{{"batch=16KiB", 16}, {"batch=1MiB", 1000}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.SegmentBytes = 256 << 20
			cfg.MaxBatchBytes = 2 << 20
			cfg.RetentionMs = -1
			l, err := Open(benchDir(b), cfg, OpenOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batch := benchBatch(b, record.CodecNone, tc.records, 1024)
			if _, err := l.AppendAsLeader(batch, 1); err != nil { // warm up
				b.Fatal(err)
			}
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := l.AppendAsLeader(batch, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(testing.AllocsPerRun(10, func() { l.AppendAsLeader(batch, 1) }))/float64(tc.records), "allocs/record")
		})
	}
}

// BenchmarkAppendChunk appends 1 MiB per call as a produce request or a
// follower's fetch response brings it: 64 batches of 16 KiB or 256 of 4 KiB
// (1 KiB records), back to back. The log writes such a chunk with one pwrite
// per segment it lands in, not one per batch (appendrun.go).
func BenchmarkAppendChunk(b *testing.B) {
	for _, tc := range []struct {
		name             string
		batches, records int
	}{{"64x16KiB", 64, 16}, {"256x4KiB", 256, 4}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.SegmentBytes = 256 << 20
			cfg.RetentionMs = -1
			l, err := Open(benchDir(b), cfg, OpenOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			// 1 KiB records: a batch of n is n KiB, framing aside.
			batch := benchBatch(b, record.CodecNone, tc.records, 1024-22)
			chunk := bytes.Repeat(batch, tc.batches)
			if _, err := l.AppendAsLeader(chunk, 1); err != nil { // warm up
				b.Fatal(err)
			}
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := l.AppendAsLeader(chunk, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRead reads 1 MiB regions of a log from the page cache through
// Log.Read + Region.Bytes into a reused buffer.
func BenchmarkRead(b *testing.B) {
	cfg := DefaultConfig()
	cfg.RetentionMs = -1
	l, err := Open(benchDir(b), cfg, OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := benchBatch(b, record.CodecNone, 16, 1024)
	for range 4096 { // 64 MiB
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, 1<<20+len(batch))
	leo := l.LogEndOffset()
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	off := int64(0)
	for b.Loop() {
		r, err := l.Read(off, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Bytes(buf); err != nil {
			b.Fatal(err)
		}
		off += 1 << 20 / int64(len(batch)) * 16
		if off >= leo {
			off = 0
		}
	}
}

// BenchmarkOffsetLookup is Read's offset -> position step alone.
func BenchmarkOffsetLookup(b *testing.B) {
	cfg := DefaultConfig()
	cfg.RetentionMs = -1
	l, err := Open(benchDir(b), cfg, OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := benchBatch(b, record.CodecNone, 4, 1024)
	for range 16384 {
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	seg := l.segments()[0]
	leo := l.LogEndOffset()
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		if _, err := seg.positionOf(i * 7919 % leo); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCompact compacts 32 MiB of 1 KiB records over 1000 keys.
func BenchmarkCompact(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		cfg := DefaultConfig()
		cfg.SegmentBytes = 4 << 20
		cfg.Compact, cfg.Delete = true, false
		l, err := Open(benchDir(b), cfg, OpenOptions{})
		if err != nil {
			b.Fatal(err)
		}
		bl := record.NewBuilder(record.BatchOptions{})
		value := bytes.Repeat([]byte("v"), 1024)
		var total int64
		for i := range 32 << 10 {
			bl.Append(int64(i), fmt.Appendf(nil, "key-%d", i%1000), value, nil)
			if bl.Count() == 16 {
				out, _ := bl.Build()
				if _, err := l.Append(out); err != nil {
					b.Fatal(err)
				}
				total += int64(len(out))
				bl.Reset(record.BatchOptions{})
			}
		}
		b.SetBytes(total)
		b.StartTimer()
		if _, err := l.Compact(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		l.Close()
		b.StartTimer()
	}
}
