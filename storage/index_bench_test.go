package storage

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

const benchIndexSize = 10 << 20 // Kafka's default segment.index.bytes

// fullOffsetIndex is a 10 MiB offset index with every slot used: offsets
// 4i, positions 1024i.
func fullOffsetIndex(b *testing.B) *OffsetIndex {
	b.Helper()
	x, err := OpenOffsetIndex(filepath.Join(b.TempDir(), "0.index"), 0, benchIndexSize, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { x.Close() })
	for i := 0; !x.IsFull(); i++ {
		if err := x.Append(int64(i)*4, int32(i)*1024); err != nil {
			b.Fatal(err)
		}
	}
	return x
}

// BenchmarkOffsetIndexLookup: random lookups in a full 10 MiB index
// (1,310,720 entries). Must not allocate.
func BenchmarkOffsetIndexLookup(b *testing.B) {
	x := fullOffsetIndex(b)
	last := x.LastOffset()
	rng := rand.New(rand.NewPCG(1, 1))
	targets := make([]int64, 1<<16)
	for i := range targets {
		targets[i] = rng.Int64N(last + 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := targets[i&(len(targets)-1)]
		if off, _ := x.Lookup(t); off > t {
			b.Fatal("bad lookup")
		}
	}
}

// BenchmarkOffsetIndexLookupTail: lookups near the end (followers and
// consumers that keep up), served from the warm section.
func BenchmarkOffsetIndexLookupTail(b *testing.B) {
	x := fullOffsetIndex(b)
	last := x.LastOffset()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := last - int64(i&1023)
		if off, _ := x.Lookup(t); off > t {
			b.Fatal("bad lookup")
		}
	}
}

// BenchmarkOffsetIndexLookupParallel: random lookups from every core at
// once (the reader gate's shared counters are the contended part).
func BenchmarkOffsetIndexLookupParallel(b *testing.B) {
	x := fullOffsetIndex(b)
	last := x.LastOffset()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
		for pb.Next() {
			t := rng.Int64N(last + 1)
			if off, _ := x.Lookup(t); off > t {
				b.Error("bad lookup")
				return
			}
		}
	})
}

// BenchmarkTimeIndexLookup: random lookups in a full 10 MiB time index
// (873,813 entries).
func BenchmarkTimeIndexLookup(b *testing.B) {
	x, err := OpenTimeIndex(filepath.Join(b.TempDir(), "0.timeindex"), 0, benchIndexSize, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { x.Close() })
	for i := int64(1); ; i++ {
		if err := x.MaybeAppend(1_700_000_000_000+i*10, i*4); err != nil {
			break // the reserved slot is used too: append until ErrIndexFull
		}
	}
	lastTs, _ := x.LastEntry()
	rng := rand.New(rand.NewPCG(3, 3))
	targets := make([]int64, 1<<16)
	for i := range targets {
		targets[i] = 1_700_000_000_000 + rng.Int64N(lastTs-1_700_000_000_000+1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := targets[i&(len(targets)-1)]
		if ts, _ := x.Lookup(t); ts > t {
			b.Fatal("bad lookup")
		}
	}
}

// BenchmarkOffsetIndexAppend: appends into a 10 MiB index, resetting it when
// full (the reset is outside the timer).
func BenchmarkOffsetIndexAppend(b *testing.B) {
	x, err := OpenOffsetIndex(filepath.Join(b.TempDir(), "0.index"), 0, benchIndexSize, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { x.Close() })
	b.ReportAllocs()
	b.ResetTimer()
	n := int64(0)
	for i := 0; i < b.N; i++ {
		if x.IsFull() {
			b.StopTimer()
			x.Reset()
			n = 0
			b.StartTimer()
		}
		if err := x.Append(n*4, int32(n)*1024); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

// BenchmarkOffsetIndexSanityCheck: the full check of a 10 MiB index that the
// log runs when it opens a segment.
func BenchmarkOffsetIndexSanityCheck(b *testing.B) {
	x := fullOffsetIndex(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := x.SanityCheck(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIndexFillPage: each op fills one fresh page of a new
// (preallocated, sparse) offset index with 512 appends, so it pays one first
// touch of a page — what a broker pays per new index page, e.g. for each of
// hundreds of new partitions.
func BenchmarkIndexFillPage(b *testing.B) {
	const perPage = 4096 / OffsetIndexEntrySize
	dir := b.TempDir()
	var x *OffsetIndex
	pages := 0
	n := int64(0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if x == nil || pages == 64 {
			b.StopTimer()
			if x != nil {
				x.Close()
			}
			var err error
			x, err = OpenOffsetIndex(filepath.Join(dir, fmt.Sprintf("%d.index", i)), 0, benchIndexSize, true)
			if err != nil {
				b.Fatal(err)
			}
			pages, n = 0, 0
			b.StartTimer()
		}
		for range perPage {
			if err := x.Append(n*4, int32(n)*1024); err != nil {
				b.Fatal(err)
			}
			n++
		}
		pages++
	}
	b.StopTimer()
	x.Close()
}
