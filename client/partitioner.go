package client

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// Partitioner picks the partition of a record sent with Partition -1.
//
// Contract: Partition is called from many goroutines at once and must be
// safe for that; it returns a value in [0, numPartitions) (anything else
// fails the record with UNKNOWN_TOPIC_OR_PARTITION) and must not block:
// the producer calls it on every Send.
type Partitioner interface {
	Partition(topic string, key []byte, numPartitions int) int32
}

// NewBatchObserver is implemented by partitioners that change their choice
// when a batch fills (KIP-480's sticky partitioner). When the partition a
// record was given has no open batch with room for it, the producer calls
// OnNewBatch with that partition and asks Partition again before appending,
// so a sticky partitioner moves on exactly when a batch is complete.
type NewBatchObserver interface {
	OnNewBatch(topic string, prev int32, numPartitions int)
}

// DefaultPartitioner is Kafka's default: a keyed record goes to
// toPositive(murmur2(key)) % numPartitions — the partition Kafka's own
// clients choose for that key — and a record without a key to a sticky
// partition (KIP-480) that changes when its batch is complete.
func DefaultPartitioner() Partitioner { return &defaultPartitioner{} }

type defaultPartitioner struct{ sticky StickyPartitioner }

func (p *defaultPartitioner) Partition(topic string, key []byte, n int) int32 {
	if key != nil {
		return KeyPartition(key, n)
	}
	return p.sticky.Partition(topic, nil, n)
}

func (p *defaultPartitioner) OnNewBatch(topic string, prev int32, n int) {
	p.sticky.OnNewBatch(topic, prev, n)
}

// HashPartitioner places every record by murmur2 of its key, as Kafka does;
// a record without a key goes to a random partition.
type HashPartitioner struct{}

func (HashPartitioner) Partition(_ string, key []byte, n int) int32 {
	if key == nil {
		return int32(rand.IntN(n))
	}
	return KeyPartition(key, n)
}

// StickyPartitioner (KIP-480) sends every record, keyed or not, to one
// partition per topic until a batch of it is complete, then picks another
// at random (never the same one again when there are two or more). Batches
// fill faster than with round robin: fewer, larger requests at low rates.
// The zero value is ready to use.
type StickyPartitioner struct {
	mu     sync.Mutex
	topics map[string]int32
}

func (p *StickyPartitioner) Partition(topic string, _ []byte, n int) int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.topics[topic]; ok && int(cur) < n {
		return cur
	}
	return p.nextLocked(topic, -1, n)
}

func (p *StickyPartitioner) OnNewBatch(topic string, prev int32, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.topics[topic]; ok && cur != prev {
		return // another goroutine moved on already
	}
	p.nextLocked(topic, prev, n)
}

func (p *StickyPartitioner) nextLocked(topic string, prev int32, n int) int32 {
	next := int32(rand.IntN(n))
	if n > 1 && next == prev {
		next = (next + 1 + int32(rand.IntN(n-1))) % int32(n)
	}
	if p.topics == nil {
		p.topics = map[string]int32{}
	}
	p.topics[topic] = next
	return next
}

// RoundRobinPartitioner sends successive records to successive partitions,
// keys ignored (Kafka's RoundRobinPartitioner). The zero value is ready.
type RoundRobinPartitioner struct {
	next atomic.Uint32
}

func (p *RoundRobinPartitioner) Partition(_ string, _ []byte, n int) int32 {
	return int32((p.next.Add(1) - 1) % uint32(n))
}

// PartitionerFunc adapts a function to a Partitioner.
type PartitionerFunc func(topic string, key []byte, numPartitions int) int32

func (f PartitionerFunc) Partition(topic string, key []byte, n int) int32 { return f(topic, key, n) }
