package client

import (
	"testing"

	"github.com/stratalog/strata/storage/record"
)

// A new builder has room for a whole batch: filling it allocates nothing.
// Free builders come back with their buffers, up to the cache's bound.
func TestBuilderCache(t *testing.T) {
	const batchSize = 64 << 10
	c := newBuilderCache(batchSize, record.BatchOptions{})
	val := make([]byte, 1000)
	var b *record.Builder
	// The cache (2 allocations), the builder (3: itself, its first buffer, the
	// batch-sized one), then nothing more; doubling from 4 KiB would take 4 more.
	if n := testing.AllocsPerRun(10, func() {
		b = newBuilderCache(batchSize, record.BatchOptions{}).Get()
		for b.EstimatedSize()+len(val)+32 <= batchSize {
			if err := b.Append(1, nil, val, nil); err != nil {
				t.Fatal(err)
			}
		}
	}); n > 5 {
		t.Fatalf("a new builder filled to the batch size: %v allocations", n)
	}
	c.Put(b)
	if got := c.Get(); got != b {
		t.Fatal("a free builder was not reused")
	}
	last := record.NewBuilder(record.BatchOptions{})
	c.Put(b)
	c.Put(last)
	if got := c.Get(); got != last {
		t.Fatal("the builder freed last was not the next one used")
	}
	for range builderCacheMax + 5 {
		c.Put(record.NewBuilder(record.BatchOptions{}))
	}
	if want := min(builderCacheBytes/batchSize, builderCacheMax); len(c.free) != want {
		t.Fatalf("%d free builders kept, want %d", len(c.free), want)
	}
	// A builder a large record grew is not kept: the cache's bound is in bytes.
	c.free = nil
	big := c.Get()
	if err := big.Append(1, nil, make([]byte, 8*batchSize), nil); err != nil {
		t.Fatal(err)
	}
	c.Put(big)
	if len(c.free) != 0 {
		t.Fatalf("a builder of %d bytes kept for %d-byte batches", big.Capacity(), batchSize)
	}
	// New builders start at the batch size only up to builderInitialMax.
	if got := newBuilderCache(64<<20, record.BatchOptions{}).Get().Capacity(); got > builderInitialMax {
		t.Fatalf("a new builder for 64 MiB batches holds %d bytes up front", got)
	}
}
