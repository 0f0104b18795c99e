package client

import (
	"sync/atomic"

	"github.com/stratalog/strata/storage/record"
)

// builderHold decides when a batch's builder, whose buffer holds the built
// batch, may go back to the pool. Produce requests send the built bytes by
// reference (wire.ProduceRequest): gRPC reads them after Invoke has started
// and may still hold them after it returned (a cancelled or timed-out call
// whose frames are queued), so the builder is reused only once the
// accumulator is done with the batch (drop, from recycle) and every request
// that carried it has been released by gRPC (pin before sending, drop from
// the request's release).
//
// refs counts the references beyond the accumulator's own, so the zero
// value stands for the accumulator alone and the drop that reaches -1 is the
// last. pinned tells whether a request may still read the bytes: the batch
// must then not be written in place (a resend with new producer fields
// writes a copy).
type builderHold struct {
	refs    atomic.Int32
	builder *record.Builder // set when the batch is made, never changed: read by the last drop, on any goroutine
}

// pin adds a request's reference. The caller holds a reference (the
// accumulator's, the batch being in flight), so the count is not at its end.
func (h *builderHold) pin() { h.refs.Add(1) }

// pinned reports whether a request may still read the batch's bytes. Only
// meaningful while the accumulator's reference is held and no new pin can
// start concurrently (the batch's own produce call).
func (h *builderHold) pinned() bool { return h.refs.Load() > 0 }

// builderPool is where a free builder goes: the accumulator's builderCache.
type builderPool interface{ Put(*record.Builder) }

var _ builderPool = (*builderCache)(nil)

// drop removes a reference; the last one puts the builder back in pool.
func (h *builderHold) drop(pool builderPool) {
	if h.refs.Add(-1) == -1 && h.builder != nil {
		pool.Put(h.builder)
	}
}
