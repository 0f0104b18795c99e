package delayed

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Operation is a request that waits in a Purgatory until a condition holds
// (Kafka's DelayedOperation): an acks=all produce waiting for the ISR to reach
// its offset, a fetch waiting for min_bytes.
//
// The purgatory calls exactly one of OnComplete and OnExpiration, exactly once,
// and after it no more TryComplete. An Operation value is passed to
// TryCompleteElseWatch once; a retried request is a new Operation.
type Operation interface {
	// TryComplete reports whether the operation can be answered now: its
	// condition holds, or can no longer hold (the partition's leadership
	// moved; OnComplete then answers with the error). The purgatory then
	// completes it (OnComplete), unless it completed otherwise first. Calls
	// for one operation never overlap and none starts after it completed, so
	// TryComplete may read the operation's state without a lock of its own.
	// It may take the caller's locks (a partition's) but must not call into
	// the purgatory or block for long.
	TryComplete() bool
	// OnComplete answers the request once TryComplete returned true. It runs
	// once, with no purgatory lock held, on the goroutine whose TryComplete
	// call succeeded (the caller of TryCompleteElseWatch or CheckAndComplete).
	OnComplete()
	// OnExpiration answers the request when its timeout passed or the
	// purgatory shut down before its condition held. It runs once, with no
	// lock held, on the timer goroutine (timeouts) or the caller of Shutdown
	// (or, for an operation submitted while or after the purgatory shuts down,
	// the caller of TryCompleteElseWatch).
	// On the timer goroutine it delays other expirations while it runs: keep it
	// short and never block on the purgatory (Shutdown, Poll) from it.
	OnExpiration()
}

// Config configures a Purgatory. The zero value is usable.
type Config struct {
	// Tick and WheelSize shape the purgatory's timer (NewTimer); zero means
	// DefaultTick and DefaultWheelSize.
	Tick      time.Duration
	WheelSize int
	// Clock is the timer's clock; nil means RealClock.
	Clock Clock
	// PurgeInterval is how many completed operations may linger in watcher
	// lists before they are all purged (Kafka's purgeInterval); 0 means 1000.
	PurgeInterval int
	// Shards is the number of lock shards for the keys; 0 means 64.
	Shards int
}

// Purgatory holds operations waiting on keys (partitions) until CheckAndComplete
// finds their condition true or their timeout passes. It is Kafka's
// DelayedOperationPurgatory: each purgatory has its own Timer.
type Purgatory[K comparable] struct {
	timer         *Timer
	seed          maphash.Seed
	shards        []shard[K]
	purgeInterval int64
	purgeFn       func()

	watched  atomic.Int64 // entries in watcher lists, completed ones included
	live     atomic.Int64 // entries in watcher lists of operations still waiting
	delayed  atomic.Int64 // operations waiting
	purging  atomic.Bool
	shutdown atomic.Bool
}

type shard[K comparable] struct {
	mu struct {
		sync.Mutex
		m    map[K]*watchers[K]
		free []*watchers[K] // emptied lists kept for reuse, so a key that empties and refills allocates nothing
	}
	_ [16]byte // keep neighbouring shards' locks off one cache line
}

// maxFreeLists bounds a shard's free watcher lists.
const maxFreeLists = 16

type watchers[K comparable] struct {
	ops []*entry[K]
}

// Entry states. An entry moves new -> watching -> done or new -> done; the
// move to done is the single CompareAndSwap that makes completion exactly once.
const (
	stateNew int32 = iota
	stateWatching
	stateDone
)

// entry is an operation in the purgatory, with its timeout task embedded.
type entry[K comparable] struct {
	task  Task
	op    Operation
	p     *Purgatory[K]
	mu    sync.Mutex // serializes TryComplete, and completion against it
	state atomic.Int32
	nkeys int32
}

// NewPurgatory starts a purgatory and its timer goroutine. Stop it with Shutdown.
func NewPurgatory[K comparable](cfg Config) *Purgatory[K] {
	if cfg.PurgeInterval <= 0 {
		cfg.PurgeInterval = 1000
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 64
	}
	p := &Purgatory[K]{
		timer:         NewTimer(cfg.Tick, cfg.WheelSize, cfg.Clock),
		seed:          maphash.MakeSeed(),
		shards:        make([]shard[K], cfg.Shards),
		purgeInterval: int64(cfg.PurgeInterval),
	}
	for i := range p.shards {
		p.shards[i].mu.m = make(map[K]*watchers[K])
	}
	p.purgeFn = func() { p.PurgeCompleted() }
	return p
}

// TryCompleteElseWatch tries op once and, if its condition does not hold,
// watches it under every key and starts its timeout: it then completes on a
// CheckAndComplete of one of the keys whose TryComplete succeeds, or expires
// after timeout. With no keys only the timeout (or Shutdown) ends it. It
// returns true if op completed during this call, on this goroutine.
// After Shutdown an op that cannot complete at once expires at once.
func (p *Purgatory[K]) TryCompleteElseWatch(op Operation, keys []K, timeout time.Duration) bool {
	if op.TryComplete() {
		op.OnComplete()
		return true
	}
	if p.shutdown.Load() {
		op.OnExpiration()
		return false
	}
	e := &entry[K]{op: op, p: p, nkeys: int32(len(keys))}
	e.task.r = e
	for _, k := range keys {
		p.watch(k, e)
	}
	// Try again: the condition may have come true after the first try but
	// before the watch, and that CheckAndComplete did not see this entry.
	if p.tryComplete(e) {
		return true
	}
	// The timeout goes in before the entry turns watching, so whoever
	// completes a watching entry may cancel its task (Add happened before).
	added := p.timer.Add(&e.task, timeout)
	// Count before the entry turns watching, so the decrement of whoever
	// completes it never comes first.
	p.live.Add(int64(e.nkeys))
	p.delayed.Add(1)
	if !e.state.CompareAndSwap(stateNew, stateWatching) {
		// Completed or expired meanwhile by another goroutine.
		p.live.Add(-int64(e.nkeys))
		p.delayed.Add(-1)
		e.task.Cancel()
		p.maybePurge()
		return false
	}
	if !added {
		// The timer is stopped: Shutdown is under way and will not see this
		// entry in its timer; expire it here.
		e.run()
	}
	return false
}

// CheckAndComplete tries the operations watched under key, completes those
// whose condition holds (each one's OnComplete runs here, on the caller's
// goroutine) and drops completed operations from the key's list. Call it when
// the key's state moves (a partition's HW or LEO). It returns the number of
// operations it completed.
func (p *Purgatory[K]) CheckAndComplete(key K) int {
	sh := p.shard(key)
	var stack [32]*entry[K]
	sh.mu.Lock()
	w := sh.mu.m[key]
	if w == nil {
		sh.mu.Unlock()
		return 0
	}
	ops := append(stack[:0], w.ops...)
	sh.mu.Unlock()

	completed, stale := 0, false
	for i, e := range ops {
		ops[i] = nil
		if e.state.Load() == stateDone {
			stale = true
			continue
		}
		if p.tryComplete(e) {
			completed++
		}
	}
	if completed > 0 || stale {
		sh.mu.Lock()
		if w := sh.mu.m[key]; w != nil {
			p.compactLocked(sh, key, w)
		}
		sh.mu.Unlock()
	}
	return completed
}

// Watched returns the number of entries in the watcher lists, counting an
// operation once per key and completed operations not purged yet.
func (p *Purgatory[K]) Watched() int { return int(p.watched.Load()) }

// Delayed returns the number of operations waiting (watched, not completed).
func (p *Purgatory[K]) Delayed() int { return int(p.delayed.Load()) }

// Poll runs the timeouts due at the clock's current time and returns once
// they have run (see Timer.Poll); for tests on a FakeClock.
func (p *Purgatory[K]) Poll() int { return p.timer.Poll() }

// PurgeCompleted drops completed operations from every watcher list and
// returns how many entries it dropped. The purgatory calls it by itself, on
// the timer goroutine, once more than PurgeInterval completed entries linger.
func (p *Purgatory[K]) PurgeCompleted() int {
	removed := 0
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		for k, w := range sh.mu.m {
			removed += p.compactLocked(sh, k, w)
		}
		sh.mu.Unlock()
	}
	p.purging.Store(false)
	return removed
}

// Shutdown expires every waiting operation (OnExpiration, on the caller's
// goroutine) and stops the timer. Operations passed to TryCompleteElseWatch
// later expire at once unless they complete on their first try. It must not be
// called from an Operation's callbacks.
func (p *Purgatory[K]) Shutdown() {
	if !p.shutdown.CompareAndSwap(false, true) {
		return
	}
	// Every waiting operation has a pending timeout task (added before it
	// turned watching); one that was not yet added sees Add fail and expires
	// itself in TryCompleteElseWatch.
	for _, task := range p.timer.stop() {
		task.fire()
	}
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		for k, w := range sh.mu.m {
			p.watched.Add(-int64(len(w.ops)))
			delete(sh.mu.m, k)
		}
		sh.mu.Unlock()
	}
}

func (p *Purgatory[K]) shard(key K) *shard[K] {
	if len(p.shards) == 1 {
		return &p.shards[0]
	}
	return &p.shards[maphash.Comparable(p.seed, key)%uint64(len(p.shards))]
}

func (p *Purgatory[K]) watch(key K, e *entry[K]) {
	sh := p.shard(key)
	sh.mu.Lock()
	w := sh.mu.m[key]
	if w == nil {
		if n := len(sh.mu.free); n > 0 {
			w = sh.mu.free[n-1]
			sh.mu.free[n-1] = nil
			sh.mu.free = sh.mu.free[:n-1]
		} else {
			w = &watchers[K]{}
		}
		sh.mu.m[key] = w
	}
	w.ops = append(w.ops, e)
	sh.mu.Unlock()
	p.watched.Add(1)
}

// compactLocked drops the completed entries of key's list, and the list when
// it empties. sh.mu must be held.
func (p *Purgatory[K]) compactLocked(sh *shard[K], key K, w *watchers[K]) int {
	j := 0
	for _, e := range w.ops {
		if e.state.Load() != stateDone {
			w.ops[j] = e
			j++
		}
	}
	removed := len(w.ops) - j
	clear(w.ops[j:])
	w.ops = w.ops[:j]
	switch {
	case j == 0:
		delete(sh.mu.m, key)
		if len(sh.mu.free) < maxFreeLists && cap(w.ops) <= 64 {
			sh.mu.free = append(sh.mu.free, w)
		}
	case cap(w.ops) > 64 && j < cap(w.ops)/4:
		w.ops = append([]*entry[K](nil), w.ops...) // give back a burst's backing array
	}
	if removed > 0 {
		p.watched.Add(-int64(removed))
	}
	return removed
}

// tryComplete runs e's TryComplete and, if the condition holds and e is
// still pending, completes it and runs OnComplete. It reports whether it
// completed e.
func (p *Purgatory[K]) tryComplete(e *entry[K]) bool {
	e.mu.Lock()
	if e.state.Load() == stateDone || !e.op.TryComplete() {
		e.mu.Unlock()
		return false
	}
	prev, won := e.finish()
	e.mu.Unlock()
	if !won {
		return false
	}
	if prev == stateWatching {
		e.task.Cancel()
	}
	e.op.OnComplete()
	p.maybePurge()
	return true
}

// finish moves e to done. won is false if it was done already; prev is the
// state it left.
func (e *entry[K]) finish() (prev int32, won bool) {
	for {
		s := e.state.Load()
		if s == stateDone {
			return s, false
		}
		if e.state.CompareAndSwap(s, stateDone) {
			if s == stateWatching {
				e.p.live.Add(-int64(e.nkeys))
				e.p.delayed.Add(-1)
			}
			return s, true
		}
	}
}

// run is the timeout: on the timer goroutine when it passes, or on the caller
// of Shutdown.
func (e *entry[K]) run() {
	e.mu.Lock() // wait out a TryComplete in progress
	_, won := e.finish()
	e.mu.Unlock()
	if won {
		e.op.OnExpiration()
		e.p.maybePurge()
	}
}

// maybePurge schedules a purge on the timer goroutine (Kafka's expiration
// reaper does the same) once more than purgeInterval completed entries linger
// in the watcher lists.
func (p *Purgatory[K]) maybePurge() {
	if p.watched.Load()-p.live.Load() <= p.purgeInterval || p.shutdown.Load() {
		return
	}
	if p.purging.CompareAndSwap(false, true) {
		if p.timer.Schedule(0, p.purgeFn) == nil {
			p.purging.Store(false)
		}
	}
}
