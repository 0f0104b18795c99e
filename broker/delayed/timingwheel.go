package delayed

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultTick is the granularity of a Timer made by NewPurgatory: a task
	// runs at most about one tick after its deadline, never before it.
	DefaultTick = time.Millisecond
	// DefaultWheelSize is the number of buckets per wheel level. See the
	// package documentation for the choice.
	DefaultWheelSize = 512

	// maxDelay caps a task's delay so tick arithmetic cannot overflow int64.
	maxDelay = 100 * 365 * 24 * time.Hour
)

// runner is how a Task embedded in a larger struct (the purgatory's entry)
// runs without a closure per task.
type runner interface{ run() }

// Task is one timeout in a Timer. It sits in exactly one bucket of one wheel
// level while pending, linked into the bucket's list through prev and next
// (an intrusive list: inserting and cancelling allocate nothing and take O(1)).
//
// A Task is scheduled once. Its callback runs at most once, and never if
// Cancel returned true.
type Task struct {
	prev, next *Task
	b          *bucket // the bucket holding the task while pending; nil otherwise. Guarded by timer.mu.
	timer      atomic.Pointer[Timer]
	at         int64 // deadline, in ticks since the timer's epoch, rounded up
	fn         func()
	r          runner
}

// NewTask returns a task that runs fn when it expires. Schedule it with
// Timer.Add.
func NewTask(fn func()) *Task { return &Task{fn: fn} }

// Cancel removes the task from its timer. It reports whether it did: true
// means the callback will never run; false means the task was never added,
// was cancelled already, or has expired (its callback has run, is running or
// is about to run on the timer goroutine). Cancel on a nil Task returns false.
// O(1).
func (task *Task) Cancel() bool {
	if task == nil {
		return false
	}
	t := task.timer.Load()
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if task.b == nil {
		return false
	}
	task.b.remove(task)
	task.b = nil
	t.mu.count--
	return true
}

func (task *Task) fire() {
	if task.fn != nil {
		task.fn()
	} else if task.r != nil {
		task.r.run()
	}
}

// bucket is one slot of a wheel level: the tasks whose deadlines fall in one
// span of ticks, as a doubly-linked list. A non-empty bucket is in the timer's
// queue, keyed by at, the first tick of its span.
type bucket struct {
	head, tail *Task
	at         int64 // first tick of the span; valid while queued
	idx        int   // index in the timer's queue, -1 when not queued
}

func (b *bucket) push(x *Task) {
	x.b = b
	x.next = nil
	x.prev = b.tail
	if b.tail != nil {
		b.tail.next = x
	} else {
		b.head = x
	}
	b.tail = x
}

func (b *bucket) remove(x *Task) {
	if x.prev != nil {
		x.prev.next = x.next
	} else {
		b.head = x.next
	}
	if x.next != nil {
		x.next.prev = x.prev
	} else {
		b.tail = x.prev
	}
	x.prev, x.next = nil, nil
}

// level is one wheel: size buckets of span ticks each. Level i has span
// size^i; a task goes to the lowest level whose interval (span*size) covers
// its distance from the current tick.
type level struct {
	span     int64
	interval int64 // span*size, or MaxInt64 once that would overflow
	buckets  []bucket
}

// Timer is a hierarchical timing wheel (Varghese & Lauck; Kafka's
// SystemTimer) with one goroutine that advances it. See the package
// documentation for the contract.
type Timer struct {
	clock Clock
	tick  int64 // nanoseconds
	size  int64
	epoch time.Time

	wake     chan struct{} // capacity 1: a bucket earlier than the armed deadline was queued
	pollc    chan chan int
	stopc    chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu struct {
		sync.Mutex
		cur     int64 // the current tick: every task with at <= cur has expired
		levels  []*level
		due     bucket    // tasks added already due; queued with at = cur
		queue   []*bucket // min-heap of non-empty buckets by at (Kafka's DelayQueue)
		armed   int64     // the tick the run goroutine sleeps until
		count   int       // pending tasks
		stopped bool
		chains  []*Task // scratch for advanceLocked
		moves   int64   // tasks moved down a level (cascades), for the benchmarks
	}

	expired []*Task // owned by the run goroutine
}

// NewTimer starts a timer with the given tick (granularity) and wheel size
// (buckets per level) on clock; nil clock means RealClock. tick <= 0 means
// DefaultTick and wheelSize < 2 means DefaultWheelSize. Stop it with Stop.
func NewTimer(tick time.Duration, wheelSize int, clock Clock) *Timer {
	if tick <= 0 {
		tick = DefaultTick
	}
	if wheelSize < 2 {
		wheelSize = DefaultWheelSize
	}
	if clock == nil {
		clock = RealClock{}
	}
	t := &Timer{
		clock: clock,
		tick:  int64(tick),
		size:  int64(wheelSize),
		epoch: clock.Now(),
		wake:  make(chan struct{}, 1),
		pollc: make(chan chan int),
		stopc: make(chan struct{}),
		done:  make(chan struct{}),
	}
	t.mu.due.idx = -1
	t.mu.armed = math.MaxInt64
	t.levelLocked(0)
	go t.run()
	return t
}

// Schedule runs fn on the timer goroutine once delay has passed and returns
// its task, or nil if the timer is stopped. delay <= 0 runs fn as soon as the
// timer goroutine gets to it.
func (t *Timer) Schedule(delay time.Duration, fn func()) *Task {
	task := &Task{fn: fn}
	if !t.Add(task, delay) {
		return nil
	}
	return task
}

// Add schedules task to expire once delay has passed. It returns false, and
// schedules nothing, if the timer is stopped or task was added before. O(1):
// one monotonic clock read, one lock, a list append and, when the bucket was
// empty, a push on a heap of at most levels*wheelSize buckets.
func (t *Timer) Add(task *Task, delay time.Duration) bool {
	delay = min(max(delay, 0), maxDelay)
	elapsed := max(t.clock.Since(t.epoch), 0)
	at := (int64(elapsed) + int64(delay) + t.tick - 1) / t.tick

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.stopped || !task.timer.CompareAndSwap(nil, t) {
		return false
	}
	task.at = at
	t.mu.count++
	if !t.addLocked(task) {
		t.addDueLocked(task)
	}
	return true
}

// Len returns the number of pending tasks.
func (t *Timer) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.count
}

// Poll makes the timer goroutine advance the wheel to the clock's current
// time and run every task due by then, and returns once they have run, with
// how many ran in that pass. The goroutine does this by itself when a bucket
// comes due; Poll is for tests on a FakeClock (Advance, then Poll). It must
// not be called from a task's callback. After Stop it returns 0.
func (t *Timer) Poll() int {
	r := make(chan int, 1)
	select {
	case t.pollc <- r:
	case <-t.done:
		return 0
	}
	select {
	case n := <-r:
		return n
	case <-t.done:
		return 0
	}
}

// Stop stops the timer goroutine, waiting for the callbacks it is running,
// and drops the pending tasks: their callbacks never run. It returns how many
// it dropped. Later Adds return false. Stop must not be called from a task's
// callback.
func (t *Timer) Stop() int { return len(t.stop()) }

// stop is Stop returning the dropped tasks, so the purgatory can expire them.
// Only the first call gets them.
func (t *Timer) stop() []*Task {
	first := false
	t.stopOnce.Do(func() {
		first = true
		close(t.stopc)
	})
	<-t.done
	if !first {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.stopped = true
	var tasks []*Task
	drain := func(b *bucket) {
		for x := b.head; x != nil; {
			next := x.next
			x.prev, x.next, x.b = nil, nil, nil
			tasks = append(tasks, x)
			x = next
		}
		b.head, b.tail, b.idx = nil, nil, -1
	}
	drain(&t.mu.due)
	for _, lv := range t.mu.levels {
		for i := range lv.buckets {
			drain(&lv.buckets[i])
		}
	}
	t.mu.queue = nil
	t.mu.count = 0
	return tasks
}

func (t *Timer) nowTicks() int64 {
	return int64(max(t.clock.Since(t.epoch), 0)) / t.tick
}

// run is the timer goroutine: it sleeps until the earliest queued bucket is
// due (or a Poll, an earlier bucket, or Stop wakes it), advances the wheel and
// runs the expired callbacks with no lock held.
func (t *Timer) run() {
	defer close(t.done)
	var reply chan int
	for {
		now := t.nowTicks()
		t.mu.Lock()
		t.advanceLocked(now)
		next := int64(math.MaxInt64)
		if len(t.mu.queue) > 0 {
			next = t.mu.queue[0].at
		}
		t.mu.armed = next
		t.mu.Unlock()

		n := len(t.expired)
		for i, task := range t.expired {
			t.expired[i] = nil
			task.fire()
		}
		t.expired = t.expired[:0]
		if cap(t.expired) > 1<<16 {
			t.expired = nil // do not pin a burst's worth of memory
		}
		if reply != nil {
			reply <- n
			reply = nil
		}

		var ct ClockTimer
		var fired <-chan time.Time
		if next != math.MaxInt64 {
			ct = t.clock.NewTimer(time.Duration(next*t.tick) - t.clock.Since(t.epoch))
			fired = ct.C()
		}
		select {
		case <-fired:
		case <-t.wake:
		case reply = <-t.pollc:
		case <-t.stopc:
			if ct != nil {
				ct.Stop()
			}
			return
		}
		if ct != nil {
			ct.Stop()
		}
	}
}

// advanceLocked moves the current tick to now: it takes every queued bucket
// that is due off the queue, empties it, and re-adds its tasks, which either
// drop to a lower level or, when due, go to t.expired in deadline order.
func (t *Timer) advanceLocked(now int64) {
	now = max(now, t.mu.cur)
	chains := t.mu.chains[:0]
	for len(t.mu.queue) > 0 && t.mu.queue[0].at <= now {
		b := t.heapPop()
		if b.head != nil {
			chains = append(chains, b.head)
		}
		b.head, b.tail = nil, nil
	}
	t.mu.cur = now
	for i, head := range chains {
		chains[i] = nil
		for x := head; x != nil; {
			next := x.next
			x.prev, x.next, x.b = nil, nil, nil
			if t.addLocked(x) {
				t.mu.moves++
			} else {
				t.mu.count--
				t.expired = append(t.expired, x)
			}
			x = next
		}
	}
	t.mu.chains = chains[:0]
	if !slices.IsSortedFunc(t.expired, byDeadline) {
		slices.SortStableFunc(t.expired, byDeadline)
	}
}

func byDeadline(a, b *Task) int {
	switch {
	case a.at < b.at:
		return -1
	case a.at > b.at:
		return 1
	}
	return 0
}

// addLocked puts task in the bucket of the lowest level that covers its
// deadline, or returns false if it is due.
func (t *Timer) addLocked(task *Task) bool {
	cur := t.mu.cur
	at := task.at
	if at <= cur {
		return false
	}
	for i := 0; ; i++ {
		lv := t.levelLocked(i)
		if at-cur >= lv.interval {
			continue // overflow: the next level up, created on first use
		}
		// at-cur is in [span, interval) for i > 0 (the level below did not
		// cover it) and in [1, size) for i == 0, so vid is one of the size
		// spans after the one holding cur: distinct values mod size. A bucket
		// still queued here starts after cur, so it holds one of those same
		// spans, and a slot never mixes two spans; buckets that came due were
		// emptied (advanceLocked) before their tasks were re-added.
		vid := at / lv.span
		b := &lv.buckets[vid%t.size]
		b.push(task)
		t.queueLocked(b, vid*lv.span)
		return true
	}
}

// addDueLocked queues a task that is already due to run at the next advance.
func (t *Timer) addDueLocked(task *Task) {
	t.mu.due.push(task)
	t.queueLocked(&t.mu.due, t.mu.cur)
}

// queueLocked makes sure b is queued no later than at and wakes the run
// goroutine if that is earlier than what it sleeps until.
func (t *Timer) queueLocked(b *bucket, at int64) {
	switch {
	case b.idx < 0:
		b.at = at
		t.heapPush(b)
	case at < b.at: // defensive: cannot happen for wheel buckets (see addLocked)
		b.at = at
		t.heapUp(b.idx)
	default:
		return
	}
	if at < t.mu.armed {
		t.mu.armed = at
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// levelLocked returns level i, creating it (and those below) on first use:
// overflow wheels cost nothing until a deadline needs them.
func (t *Timer) levelLocked(i int) *level {
	for len(t.mu.levels) <= i {
		span := int64(1)
		if n := len(t.mu.levels); n > 0 {
			span = t.mu.levels[n-1].interval
		}
		interval := int64(math.MaxInt64)
		if span <= math.MaxInt64/t.size {
			interval = span * t.size
		}
		lv := &level{span: span, interval: interval, buckets: make([]bucket, t.size)}
		for j := range lv.buckets {
			lv.buckets[j].idx = -1
		}
		t.mu.levels = append(t.mu.levels, lv)
	}
	return t.mu.levels[i]
}

func (t *Timer) heapPush(b *bucket) {
	b.idx = len(t.mu.queue)
	t.mu.queue = append(t.mu.queue, b)
	t.heapUp(b.idx)
}

func (t *Timer) heapPop() *bucket {
	q := t.mu.queue
	b := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[0].idx = 0
	q[last] = nil
	t.mu.queue = q[:last]
	if last > 0 {
		t.heapDown(0)
	}
	b.idx = -1
	return b
}

func (t *Timer) heapUp(i int) {
	q := t.mu.queue
	for i > 0 {
		p := (i - 1) / 2
		if q[p].at <= q[i].at {
			break
		}
		q[p], q[i] = q[i], q[p]
		q[p].idx, q[i].idx = p, i
		i = p
	}
}

func (t *Timer) heapDown(i int) {
	q := t.mu.queue
	n := len(q)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q[r].at < q[l].at {
			m = r
		}
		if q[i].at <= q[m].at {
			return
		}
		q[i], q[m] = q[m], q[i]
		q[i].idx, q[m].idx = i, m
		i = m
	}
}
