package delayed

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// firing records the callbacks a timer ran, in order.
type firing struct {
	mu  sync.Mutex
	ids []int
}

func (f *firing) fn(id int) func() {
	return func() {
		f.mu.Lock()
		f.ids = append(f.ids, id)
		f.mu.Unlock()
	}
}

func (f *firing) take() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := f.ids
	f.ids = nil
	return ids
}

func newFakeTimer(t *testing.T, tick time.Duration, size int) (*Timer, *FakeClock) {
	t.Helper()
	clk := NewFakeClock(epoch)
	tm := NewTimer(tick, size, clk)
	t.Cleanup(func() { tm.Stop() })
	return tm, clk
}

// advanceTo moves clk to at and waits for the expirations due then.
func advanceTo(tm *Timer, clk *FakeClock, at time.Time) {
	clk.Advance(at.Sub(clk.Now()))
	tm.Poll()
}

// TestTimerFiresOnTimeAcrossLevels schedules deadlines from one tick to days
// away (up to 14 levels of a 4-slot wheel), some added after the clock moved,
// cancels some along the way, and walks the clock through every deadline and
// the tick before it: after each step exactly the tasks whose deadline has
// passed have run, in deadline order, none early, no cancelled one.
func TestTimerFiresOnTimeAcrossLevels(t *testing.T) {
	for _, size := range []int{4, 20, DefaultWheelSize} {
		t.Run(itoa(size), func(t *testing.T) { testFiresOnTime(t, size) })
	}
}

func testFiresOnTime(t *testing.T, size int) {
	const tick = time.Millisecond
	tm, clk := newFakeTimer(t, tick, size)
	var f firing
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := map[int]time.Time{}
	fixed := []time.Duration{tick, 2 * tick, 19 * tick, 20 * tick, 21 * tick, 399 * tick, 400 * tick, 401 * tick,
		8 * time.Second, 160 * time.Second, time.Hour, 3 * time.Hour, 30 * time.Hour, 1500 * time.Microsecond}
	tasks := map[int]*Task{}
	cancelled := map[int]bool{}
	id := 0
	add := func(d time.Duration) {
		deadline[id] = clk.Now().Add(d)
		if tasks[id] = tm.Schedule(d, f.fn(id)); tasks[id] == nil {
			t.Fatal("Schedule on a running timer returned nil")
		}
		id++
	}
	for _, d := range fixed {
		add(d)
	}
	for range 200 {
		// log-uniform from a tick to ~2 days, not tick aligned
		add(time.Duration(float64(tick) * pow(2, rng.Float64()*28)))
	}

	fired := map[int]bool{}
	lastDeadline := time.Time{}
	check := func(step int) {
		now := clk.Now()
		for _, i := range f.take() {
			if fired[i] {
				t.Fatalf("task %d fired twice", i)
			}
			if cancelled[i] {
				t.Fatalf("step %d: cancelled task %d fired", step, i)
			}
			fired[i] = true
			dl := deadline[i]
			if dl.After(now) {
				t.Fatalf("step %d: task %d fired at %v, before its deadline %v", step, i, now.Sub(epoch), dl.Sub(epoch))
			}
			if roundUp(dl, tick).Before(roundUp(lastDeadline, tick)) {
				t.Fatalf("step %d: task %d (deadline %v) fired after one with deadline %v", step, i, dl.Sub(epoch), lastDeadline.Sub(epoch))
			}
			lastDeadline = dl
		}
		for i, dl := range deadline {
			// due once the clock reaches the tick at or after the deadline
			due := !roundUp(dl, tick).After(now)
			if due != fired[i] {
				t.Fatalf("step %d at %v: task %d deadline %v due=%v fired=%v", step, now.Sub(epoch), i, dl.Sub(epoch), due, fired[i])
			}
		}
	}
	step := 0
	for len(fired) < len(deadline) {
		var next time.Time
		for i, dl := range deadline {
			if !fired[i] && (next.IsZero() || dl.Before(next)) {
				next = dl
			}
		}
		next = roundUp(next, tick)
		if before := next.Add(-tick); before.After(clk.Now()) {
			advanceTo(tm, clk, before)
			check(step)
			step++
		}
		advanceTo(tm, clk, next)
		check(step)
		step++
		if step%7 == 0 && id < 400 { // add more while the wheels are mid-turn
			add(time.Duration(float64(tick) * pow(2, rng.Float64()*24)))
			add(tick)
		}
		if step%5 == 0 { // cancel a pending task, maybe one that has cascaded already
			if i := rng.IntN(id); !fired[i] && !cancelled[i] {
				if !tasks[i].Cancel() {
					t.Fatalf("step %d: Cancel of pending task %d = false", step, i)
				}
				cancelled[i] = true
				delete(deadline, i)
			}
		}
	}
	if n := tm.Len(); n != 0 {
		t.Fatalf("Len = %d after everything fired", n)
	}
	if len(cancelled) < 10 {
		t.Fatalf("only %d tasks cancelled along the way", len(cancelled))
	}
	t.Logf("%d tasks fired, %d cancelled, %d steps", len(fired), len(cancelled), step)
}

func pow(b, e float64) float64 {
	r := 1.0
	for e >= 1 {
		r *= b
		e--
	}
	// e in [0,1): linear interpolation is enough for a spread of test delays
	return r * (1 + (b-1)*e)
}

func roundUp(at time.Time, tick time.Duration) time.Time {
	d := at.Sub(epoch)
	return epoch.Add((d + tick - 1) / tick * tick)
}

func TestTimerCancel(t *testing.T) {
	tm, clk := newFakeTimer(t, time.Millisecond, 20)
	var f firing
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 2000
	tasks := make([]*Task, n)
	for i := range tasks {
		tasks[i] = tm.Schedule(time.Duration(1+rng.IntN(100_000))*time.Millisecond, f.fn(i))
	}
	cancelled := map[int]bool{}
	for i := 0; i < n; i += 2 {
		if !tasks[i].Cancel() {
			t.Fatalf("Cancel of pending task %d = false", i)
		}
		if tasks[i].Cancel() {
			t.Fatalf("second Cancel of task %d = true", i)
		}
		cancelled[i] = true
	}
	if got := tm.Len(); got != n/2 {
		t.Fatalf("Len = %d, want %d", got, n/2)
	}
	advanceTo(tm, clk, clk.Now().Add(101*time.Second))
	ids := f.take()
	if len(ids) != n/2 {
		t.Fatalf("%d callbacks ran, want %d", len(ids), n/2)
	}
	for _, i := range ids {
		if cancelled[i] {
			t.Fatalf("cancelled task %d ran", i)
		}
	}
	for i := 1; i < n; i += 2 {
		if tasks[i].Cancel() {
			t.Fatalf("Cancel after expiry of task %d = true", i)
		}
	}
	var never *Task
	if never.Cancel() || NewTask(func() {}).Cancel() {
		t.Fatal("Cancel of a nil or never-added task = true")
	}
}

func TestTimerDueAtOnce(t *testing.T) {
	tm, _ := newFakeTimer(t, time.Millisecond, 20)
	var f firing
	tm.Schedule(0, f.fn(1))
	tm.Schedule(-time.Second, f.fn(2))
	tm.Schedule(time.Nanosecond, f.fn(3)) // rounds up to the next tick: not yet
	tm.Poll()
	if got := f.take(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("ran %v, want [1 2]", got)
	}
	task := NewTask(func() {})
	if !tm.Add(task, time.Second) || tm.Add(task, time.Second) {
		t.Fatal("Add of a task twice: want true then false")
	}
}

// TestTimerOverflowReuse drives a 4-slot wheel through many turns of its upper
// levels: overflow wheels are made once, on demand, and reused.
func TestTimerOverflowReuse(t *testing.T) {
	tm, clk := newFakeTimer(t, time.Millisecond, 4)
	var f firing
	levels := func() int {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		return len(tm.mu.levels)
	}
	if levels() != 1 {
		t.Fatalf("levels = %d before any task, want 1", levels())
	}
	tm.Schedule(3*time.Millisecond, f.fn(0))
	if levels() != 1 {
		t.Fatalf("levels = %d for a task within the first wheel", levels())
	}
	const d = 100 * time.Millisecond // needs levels of span 1, 4, 16, 64 ms
	for round := range 50 {
		tm.Schedule(d, f.fn(round))
		advanceTo(tm, clk, clk.Now().Add(d-time.Millisecond))
		if got := f.take(); len(got) > 0 && round > 0 {
			t.Fatalf("round %d: %v fired early", round, got)
		}
		advanceTo(tm, clk, clk.Now().Add(time.Millisecond))
		if got := f.take(); !slices.Equal(got, []int{round}) {
			t.Fatalf("round %d: fired %v", round, got)
		}
		if levels() != 4 {
			t.Fatalf("round %d: levels = %d, want 4", round, levels())
		}
	}
}

func TestTimerStop(t *testing.T) {
	clk := NewFakeClock(epoch)
	tm := NewTimer(time.Millisecond, 20, clk)
	var ran atomic.Int32
	var tasks []*Task
	for i := range 10 {
		tasks = append(tasks, tm.Schedule(time.Duration(i+1)*time.Second, func() { ran.Add(1) }))
	}
	if n := tm.Stop(); n != 10 {
		t.Fatalf("Stop dropped %d, want 10", n)
	}
	if n := tm.Stop(); n != 0 {
		t.Fatalf("second Stop dropped %d", n)
	}
	clk.Advance(time.Hour)
	if tm.Poll() != 0 || ran.Load() != 0 {
		t.Fatal("callbacks ran after Stop")
	}
	if tm.Schedule(time.Second, func() {}) != nil || tm.Add(NewTask(func() {}), 0) {
		t.Fatal("Add after Stop succeeded")
	}
	if tasks[0].Cancel() {
		t.Fatal("Cancel of a dropped task = true")
	}
}

// TestTimerWakesForEarlierTask: the timer goroutine sleeps until its earliest
// bucket; a task added earlier than that wakes it, with no Poll.
func TestTimerWakesForEarlierTask(t *testing.T) {
	tm, clk := newFakeTimer(t, time.Millisecond, 20)
	fired := make(chan int, 3)
	tm.Schedule(time.Hour, func() { fired <- 1 })
	tm.Poll() // the goroutine now sleeps until the hour's bucket
	tm.Schedule(5*time.Millisecond, func() { fired <- 2 })
	tm.Schedule(0, func() { fired <- 3 })
	select {
	case id := <-fired:
		if id != 3 {
			t.Fatalf("task %d ran first, want the due task 3", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a due task did not wake the timer goroutine")
	}
	clk.Advance(5 * time.Millisecond) // fires the goroutine's clock timer
	select {
	case id := <-fired:
		if id != 2 {
			t.Fatalf("task %d ran, want 2", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the 5ms task did not run after the clock reached it")
	}
	if n := tm.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1 (the hour task)", n)
	}
}

func TestTimerRealClock(t *testing.T) {
	tm := NewTimer(time.Millisecond, 20, nil)
	defer tm.Stop()
	done := make(chan time.Time, 2)
	start := time.Now()
	tm.Schedule(30*time.Millisecond, func() { done <- time.Now() })
	tm.Schedule(5*time.Millisecond, func() { done <- time.Now() })
	for range 2 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("task on the real clock did not fire")
		}
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("fired after %v, before its 30ms deadline", el)
	}
}

// TestTimerConcurrentExactlyOnce races adders, cancellers and the clock: every
// task ends either cancelled (Cancel true) or run once, never both.
func TestTimerConcurrentExactlyOnce(t *testing.T) {
	tm, clk := newFakeTimer(t, time.Millisecond, 8)
	const workers, per = 8, 500
	runs := make([]atomic.Int32, workers*per)
	cancelled := make([]atomic.Bool, workers*per)
	stop := make(chan struct{})
	var clockDone sync.WaitGroup
	clockDone.Add(1)
	go func() {
		defer clockDone.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			clk.Advance(3 * time.Millisecond)
			tm.Poll()
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range per {
				id := w*per + i
				task := tm.Schedule(time.Duration(rng.IntN(200))*time.Millisecond, func() { runs[id].Add(1) })
				if rng.IntN(2) == 0 {
					cancelled[id].Store(task.Cancel())
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	clockDone.Wait()
	advanceTo(tm, clk, clk.Now().Add(time.Second))
	for id := range runs {
		r, c := runs[id].Load(), cancelled[id].Load()
		if (c && r != 0) || (!c && r != 1) {
			t.Fatalf("task %d: cancelled=%v runs=%d", id, c, r)
		}
	}
	if n := tm.Len(); n != 0 {
		t.Fatalf("Len = %d at the end", n)
	}
}
