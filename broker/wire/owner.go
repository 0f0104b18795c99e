package wire

import (
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
)

// Message is a message whose records the codec sends without copying, and
// to which release functions can be attached.
type Message interface {
	*pb.FetchResponse | *pb.SubscribeResponse
}

// Attach makes release the owner of memory that m's records fields point
// into — a pooled read buffer, a mapping — and hands the duty to call it to
// the codec. release runs exactly once, at the earliest of:
//
//   - m was encoded by this package's Codec: when gRPC has copied the last
//     byte of m's records out of the memory (into its HTTP/2 write buffer)
//     and freed the buffers, or at once if no records field was sent by
//     reference (all at most 1 KiB: they were copied into the header);
//     also if encoding fails, since nothing will be sent;
//   - Discard(m) was called before m was encoded by this Codec;
//   - m became unreachable without either (the handler dropped it after an
//     error, or the RPC used another codec, whose Marshal copies): a
//     runtime cleanup runs it after a garbage collection.
//
// Several functions may be attached to one message; they run together, in
// the order attached. After m has been handed to gRPC (returned from a unary
// handler, or passed to a stream's Send) the caller must not touch the
// attached memory, and nothing may read m's records any more (a stats
// handler that re-marshals OutPayload messages would read released memory).
// release must not refer to m (m would never become unreachable). A nil m
// runs release at once.
func Attach[M Message](m M, release func()) {
	if m == nil {
		release()
		return
	}
	switch v := any(m).(type) {
	case *pb.FetchResponse:
		attach(v, release)
	case *pb.SubscribeResponse:
		attach(v, release)
	}
}

// AttachPooled attaches a buffer from storage.GetBuffer (or Region.Bytes):
// it goes back to the pool with storage.PutBuffer once sent.
func AttachPooled[M Message](m M, buf []byte) {
	Attach(m, func() { storage.PutBuffer(buf) })
}

// AttachMapped attaches a mapped region (storage.Region.Mmap): it is
// unmapped once sent.
func AttachMapped[M Message](m M, r *storage.MappedRegion) {
	Attach(m, func() { _ = r.Close() })
}

// Discard runs the release functions attached to m now, unless the codec
// has already taken them. It is for a message that will not be sent (an
// error path), and for streaming: after stream.Send(m) returns, Discard(m)
// releases the memory at once if the stream's codec was not this one (that
// codec's Marshal has copied the records by then) and does nothing if it was.
func Discard[M Message](m M) {
	if m == nil {
		return
	}
	var o *owner
	switch v := any(m).(type) {
	case *pb.FetchResponse:
		o = take(v)
	case *pb.SubscribeResponse:
		o = take(v)
	}
	if o != nil {
		o.release()
	}
}

// owner is the release duty for one message. Registered by Attach, it is
// taken out of the registry exactly once: by the codec (take, in Marshal),
// by Discard, or by the runtime cleanup when the message dies unsent.
//
// Once the codec holds it, it is also the mem.BufferPool of every records
// buffer it hands to gRPC: gRPC calls Put when it frees a buffer, and the
// last Put runs the releases. pending counts the buffers not yet freed, plus
// one held by Marshal itself while it builds the output.
type owner struct {
	key      any // the weak.Pointer the registry is keyed by
	releases []func()
	cleanup  runtime.Cleanup
	pending  atomic.Int32
	slots    [][]byte // backing for mem.NewBuffer's *[]byte, one per buffer
}

// Get is part of mem.BufferPool; gRPC never asks an owner for a buffer, but
// answer as the default pool would.
func (o *owner) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

// Put is called by gRPC once per records buffer, when it is freed.
func (o *owner) Put(*[]byte) { o.done() }

// done drops one pending reference; the last one releases.
func (o *owner) done() {
	if o.pending.Add(-1) == 0 {
		o.release()
	}
}

func (o *owner) release() {
	rs := o.releases
	o.releases = nil
	clear(o.slots)
	for _, f := range rs {
		f()
	}
}

// The registry of attached owners, keyed by a weak pointer to the message so
// that an entry does not keep its message alive (the runtime cleanup must be
// able to run). Weak pointers compare equal only if made from the same
// object, so a new message at a dead one's address never finds its entry.
var registry struct {
	mu sync.Mutex
	m  map[any]*owner
}

func attach[T any](p *T, release func()) {
	key := weak.Make(p)
	registry.mu.Lock()
	if registry.m == nil {
		registry.m = make(map[any]*owner)
	}
	if o := registry.m[key]; o != nil {
		o.releases = append(o.releases, release)
		registry.mu.Unlock()
		return
	}
	o := &owner{key: key, releases: []func(){release}}
	registry.m[key] = o
	// Armed under the lock so that take, which stops it, sees it set.
	o.cleanup = runtime.AddCleanup(p, dropped, o)
	registry.mu.Unlock()
}

// take removes and returns p's owner, nil if none; the caller then owns the
// release duty. It stops the runtime cleanup.
func take[T any](p *T) *owner {
	registry.mu.Lock()
	if len(registry.m) == 0 { // the common case when nothing is attached: no weak handle made
		registry.mu.Unlock()
		return nil
	}
	key := weak.Make(p)
	o := registry.m[key]
	if o != nil {
		delete(registry.m, key)
	}
	registry.mu.Unlock()
	if o != nil {
		o.cleanup.Stop()
	}
	return o
}

// dropped is the runtime cleanup of a message that died with its owner still
// registered: neither encoded by the Codec nor discarded.
func dropped(o *owner) {
	registry.mu.Lock()
	if registry.m[o.key] != o {
		o = nil // taken meanwhile
	} else {
		delete(registry.m, o.key)
	}
	registry.mu.Unlock()
	if o != nil {
		o.release()
	}
}

// attached reports the number of registered owners (tests).
func attached() int {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return len(registry.m)
}
