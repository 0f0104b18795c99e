package client

import (
	"sync"
	"testing"

	"github.com/stratalog/strata/storage/record"
)

type countingPool struct {
	mu  sync.Mutex
	put []*record.Builder
}

func (p *countingPool) Put(v *record.Builder) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.put = append(p.put, v)
}

func (p *countingPool) n() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.put)
}

// The builder goes back to the pool once, after the accumulator and every
// request that carried the batch have dropped it, in whatever order.
func TestBuilderHold(t *testing.T) {
	for _, accFirst := range []bool{true, false} {
		pool := &countingPool{}
		var h builderHold
		h.builder = record.NewBuilder(record.BatchOptions{})
		if h.pinned() {
			t.Fatal("pinned before any request")
		}
		h.pin() // request 1
		h.pin() // request 2 (a resend while request 1's bytes are still held)
		if !h.pinned() {
			t.Fatal("not pinned with requests holding it")
		}
		if accFirst {
			h.drop(pool) // completed
		}
		h.drop(pool)
		if pool.n() != 0 {
			t.Fatal("builder reused while a request may read it")
		}
		h.drop(pool)
		if !accFirst {
			if pool.n() != 0 {
				t.Fatal("builder reused before the accumulator was done with it")
			}
			h.drop(pool)
		}
		if pool.n() != 1 || pool.put[0] != h.builder {
			t.Fatalf("builder put %d times, want once", pool.n())
		}
	}
}

// Drops from gRPC's goroutines race with the accumulator's: still once.
func TestBuilderHoldConcurrent(t *testing.T) {
	for range 200 {
		pool := &countingPool{}
		var h builderHold
		h.builder = record.NewBuilder(record.BatchOptions{})
		const requests = 4
		for range requests {
			h.pin()
		}
		var wg sync.WaitGroup
		for range requests + 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.drop(pool)
			}()
		}
		wg.Wait()
		if pool.n() != 1 {
			t.Fatalf("builder put %d times, want once", pool.n())
		}
	}
}

// A resend after a sequence reset restamps the producer fields; while an
// earlier request may still read the batch (pinned), it stamps a copy and
// leaves the bytes that request sends as they were.
func TestSealRestampsACopyWhilePinned(t *testing.T) {
	for _, pinned := range []bool{false, true} {
		bl := record.NewBuilder(record.BatchOptions{})
		for i := range 10 {
			if err := bl.Append(int64(i), nil, make([]byte, 200), nil); err != nil {
				t.Fatal(err)
			}
		}
		b := &batch{builder: bl}
		b.hold.builder = bl
		first := drained{batches: []*batch{b}, producerID: 7, epoch: 1, seqs: []int32{100}}
		if err := first.seal(b, 0); err != nil {
			t.Fatal(err)
		}
		sent := b.built
		if sent.ProducerEpoch() != 1 || sent.BaseSequence() != 100 {
			t.Fatalf("first send stamped epoch %d seq %d", sent.ProducerEpoch(), sent.BaseSequence())
		}
		before := string(sent)
		if pinned {
			b.hold.pin() // the first request, not yet released by gRPC
		}
		again := drained{batches: []*batch{b}, producerID: 7, epoch: 2, seqs: []int32{0}}
		if err := again.seal(b, 0); err != nil {
			t.Fatal(err)
		}
		if b.built.ProducerEpoch() != 2 || b.built.BaseSequence() != 0 || b.built.Validate() != nil {
			t.Fatalf("resend stamped epoch %d seq %d (valid: %v)", b.built.ProducerEpoch(), b.built.BaseSequence(), b.built.Validate())
		}
		if pinned && string(sent) != before {
			t.Fatal("restamped the bytes a request in flight may still be sending")
		}
		if !pinned && &b.built[0] != &sent[0] {
			t.Fatal("copied a batch no request holds")
		}
	}
}
