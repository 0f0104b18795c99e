package wire

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// Pool is the buffer pool of Strata's gRPC connections and of this codec: a
// mem.BufferPool with a tier per power of two from 256 B to 64 MiB that, unlike
// gRPC's default pool, does not zero a buffer it hands out.
//
// gRPC's default pool clears every buffer on Get. Every taker of a buffer in
// the paths it serves writes it whole before reading it — the HTTP/2 reader
// fills each DATA frame's buffer from the socket, the writer copies frames
// into its write buffer, this codec fills its header buffers and gathers
// received messages into one — so the clearing is pure cost: 7-9% of a
// broker's CPU at 256 KiB requests (pprof, runtime.memclrNoHeapPointers under
// sizedBufferPool.Get). A buffer from Pool may hold bytes of an earlier
// message until overwritten; code that takes one must write what it reads.
// Buffers above 64 MiB are allocated (and zeroed) by the runtime, and
// dropped on Put. (A consumer's fetch of four partitions at 1 MiB each is a
// message just over 4 MiB: the tiers go well past what one fetch answers.)
var Pool mem.BufferPool = newDirtyPool()

const (
	poolMinShift = 8  // 256 B
	poolMaxShift = 26 // 64 MiB
)

// Buffers of 1 to 8 MiB — a fetch answer gathered into one — are also kept
// on a short free list that a garbage collection does not empty (a sync.Pool
// is emptied within two): a consumer allocates fast, collects often, and
// would otherwise find the pool empty and get a new, zeroed buffer for most
// answers. At most keptLarge a tier: 30 MiB held at worst.
const (
	keptMinShift = 20 // 1 MiB
	keptMaxShift = 23 // 8 MiB
	keptLarge    = 2
)

type dirtyPool struct {
	tiers [poolMaxShift - poolMinShift + 1]sync.Pool
	kept  [keptMaxShift - keptMinShift + 1]chan *[]byte
}

func newDirtyPool() *dirtyPool {
	p := &dirtyPool{}
	for i := range p.kept {
		p.kept[i] = make(chan *[]byte, keptLarge)
	}
	return p
}

// keptList is the free list of tier t, nil if the tier has none.
func (p *dirtyPool) keptList(t int) chan *[]byte {
	if i := t + poolMinShift - keptMinShift; i >= 0 && i < len(p.kept) {
		return p.kept[i]
	}
	return nil
}

// Get returns a buffer of length size, from the smallest tier that holds it.
func (p *dirtyPool) Get(size int) *[]byte {
	t := tierFor(size)
	if t < 0 {
		b := make([]byte, size)
		return &b
	}
	if kept := p.keptList(t); kept != nil {
		select {
		case v := <-kept:
			*v = (*v)[:size]
			return v
		default:
		}
	}
	if v, ok := p.tiers[t].Get().(*[]byte); ok {
		*v = (*v)[:size]
		return v
	}
	b := make([]byte, size, 1<<(t+poolMinShift))
	return &b
}

// Put keeps buf in the largest tier its capacity covers, or drops it.
func (p *dirtyPool) Put(buf *[]byte) {
	c := cap(*buf)
	if c < 1<<poolMinShift || c > 1<<poolMaxShift {
		return
	}
	t := bits.Len(uint(c)) - 1 - poolMinShift
	*buf = (*buf)[:0]
	if kept := p.keptList(t); kept != nil {
		select {
		case kept <- buf:
			return
		default:
		}
	}
	p.tiers[t].Put(buf)
}

// tierFor is the index of the smallest tier with room for size, or -1 when
// size is above the largest.
func tierFor(size int) int {
	if size > 1<<poolMaxShift {
		return -1
	}
	if size <= 1<<poolMinShift {
		return 0
	}
	return bits.Len(uint(size-1)) - poolMinShift
}
