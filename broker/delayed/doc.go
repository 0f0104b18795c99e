// Package delayed holds requests that wait for a condition — an acks=all
// produce waiting for the ISR to reach its offset, a long-poll fetch waiting
// for min_bytes — without a goroutine or a runtime timer per request
// (DESIGN.md §4). It is Kafka's DelayedOperationPurgatory and hierarchical
// timing wheel, in Go.
//
// # Timer: a hierarchical timing wheel
//
// A Timer keeps tasks in levels of buckets. Time is counted in ticks (1 ms by
// default) since the timer started; a task's deadline is rounded up to a tick,
// so it never runs early and runs at most about one tick late. Level i has n
// buckets (n = DefaultWheelSize = 512) of n^i ticks each; a task goes to the
// lowest level whose reach covers its distance from the current tick, into the
// bucket for its deadline. Upper (overflow) levels are made the first time a
// deadline needs them and kept for reuse.
//
//	current tick c; n buckets per level (n = 512; 4 drawn)
//
//	level 0  [c+1 ][c+2 ][c+3 ][c+4 ]                      1 tick each   reach n    = 512 ms
//	level 1  [    n ticks    ][    n    ][ ... ]            n ticks each  reach n²   = 4.4 min
//	level 2  [         n² ticks         ][ ... ]            n² ticks each reach n³   = 37 h
//	level 3  made on first use, like every level above 0    n³ ticks each reach n⁴   = 2.2 years
//
//	a bucket of level i > 0 comes due at the start of its span; its tasks then
//	move down (cascade) to the level that covers what is left of their delay
//
// Each bucket is an intrusive doubly-linked list of Tasks, so Add and Cancel
// are O(1) and allocate nothing beyond the Task. A non-empty bucket is queued,
// once, in a min-heap keyed by the first tick of its span (Kafka's DelayQueue
// of buckets; the heap holds at most levels×size buckets, never one entry per
// task). One goroutine per Timer sleeps until the earliest queued bucket is
// due, then advances the current tick to the clock's time, takes every due
// bucket off the heap and re-adds its tasks: each either drops to a lower
// level (a cascade; a task cascades at most once per level) or, if due, runs.
// An idle timer has no wake-ups at all, unlike a ticker.
//
// Why 512 buckets, not Kafka's 20: each cascade touches every task in the
// bucket again (with a million tasks, a cache miss each), and the
// purgatory's timeouts are 0.1-30 s. With 512 buckets a 500 ms fetch wait sits
// at level 0 and never cascades and a 30 s produce timeout cascades once; with
// 20 buckets they cascade two and three times. BenchmarkWheelTimeouts (1M
// timeouts uniform in 0.1-30 s, run to expiry) counts 0.98 cascades per task
// for 512 buckets, 1.84 for 64 and 2.59 for 20; the CPU per task (insert to
// callback) on the shared 2-core machine was 490-720 ns for 512 and 64 alike
// and about 100 ns more for 20. Most of the cost is the insert's allocation
// and the GC, not the cascades, so 64 and 512 tie and 512 keeps fetch waits
// off the cascade path. The cost of 512 is memory: 16 KiB of buckets per level
// and a heap of at most a few thousand buckets.
//
// Callbacks. Expired tasks run on the timer goroutine, one at a time, after
// the timer's lock is released, in deadline order (to the tick). A callback
// delays the expirations after it while it runs, so it must be short (answer
// a request, signal a channel) and must not call Stop or Poll on its own
// timer; it may Add and Cancel.
//
// Clock. The Clock interface (Now and NewTimer) is the timer's only view of
// time. FakeClock drives it in tests: Advance moves time, and Timer.Poll
// returns once the tasks due at the new time have run, which makes tests
// deterministic.
//
// # Purgatory
//
// A Purgatory[K] holds Operations waiting on keys (a partition). The contract:
//
//   - TryCompleteElseWatch(op, keys, timeout) tries op once; if it cannot
//     complete, it watches op under each key, tries once more (closing the race
//     with a CheckAndComplete that ran in between) and schedules its timeout.
//   - CheckAndComplete(key), called when the key's HW or LEO moves, calls
//     TryComplete on the operations watched under key and completes those for
//     which it returns true.
//   - Exactly once: every operation ends in exactly one of OnComplete (its
//     TryComplete returned true) or OnExpiration (its timeout passed, or
//     Shutdown came first), exactly once. The guard is a CompareAndSwap to the
//     done state taken by whichever path gets there first; the loser does
//     nothing. Shutdown expires every waiting operation, so none is left
//     unanswered; operations submitted after Shutdown complete on their first
//     try or expire at once.
//   - TryComplete calls for one operation never overlap and none starts after
//     it completed (a per-operation mutex), so TryComplete needs no lock of its
//     own for the operation's state. It must not call into the purgatory.
//
// Which goroutine runs what:
//
//	OnComplete    the goroutine whose TryComplete succeeded: the caller of
//	              TryCompleteElseWatch or CheckAndComplete
//	OnExpiration  the timer goroutine (timeouts), or the caller of Shutdown
//	              (or of TryCompleteElseWatch, for an operation submitted as
//	              or after the purgatory shuts down)
//	purge         the timer goroutine (scheduled when needed), or PurgeCompleted's caller
//
// Lock ordering. The purgatory has three kinds of lock: an operation's mutex,
// a key shard's mutex, and the timer's mutex. The shard and timer mutexes are
// leaves: nothing else is locked and no Operation method is called while one
// is held (CheckAndComplete copies the key's watcher list and unlocks before
// trying the operations). An operation's mutex is held only around its
// TryComplete (and the state change after it), so TryComplete may take the
// caller's own locks, and the order is: operation mutex, then the caller's
// locks. OnComplete and OnExpiration run with no purgatory lock held and may
// call TryCompleteElseWatch and CheckAndComplete; they must not call Shutdown
// or Poll.
//
// Completed operations linger in the watcher lists of keys that are not
// checked (an operation watched on two partitions and completed through one).
// A CheckAndComplete compacts its key's list; and once more than
// Config.PurgeInterval such entries linger over all keys, a purge of every
// list runs on the timer goroutine (Kafka's purgeInterval and expiration
// reaper), so the lists stay within about PurgeInterval of the waiting
// operations.
package delayed
