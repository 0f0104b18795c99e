package client

import (
	"sync"
	"testing"
)

func TestDefaultPartitionerKeyed(t *testing.T) {
	p := DefaultPartitioner()
	for _, k := range []string{"21", "foobar", "abc", "order-42"} {
		want := toPositive(murmur2([]byte(k))) % 12
		for range 3 {
			if got := p.Partition("t", []byte(k), 12); got != want {
				t.Fatalf("key %q: partition %d, want %d", k, got, want)
			}
		}
	}
}

func TestStickyPartitioner(t *testing.T) {
	var p StickyPartitioner
	first := p.Partition("t", nil, 8)
	for range 100 {
		if got := p.Partition("t", nil, 8); got != first {
			t.Fatalf("sticky moved without a new batch: %d then %d", first, got)
		}
	}
	// A new batch on another partition (stale notice) changes nothing.
	p.OnNewBatch("t", (first+1)%8, 8)
	if got := p.Partition("t", nil, 8); got != first {
		t.Fatalf("stale OnNewBatch moved the partition")
	}
	seen := map[int32]bool{first: true}
	cur := first
	for range 200 {
		p.OnNewBatch("t", cur, 8)
		next := p.Partition("t", nil, 8)
		if next == cur {
			t.Fatalf("OnNewBatch kept partition %d", cur)
		}
		if next < 0 || next >= 8 {
			t.Fatalf("partition %d out of range", next)
		}
		seen[next] = true
		cur = next
	}
	if len(seen) != 8 {
		t.Fatalf("sticky visited %d of 8 partitions in 200 batches", len(seen))
	}
	// One partition: stays.
	p.OnNewBatch("one", 0, 1)
	if got := p.Partition("one", nil, 1); got != 0 {
		t.Fatalf("one partition: %d", got)
	}
	// Topics are independent; partitions shrinking below the sticky choice re-pick.
	if got := p.Partition("t", nil, 1); got != 0 {
		t.Fatalf("after shrink: %d", got)
	}
}

func TestRoundRobinPartitioner(t *testing.T) {
	var p RoundRobinPartitioner
	counts := make([]int, 5)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 250 {
				part := p.Partition("t", []byte("same key"), 5)
				mu.Lock()
				counts[part]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i, c := range counts {
		if c != 200 {
			t.Fatalf("partition %d got %d of 1000, want 200 each: %v", i, c, counts)
		}
	}
}

func TestPartitionerFunc(t *testing.T) {
	p := PartitionerFunc(func(topic string, key []byte, n int) int32 { return int32(len(key) % n) })
	if got := p.Partition("t", []byte("abc"), 2); got != 1 {
		t.Fatalf("got %d", got)
	}
}
