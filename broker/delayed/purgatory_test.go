package delayed

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// partition is the state an operation waits on: a high watermark.
type partition struct{ hw atomic.Int64 }

// waitOp waits until every one of its partitions' HW reaches need. It counts
// its completions and checks the Operation contract: no overlapping
// TryComplete, none after completion, one completion in all.
type waitOp struct {
	t      *testing.T
	parts  []*partition
	need   int64
	tries  int // unsynchronized on purpose: the race detector flags overlapping TryCompletes
	inTry  atomic.Bool
	done   atomic.Bool
	comp   atomic.Int32
	exp    atomic.Int32
	onDone func()
}

func (o *waitOp) TryComplete() bool {
	if !o.inTry.CompareAndSwap(false, true) {
		o.t.Error("TryComplete calls overlap")
	}
	defer o.inTry.Store(false)
	if o.done.Load() {
		o.t.Error("TryComplete after completion")
	}
	o.tries++
	for _, p := range o.parts {
		if p.hw.Load() < o.need {
			return false
		}
	}
	return true
}

func (o *waitOp) OnComplete()   { o.finish(&o.comp) }
func (o *waitOp) OnExpiration() { o.finish(&o.exp) }

func (o *waitOp) finish(c *atomic.Int32) {
	o.done.Store(true)
	c.Add(1)
	if o.onDone != nil {
		o.onDone()
	}
}

func (o *waitOp) completions() int32 { return o.comp.Load() + o.exp.Load() }

func newFakePurgatory(t *testing.T, cfg Config) (*Purgatory[string], *FakeClock) {
	t.Helper()
	clk := NewFakeClock(epoch)
	cfg.Clock = clk
	p := NewPurgatory[string](cfg)
	t.Cleanup(p.Shutdown)
	return p, clk
}

func TestPurgatoryCompletesOnCheck(t *testing.T) {
	p, _ := newFakePurgatory(t, Config{})
	var a partition
	op := &waitOp{t: t, parts: []*partition{&a}, need: 10}
	if p.TryCompleteElseWatch(op, []string{"t-0"}, time.Minute) {
		t.Fatal("completed before the HW moved")
	}
	if p.Delayed() != 1 || p.Watched() != 1 {
		t.Fatalf("Delayed=%d Watched=%d, want 1 1", p.Delayed(), p.Watched())
	}
	a.hw.Store(5)
	if n := p.CheckAndComplete("t-0"); n != 0 {
		t.Fatalf("CheckAndComplete at HW 5 completed %d", n)
	}
	if n := p.CheckAndComplete("other"); n != 0 {
		t.Fatalf("CheckAndComplete of an unwatched key completed %d", n)
	}
	a.hw.Store(10)
	if n := p.CheckAndComplete("t-0"); n != 1 {
		t.Fatalf("CheckAndComplete at HW 10 completed %d, want 1", n)
	}
	if op.comp.Load() != 1 || op.exp.Load() != 0 {
		t.Fatalf("OnComplete %d OnExpiration %d", op.comp.Load(), op.exp.Load())
	}
	if p.Delayed() != 0 || p.Watched() != 0 {
		t.Fatalf("after completion Delayed=%d Watched=%d, want 0 0", p.Delayed(), p.Watched())
	}
	if p.timer.Len() != 0 {
		t.Fatalf("timeout task still pending after completion")
	}
	// Ready at once: completes in the call, nothing watched.
	op2 := &waitOp{t: t, parts: []*partition{&a}, need: 1}
	if !p.TryCompleteElseWatch(op2, []string{"t-0"}, time.Minute) || op2.comp.Load() != 1 || p.Watched() != 0 {
		t.Fatal("an operation ready at once was not completed by TryCompleteElseWatch")
	}
}

func TestPurgatoryExpires(t *testing.T) {
	p, clk := newFakePurgatory(t, Config{})
	var a, b partition
	short := &waitOp{t: t, parts: []*partition{&a}, need: 1}
	long := &waitOp{t: t, parts: []*partition{&a, &b}, need: 1}
	p.TryCompleteElseWatch(short, []string{"a"}, 500*time.Millisecond)
	p.TryCompleteElseWatch(long, []string{"a", "b"}, 30*time.Second)
	clk.Advance(499 * time.Millisecond)
	p.Poll()
	if short.completions() != 0 {
		t.Fatal("expired before its timeout")
	}
	clk.Advance(time.Millisecond)
	p.Poll()
	if short.exp.Load() != 1 || short.comp.Load() != 0 {
		t.Fatalf("short: OnExpiration %d OnComplete %d, want 1 0", short.exp.Load(), short.comp.Load())
	}
	if p.Delayed() != 1 {
		t.Fatalf("Delayed = %d, want 1", p.Delayed())
	}
	// The expired op is still listed under "a" until a check or purge; a
	// check must not complete it again.
	a.hw.Store(1)
	b.hw.Store(1)
	if n := p.CheckAndComplete("a"); n != 1 {
		t.Fatalf("CheckAndComplete(a) = %d, want 1 (long only)", n)
	}
	if n := p.CheckAndComplete("b"); n != 0 {
		t.Fatalf("CheckAndComplete(b) = %d after long completed", n)
	}
	clk.Advance(time.Minute)
	p.Poll()
	if short.completions() != 1 || long.completions() != 1 || long.comp.Load() != 1 {
		t.Fatalf("completions: short %d long %d", short.completions(), long.completions())
	}
	if p.Watched() != 0 || p.Delayed() != 0 {
		t.Fatalf("Watched=%d Delayed=%d at the end", p.Watched(), p.Delayed())
	}
}

// TestPurgatoryExactlyOnceUnderRaces: producers register operations on
// random partitions, movers raise HWs and call CheckAndComplete, and the clock
// runs timeouts, all at once. Every operation completes exactly once.
func TestPurgatoryExactlyOnceUnderRaces(t *testing.T) {
	p, clk := newFakePurgatory(t, Config{PurgeInterval: 50, Shards: 8})
	const nparts, producers, per, movers = 16, 4, 400, 4
	parts := make([]partition, nparts)
	var all sync.Map
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for m := range movers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(m), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := rng.IntN(nparts)
				parts[i].hw.Add(1)
				p.CheckAndComplete(fmt.Sprint("p", i))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			clk.Advance(2 * time.Millisecond)
			p.Poll()
			if d := p.Delayed(); d < 0 {
				t.Errorf("Delayed = %d", d)
			}
		}
	}()
	var prod sync.WaitGroup
	for w := range producers {
		prod.Add(1)
		go func() {
			defer prod.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for i := range per {
				k1, k2 := rng.IntN(nparts), rng.IntN(nparts)
				op := &waitOp{t: t, parts: []*partition{&parts[k1], &parts[k2]}}
				op.need = max(parts[k1].hw.Load(), parts[k2].hw.Load()) + int64(rng.IntN(30))
				all.Store(fmt.Sprint(w, "/", i), op)
				keys := []string{fmt.Sprint("p", k1), fmt.Sprint("p", k2)}
				p.TryCompleteElseWatch(op, keys, time.Duration(rng.IntN(400))*time.Millisecond)
			}
		}()
	}
	prod.Wait()
	close(stop)
	wg.Wait()
	p.Shutdown()
	var n, comp, exp int
	all.Range(func(_, v any) bool {
		op := v.(*waitOp)
		n++
		if c := op.completions(); c != 1 {
			t.Errorf("operation completed %d times", c)
			return false
		}
		comp += int(op.comp.Load())
		exp += int(op.exp.Load())
		return true
	})
	if n != producers*per {
		t.Fatalf("%d operations, want %d", n, producers*per)
	}
	if p.Delayed() != 0 {
		t.Fatalf("Delayed = %d after Shutdown", p.Delayed())
	}
	t.Logf("%d completed by check, %d expired", comp, exp)
}

// TestPurgatoryPurgeBoundsWatchers: operations watched on a hot key and a cold
// one complete through the hot key; the cold key's list is never checked, yet
// the lazy purge keeps the lingering entries near PurgeInterval.
func TestPurgatoryPurgeBoundsWatchers(t *testing.T) {
	const interval = 100
	p, _ := newFakePurgatory(t, Config{PurgeInterval: interval})
	var hot partition
	maxWatched := 0
	for i := range 5000 {
		op := &waitOp{t: t, parts: []*partition{&hot}, need: int64(i + 1)}
		p.TryCompleteElseWatch(op, []string{"hot", "cold"}, time.Hour)
		hot.hw.Add(1)
		if n := p.CheckAndComplete("hot"); n != 1 {
			t.Fatalf("op %d: CheckAndComplete = %d", i, n)
		}
		if i%10 == 0 {
			p.Poll() // let a purge scheduled on the timer goroutine run
		}
		maxWatched = max(maxWatched, p.Watched())
	}
	p.Poll()
	if maxWatched > interval+20 {
		t.Fatalf("watcher lists reached %d entries with PurgeInterval %d", maxWatched, interval)
	}
	if p.PurgeCompleted(); p.Watched() != 0 {
		t.Fatalf("Watched = %d after a purge with nothing waiting", p.Watched())
	}
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		n := len(sh.mu.m)
		sh.mu.Unlock()
		if n != 0 {
			t.Fatalf("shard %d keeps %d empty keys", i, n)
		}
	}
}

func TestPurgatoryShutdownExpiresEverything(t *testing.T) {
	p, _ := newFakePurgatory(t, Config{})
	var a partition
	var ops []*waitOp
	for i := range 100 {
		op := &waitOp{t: t, parts: []*partition{&a}, need: 1}
		ops = append(ops, op)
		var keys []string
		if i%10 != 0 { // some watch no key at all: only the timeout or Shutdown ends them
			keys = []string{fmt.Sprint("k", i%7)}
		}
		p.TryCompleteElseWatch(op, keys, time.Duration(i+1)*time.Hour)
	}
	p.Shutdown()
	for i, op := range ops {
		if op.exp.Load() != 1 || op.comp.Load() != 0 {
			t.Fatalf("op %d: OnExpiration %d OnComplete %d after Shutdown", i, op.exp.Load(), op.comp.Load())
		}
	}
	if p.Delayed() != 0 || p.Watched() != 0 {
		t.Fatalf("Delayed=%d Watched=%d after Shutdown", p.Delayed(), p.Watched())
	}
	late := &waitOp{t: t, parts: []*partition{&a}, need: 1}
	if p.TryCompleteElseWatch(late, []string{"k1"}, time.Hour) || late.exp.Load() != 1 {
		t.Fatal("an operation after Shutdown did not expire at once")
	}
	a.hw.Store(1)
	ready := &waitOp{t: t, parts: []*partition{&a}, need: 1}
	if !p.TryCompleteElseWatch(ready, []string{"k1"}, time.Hour) || ready.comp.Load() != 1 {
		t.Fatal("a ready operation after Shutdown did not complete")
	}
	p.Shutdown() // idempotent
}

// TestPurgatoryShutdownRacesWatch: Shutdown while operations are being
// registered still ends every one of them exactly once.
func TestPurgatoryShutdownRacesWatch(t *testing.T) {
	for round := range 20 {
		p := NewPurgatory[int](Config{Clock: NewFakeClock(epoch)})
		var a partition
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ops []*waitOp
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					op := &waitOp{t: t, parts: []*partition{&a}, need: 1}
					mu.Lock()
					ops = append(ops, op)
					mu.Unlock()
					p.TryCompleteElseWatch(op, []int{w, i}, time.Hour)
				}
			}()
		}
		if round%2 == 0 {
			time.Sleep(time.Duration(round) * 50 * time.Microsecond)
		}
		p.Shutdown()
		wg.Wait()
		for i, op := range ops {
			if op.completions() != 1 {
				t.Fatalf("round %d op %d: completed %d times", round, i, op.completions())
			}
		}
	}
}

// TestPurgatoryCallbacksMayReenter: OnComplete and OnExpiration run with no
// purgatory lock held, so they may register and check operations.
func TestPurgatoryCallbacksMayReenter(t *testing.T) {
	p, clk := newFakePurgatory(t, Config{})
	var a partition
	follow := &waitOp{t: t, parts: []*partition{&a}, need: 2}
	first := &waitOp{t: t, parts: []*partition{&a}, need: 1}
	first.onDone = func() {
		p.TryCompleteElseWatch(follow, []string{"a"}, time.Second)
		p.CheckAndComplete("a")
	}
	p.TryCompleteElseWatch(first, []string{"a"}, time.Second)
	a.hw.Store(1)
	p.CheckAndComplete("a")
	if first.comp.Load() != 1 || follow.completions() != 0 {
		t.Fatal("re-entrant OnComplete did not register its follow-up")
	}
	expirer := &waitOp{t: t, parts: []*partition{&a}, need: 100}
	expirer.onDone = func() { a.hw.Store(2); p.CheckAndComplete("a") }
	p.TryCompleteElseWatch(expirer, nil, 10*time.Millisecond)
	clk.Advance(10 * time.Millisecond)
	p.Poll()
	if expirer.exp.Load() != 1 || follow.comp.Load() != 1 {
		t.Fatalf("re-entrant OnExpiration: expirer exp %d, follow comp %d", expirer.exp.Load(), follow.comp.Load())
	}
}

func TestPurgatoryStructKeys(t *testing.T) {
	type tp struct {
		topic     string
		partition int32
	}
	p := NewPurgatory[tp](Config{Clock: NewFakeClock(epoch)})
	defer p.Shutdown()
	var a partition
	op := &waitOp{t: t, parts: []*partition{&a}, need: 1}
	p.TryCompleteElseWatch(op, []tp{{"orders", 3}}, time.Minute)
	a.hw.Store(1)
	if p.CheckAndComplete(tp{"orders", 4}) != 0 || p.CheckAndComplete(tp{"orders", 3}) != 1 {
		t.Fatal("struct keys: wrong operations completed")
	}
}

func TestPurgatoryRealClock(t *testing.T) {
	p := NewPurgatory[string](Config{})
	defer p.Shutdown()
	var a partition
	expired := make(chan struct{})
	op := &waitOp{t: t, parts: []*partition{&a}, need: 1, onDone: func() { close(expired) }}
	start := time.Now()
	p.TryCompleteElseWatch(op, []string{"a"}, 20*time.Millisecond)
	select {
	case <-expired:
	case <-time.After(5 * time.Second):
		t.Fatal("operation did not expire on the real clock")
	}
	if el := time.Since(start); el < 20*time.Millisecond || op.exp.Load() != 1 {
		t.Fatalf("expired after %v (exp %d), want >= 20ms", el, op.exp.Load())
	}
}
