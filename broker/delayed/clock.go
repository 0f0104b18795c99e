package delayed

import (
	"sync"
	"time"
)

// Clock is the time source of a Timer. Production code uses RealClock; tests
// use a FakeClock and move time by hand.
type Clock interface {
	// Now returns the current time. It must never go backwards.
	Now() time.Time
	// Since returns the time elapsed since t, a time this clock returned. The
	// timer reads the clock through Since on every Add: time.Since reads only
	// the monotonic clock, half the cost of time.Now.
	Since(t time.Time) time.Duration
	// NewTimer returns a one-shot timer that sends on its channel once d has
	// passed on this clock.
	NewTimer(d time.Duration) ClockTimer
}

// ClockTimer is a one-shot timer made by a Clock.
type ClockTimer interface {
	// C is the channel the timer sends the time on when it fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it stopped it.
	Stop() bool
}

// RealClock is the wall clock (time.Now with its monotonic reading).
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// Since returns time.Since(t).
func (RealClock) Since(t time.Time) time.Duration { return time.Since(t) }

// NewTimer returns a time.Timer.
func (RealClock) NewTimer(d time.Duration) ClockTimer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// FakeClock is a Clock for deterministic tests: time stands still until
// Advance moves it, and Advance fires the timers that have come due. Pair it
// with Timer.Poll (or Purgatory.Poll) to wait until the expirations due at the
// new time have run.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

// NewFakeClock returns a FakeClock that reads start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Since returns the fake time elapsed since t.
func (c *FakeClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Advance moves the fake time forward by d (d < 0 is ignored) and fires every
// timer whose deadline has been reached.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.now = c.now.Add(d)
	}
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.stopped {
			continue
		}
		if !t.when.After(c.now) {
			t.stopped = true
			t.ch <- c.now // buffered, capacity 1, sent at most once
			continue
		}
		kept = append(kept, t)
	}
	clear(c.timers[len(kept):])
	c.timers = kept
}

// NewTimer returns a timer that fires when Advance reaches now+d.
func (c *FakeClock) NewTimer(d time.Duration) ClockTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, when: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.stopped = true
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

type fakeTimer struct {
	c       *FakeClock
	when    time.Time
	ch      chan time.Time
	stopped bool // guarded by c.mu
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	for i, x := range t.c.timers {
		if x == t {
			last := len(t.c.timers) - 1
			t.c.timers[i] = t.c.timers[last]
			t.c.timers[last] = nil
			t.c.timers = t.c.timers[:last]
			break
		}
	}
	return was
}
