package delayed

// Benchmarks for the broker issue's target: the timing wheel against one
// time.AfterFunc per request, each with 1,000,000 operations pending.
//
//	go test -run '^$' -bench . -benchtime 2s ./broker/delayed/
//
// Every benchmark reports ns/op and allocs (b.ReportAllocs) and, from
// runtime.MemStats, the live heap bytes per pending operation ("B/pending") of
// the 1,000,000 that sit in the structure: a Task or a *time.Timer and its
// share of the structure holding it. The callbacks are one shared function,
// so no closure is counted on either side.

import (
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	pendingOps = 1_000_000
	batchOps   = 100_000
)

// Background deadlines are 1-2 h away: they sit in the structure and never
// fire during a benchmark.
var backgroundDelays = func() []time.Duration {
	rng := rand.New(rand.NewPCG(7, 7))
	d := make([]time.Duration, pendingOps)
	for i := range d {
		d[i] = time.Hour + time.Duration(rng.Int64N(int64(time.Hour)))
	}
	return d
}()

func noop() {}

// cpuMeter adds up the process's CPU time (user+system, all threads: the
// runtime's timer work and the callbacks' goroutines count too) over the
// timed parts of a benchmark and reports it per op as "cpu-ns/op". On a
// shared machine it is steadier than ns/op, which counts time spent
// descheduled.
type cpuMeter struct {
	total, from time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (m *cpuMeter) start() { m.from = processCPU() }
func (m *cpuMeter) stop()  { m.total += processCPU() - m.from }
func (m *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(m.total.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func heapBytes() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// fillWheel schedules pendingOps background tasks and reports their heap
// bytes per task.
func fillWheel(b *testing.B, tm *Timer) []*Task {
	tasks := make([]*Task, pendingOps)
	before := heapBytes()
	for i := range tasks {
		tasks[i] = tm.Schedule(backgroundDelays[i], noop)
	}
	reportPending(b, before)
	return tasks
}

// reportPending reports heap bytes per pending op since before. A metric
// reported before b.ResetTimer is dropped, so it is reported at cleanup.
func reportPending(b *testing.B, before uint64) {
	per := float64(heapBytes()-before) / pendingOps
	b.Cleanup(func() { b.ReportMetric(per, "B/pending") })
}

func fillAfterFunc(b *testing.B) []*time.Timer {
	timers := make([]*time.Timer, pendingOps)
	before := heapBytes()
	for i := range timers {
		timers[i] = time.AfterFunc(backgroundDelays[i], noop)
	}
	reportPending(b, before)
	return timers
}

func stopAll(timers []*time.Timer) {
	for _, t := range timers {
		t.Stop()
	}
}

func benchWheel(b *testing.B) *Timer {
	tm := NewTimer(DefaultTick, DefaultWheelSize, nil)
	b.Cleanup(func() { tm.Stop() })
	return tm
}

// 30 s ± a bit: the produce timeout's shape.
func requestDelay(i int) time.Duration {
	return 30*time.Second + time.Duration(i%5000)*time.Millisecond
}

func BenchmarkWheelInsert(b *testing.B) {
	tm := benchWheel(b)
	fillWheel(b, tm)
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	cpu.start()
	for i := range b.N {
		tm.Schedule(requestDelay(i), noop)
	}
	cpu.stop()
	cpu.report(b)
}

func BenchmarkAfterFuncInsert(b *testing.B) {
	defer stopAll(fillAfterFunc(b))
	extra := make([]*time.Timer, 0, b.N)
	defer func() { stopAll(extra) }()
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	cpu.start()
	for i := range b.N {
		extra = append(extra, time.AfterFunc(requestDelay(i), noop))
	}
	cpu.stop()
	b.StopTimer()
	cpu.report(b)
}

// Cancel: completing a request cancels its timeout. Each batch of tasks is
// scheduled untimed and cancelled timed, on top of the 1M pending.
func BenchmarkWheelCancel(b *testing.B) {
	tm := benchWheel(b)
	fillWheel(b, tm)
	batch := make([]*Task, batchOps)
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batchOps, b.N-done)
		b.StopTimer()
		for i := range n {
			batch[i] = tm.Schedule(requestDelay(done+i), noop)
		}
		b.StartTimer()
		cpu.start()
		for i := range n {
			batch[i].Cancel()
		}
		cpu.stop()
		done += n
	}
	cpu.report(b)
}

func BenchmarkAfterFuncStop(b *testing.B) {
	defer stopAll(fillAfterFunc(b))
	batch := make([]*time.Timer, batchOps)
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batchOps, b.N-done)
		b.StopTimer()
		for i := range n {
			batch[i] = time.AfterFunc(requestDelay(done+i), noop)
		}
		b.StartTimer()
		cpu.start()
		for i := range n {
			batch[i].Stop()
		}
		cpu.stop()
		done += n
	}
	cpu.report(b)
}

// Expire: batches of up to 1M tasks with deadlines 1-10 ms away are
// scheduled and all run, on top of the 1M pending; the time per op covers
// insert, the wait of about 10 ms per batch, and running the callback.
var expiring atomic.Int64

func countDown() { expiring.Add(-1) }

func waitExpired(b *testing.B) {
	deadline := time.Now().Add(time.Minute)
	for expiring.Load() > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("%d callbacks did not run", expiring.Load())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func expireDelay(i int) time.Duration { return time.Millisecond + time.Duration(i%10)*time.Millisecond }

func BenchmarkWheelExpire(b *testing.B) {
	tm := benchWheel(b)
	fillWheel(b, tm)
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	cpu.start()
	for done := 0; done < b.N; {
		n := min(pendingOps, b.N-done)
		expiring.Store(int64(n))
		for i := range n {
			tm.Schedule(expireDelay(i), countDown)
		}
		waitExpired(b)
		done += n
	}
	cpu.stop()
	cpu.report(b)
}

func BenchmarkAfterFuncExpire(b *testing.B) {
	defer stopAll(fillAfterFunc(b))
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	cpu.start()
	for done := 0; done < b.N; {
		n := min(pendingOps, b.N-done)
		expiring.Store(int64(n))
		for i := range n {
			time.AfterFunc(expireDelay(i), countDown)
		}
		waitExpired(b)
		done += n
	}
	cpu.stop()
	cpu.report(b)
}

// benchOp is a request waiting for its partition's HW to reach need.
type benchOp struct {
	hw   *atomic.Int64
	need int64
}

func (o *benchOp) TryComplete() bool { return o.hw.Load() >= o.need }
func (o *benchOp) OnComplete()       {}
func (o *benchOp) OnExpiration()     {}

// BenchmarkPurgatoryWatchComplete is one acks=all produce's life: it does
// not complete at once, waits under its partition, the HW moves, and
// CheckAndComplete completes it and cancels its timeout; with 1M operations
// waiting on 10,000 other partitions.
func BenchmarkPurgatoryWatchComplete(b *testing.B) {
	p := NewPurgatory[int](Config{})
	b.Cleanup(p.Shutdown)
	var never atomic.Int64
	before := heapBytes()
	ops := make([]benchOp, pendingOps)
	keys := make([][]int, 10_000)
	for i := range keys {
		keys[i] = []int{1_000_000 + i}
	}
	for i := range ops {
		ops[i] = benchOp{hw: &never, need: 1}
		p.TryCompleteElseWatch(&ops[i], keys[i%len(keys)], backgroundDelays[i])
	}
	reportPending(b, before)
	const partitions = 100
	hws := make([]atomic.Int64, partitions)
	hot := make([][]int, partitions)
	for i := range hot {
		hot[i] = []int{i}
	}
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	cpu.start()
	for i := range b.N {
		k := i % partitions
		op := &benchOp{hw: &hws[k], need: hws[k].Load() + 1}
		if p.TryCompleteElseWatch(op, hot[k], requestDelay(i)) {
			b.Fatal("completed before the HW moved")
		}
		hws[k].Add(1)
		if p.CheckAndComplete(k) != 1 {
			b.Fatal("CheckAndComplete did not complete the operation")
		}
	}
	cpu.stop()
	b.StopTimer()
	cpu.report(b)
	if p.Delayed() != pendingOps {
		b.Fatalf("Delayed = %d", p.Delayed())
	}
}

// BenchmarkPurgatoryParallel runs the same cycle from many goroutines at once
// (b.RunParallel, GOMAXPROCS of them), each on its own partitions, as the
// broker's request goroutines would: the sharded key locks and the timer's
// lock are shared.
func BenchmarkPurgatoryParallel(b *testing.B) {
	p := NewPurgatory[int](Config{})
	b.Cleanup(p.Shutdown)
	const partitions = 1024
	hws := make([]atomic.Int64, partitions)
	var next atomic.Int64
	var cpu cpuMeter
	b.ReportAllocs()
	b.ResetTimer()
	cpu.start()
	b.RunParallel(func(pb *testing.PB) {
		base := int(next.Add(1)) * 64 % partitions
		keys := make([][]int, 64)
		for i := range keys {
			keys[i] = []int{(base + i) % partitions}
		}
		for i := 0; pb.Next(); i++ {
			k := keys[i%len(keys)]
			hw := &hws[k[0]]
			op := &benchOp{hw: hw, need: hw.Load() + 1}
			p.TryCompleteElseWatch(op, k, requestDelay(i))
			hw.Add(1)
			p.CheckAndComplete(k[0])
		}
	})
	cpu.stop()
	b.StopTimer()
	cpu.report(b)
}

// BenchmarkWheelTimeouts chooses the wheel size: batches of up to 1M tasks
// with the purgatory's range of timeouts (0.1-30 s) are scheduled and run to
// expiry on a fake clock advanced tick by tick. The timer goroutine is
// stopped and the benchmark advances the wheel itself, so the time per task is
// the wheel's own work (insert, cascades, expiry, callback), with no waiting
// and no goroutine hand-offs.
func BenchmarkWheelTimeouts(b *testing.B) {
	for _, size := range []int{20, 64, 512} {
		b.Run("size="+itoa(size), func(b *testing.B) {
			clk := NewFakeClock(epoch)
			tm := NewTimer(time.Millisecond, size, clk)
			tm.stopOnce.Do(func() { close(tm.stopc) }) // park the goroutine; Add still works
			<-tm.done
			rng := rand.New(rand.NewPCG(5, 5))
			var cpu cpuMeter
			b.ReportAllocs()
			b.ResetTimer()
			cpu.start()
			for done := 0; done < b.N; {
				n := min(pendingOps, b.N-done)
				for range n {
					tm.Schedule(100*time.Millisecond+time.Duration(rng.Int64N(int64(30*time.Second))), noop)
				}
				for ran := 0; ran < n; {
					clk.Advance(time.Millisecond)
					tm.mu.Lock()
					tm.advanceLocked(tm.nowTicks())
					tm.mu.Unlock()
					for i, task := range tm.expired {
						tm.expired[i] = nil
						task.fire()
					}
					ran += len(tm.expired)
					tm.expired = tm.expired[:0]
				}
				done += n
			}
			cpu.stop()
			b.StopTimer()
			cpu.report(b)
			b.ReportMetric(float64(tm.mu.moves)/float64(b.N), "cascades/op")
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for ; n > 0; n /= 10 {
		i--
		buf[i] = byte('0' + n%10)
	}
	return string(buf[i:])
}
