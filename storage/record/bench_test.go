package record

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// Run with:
//
//	go test -run='^$' -bench=. -benchmem ./storage/record/
//
// Each op is one whole batch. allocs/record and allocs/batch are measured
// over the timed loop, warm-up excluded, so the contract "zero allocations
// per record on append and iteration, at most 2 per batch" reads directly.

// benchValues are 1 KiB values that look like real payloads (JSON-ish text
// with varying numbers), so the codecs have something to do.
func benchValues() [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([][]byte, 64)
	for i := range vals {
		var v []byte
		for len(v) < 1024 {
			v = fmt.Appendf(v, `{"user":%d,"event":"click","page":"/p/%d","ms":%d},`, r.IntN(1e6), r.IntN(500), r.IntN(1e4))
		}
		vals[i] = v[:1024]
	}
	return vals
}

var benchHeaders = []Header{{Key: "trace-id", Value: []byte("0af7651916cd43dd8448eb211c80319c")}}

// fillBatch appends 1 KiB records until the batch reaches size bytes.
func fillBatch(bld *Builder, opts BatchOptions, vals [][]byte, size int) (int, error) {
	bld.Reset(opts)
	var key [8]byte
	n := 0
	for bld.EstimatedSize()+1100 <= size {
		key[0], key[1] = byte(n), byte(n>>8)
		if err := bld.Append(1_732_000_000_000+int64(n), key[:], vals[n%len(vals)], benchHeaders); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// allocMeter counts heap allocations across a benchmark's timed loop.
type allocMeter struct{ before runtime.MemStats }

func (m *allocMeter) start(b *testing.B) {
	b.ReportAllocs()
	runtime.ReadMemStats(&m.before)
	b.ResetTimer()
}

func (m *allocMeter) stop(b *testing.B, recordsPerOp int) {
	b.StopTimer()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	allocs := float64(after.Mallocs - m.before.Mallocs)
	b.ReportMetric(allocs/float64(b.N), "allocs/batch")
	b.ReportMetric(allocs/float64(b.N)/float64(recordsPerOp), "allocs/record")
	b.ReportMetric(float64(recordsPerOp), "records/batch")
}

func BenchmarkBuilderAppend(b *testing.B) {
	vals := benchValues()
	cases := []struct {
		codec Codec
		size  int
	}{
		{CodecNone, 16 << 10},
		{CodecNone, 1 << 20},
		{CodecGzip, 16 << 10},
		{CodecSnappy, 16 << 10},
		{CodecLZ4, 16 << 10},
		{CodecZstd, 16 << 10},
	}
	for _, tc := range cases {
		b.Run(fmt.Sprintf("%s/%dKiB", tc.codec, tc.size>>10), func(b *testing.B) {
			opts := BatchOptions{Codec: tc.codec}
			bld := NewBuilder(opts)
			// Warm the buffers and codec pools.
			n, err := fillBatch(bld, opts, vals, tc.size)
			if err != nil {
				b.Fatal(err)
			}
			batch, err := bld.Build()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(bld.EstimatedSize()))
			b.ReportMetric(float64(bld.EstimatedSize())/float64(len(batch)), "ratio")
			var m allocMeter
			m.start(b)
			for range b.N {
				if _, err := fillBatch(bld, opts, vals, tc.size); err != nil {
					b.Fatal(err)
				}
				if _, err := bld.Build(); err != nil {
					b.Fatal(err)
				}
			}
			m.stop(b, n)
		})
	}
}

func BenchmarkIterate(b *testing.B) {
	vals := benchValues()
	cases := []struct {
		codec Codec
		size  int
	}{
		{CodecNone, 16 << 10},
		{CodecNone, 1 << 20},
		{CodecGzip, 16 << 10},
		{CodecSnappy, 16 << 10},
		{CodecLZ4, 16 << 10},
		{CodecZstd, 16 << 10},
	}
	for _, tc := range cases {
		b.Run(fmt.Sprintf("%s/%dKiB", tc.codec, tc.size>>10), func(b *testing.B) {
			opts := BatchOptions{Codec: tc.codec}
			bld := NewBuilder(opts)
			n, err := fillBatch(bld, opts, vals, tc.size)
			if err != nil {
				b.Fatal(err)
			}
			raw := bld.EstimatedSize()
			built, err := bld.Build()
			if err != nil {
				b.Fatal(err)
			}
			batch := append(Batch(nil), built...)
			var it Iterator
			var sink int
			iterate := func() {
				if err := it.Reset(batch); err != nil {
					b.Fatal(err)
				}
				for it.Next() {
					r := it.Record()
					sink += len(r.Key) + len(r.Value)
					h := r.HeaderIter()
					for h.Next() {
						sink += len(h.Value)
					}
				}
				if err := it.Err(); err != nil {
					b.Fatal(err)
				}
			}
			iterate() // warm
			b.SetBytes(int64(raw))
			var m allocMeter
			m.start(b)
			for range b.N {
				iterate()
			}
			m.stop(b, n)
			if sink == 0 {
				b.Fatal("nothing read")
			}
		})
	}
}

// BenchmarkValidate is the CRC check a leader runs on every produced batch.
func BenchmarkValidate(b *testing.B) {
	bld := NewBuilder(BatchOptions{})
	if _, err := fillBatch(bld, BatchOptions{}, benchValues(), 1<<20); err != nil {
		b.Fatal(err)
	}
	batch, err := bld.Build()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for range b.N {
		if err := batch.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
