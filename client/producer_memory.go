package client

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// memory is the producer's BufferMemory: bytes of records accepted by Send
// and not yet delivered. acquire blocks while it is used up.
type memory struct {
	mu      sync.Mutex
	used    int
	max     int
	waiting int
	freed   chan struct{} // closed and replaced on every release
}

func newMemory(max int) *memory { return &memory{max: max, freed: make(chan struct{})} }

// acquire takes n bytes, waiting up to maxBlock for them. waitingHook is
// called when it starts to wait (the sender then sends what it holds
// without lingering).
func (m *memory) acquire(ctx context.Context, n int, maxBlock time.Duration, stop <-chan struct{}, waitingHook func()) error {
	m.mu.Lock()
	if m.used+n <= m.max {
		m.used += n
		m.mu.Unlock()
		return nil
	}
	m.waiting++
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.waiting--
		m.mu.Unlock()
	}()
	waitingHook()
	timer := time.NewTimer(maxBlock)
	defer timer.Stop()
	for {
		m.mu.Lock()
		if m.used+n <= m.max {
			m.used += n
			m.mu.Unlock()
			return nil
		}
		freed := m.freed
		used := m.used
		m.mu.Unlock()
		select {
		case <-freed:
		case <-timer.C:
			return fmt.Errorf("%w: waited MaxBlock %v for %d bytes with %d of BufferMemory %d held by undelivered records; the cluster is not taking records as fast as they come (a broker down?) — raise BufferMemory or MaxBlock, or slow down",
				ErrBufferFull, maxBlock, n, used, m.max)
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return ErrProducerClosed
		}
	}
}

func (m *memory) release(n int) {
	if n == 0 {
		return
	}
	m.mu.Lock()
	m.used -= n
	close(m.freed)
	m.freed = make(chan struct{})
	m.mu.Unlock()
}

// exhausted reports whether a Send waits for memory.
func (m *memory) exhausted() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiting > 0
}

func (m *memory) inUse() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}
