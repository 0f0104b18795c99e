package client

import (
	"errors"
	"testing"
	"time"

	"github.com/stratalog/strata/storage/record"
)

func testAcc() *accumulator {
	return newAccumulator(1024, 10*time.Millisecond, time.Minute, record.BatchOptions{})
}

func mustAppend(t *testing.T, a *accumulator, tp topicPartition, now time.Time, value []byte) appendResult {
	t.Helper()
	res, err := a.append(tp, now, now.UnixMilli(), nil, value, nil, len(value)+40, false)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func allTo(addr string) func(topicPartition) string {
	return func(topicPartition) string { return addr }
}

func TestAccumulatorBatchesAndLinger(t *testing.T) {
	a := testAcc()
	tp := topicPartition{"t", 0}
	now := time.Now()
	v := make([]byte, 100)
	for i := range 5 {
		res := mustAppend(t, a, tp, now, v)
		if res.index != i || res.newBatch != (i == 0) {
			t.Fatalf("record %d: index %d newBatch %v", i, res.index, res.newBatch)
		}
	}
	// Not full, not lingered: nothing to send, wake at the linger's end.
	reqs, exp, next := a.drain(now, drainFlags{}, 1<<20, allTo("b1"))
	if len(reqs) != 0 || len(exp) != 0 || !next.Equal(now.Add(10*time.Millisecond)) {
		t.Fatalf("before linger: %v %v next %v", reqs, exp, next.Sub(now))
	}
	// Flush makes it ready at once.
	if reqs, _, _ := a.drain(now, drainFlags{flush: true}, 1<<20, func(topicPartition) string { return "" }); len(reqs) != 0 {
		t.Fatal("drained with no destination")
	}
	reqs, _, _ = a.drain(now.Add(10*time.Millisecond), drainFlags{}, 1<<20, allTo("b1"))
	if len(reqs["b1"]) != 1 || len(reqs["b1"][0].batches) != 1 || reqs["b1"][0].batches[0].count != 5 {
		t.Fatalf("after linger: %+v", reqs)
	}
	// In flight: appends open a new batch, which is not drained while the
	// first is in flight (one request per partition at a time).
	res := mustAppend(t, a, tp, now, v)
	if !res.newBatch {
		t.Fatal("append to an in-flight batch")
	}
	if reqs, _, _ := a.drain(now.Add(time.Second), drainFlags{flush: true}, 1<<20, allTo("b1")); len(reqs) != 0 {
		t.Fatalf("second drain while in flight: %+v", reqs)
	}
	done := a.succeeded(reqs["b1"][0], 0, -1)
	if len(done) != 1 || done[0].count != 5 || done[0].ackBase != 0 {
		t.Fatalf("succeeded: %+v", done)
	}
	reqs, _, _ = a.drain(now.Add(time.Second), drainFlags{}, 1<<20, allTo("b1"))
	if len(reqs["b1"]) != 1 || reqs["b1"][0].batches[0] != res.b {
		t.Fatalf("next batch: %+v", reqs)
	}
}

func TestAccumulatorFullBatchesReadyAndRequestCap(t *testing.T) {
	a := testAcc()
	tp := topicPartition{"t", 1}
	now := time.Now()
	v := make([]byte, 300)
	var batches []*batch
	for range 9 { // 3 per 1 KiB batch
		res := mustAppend(t, a, tp, now, v)
		if res.newBatch {
			batches = append(batches, res.b)
		}
	}
	if len(batches) != 3 {
		t.Fatalf("%d batches, want 3", len(batches))
	}
	// The first two are full and ready before the linger; the third is not.
	reqs, _, _ := a.drain(now, drainFlags{}, 1<<20, allTo("b"))
	if d := reqs["b"]; len(d) != 1 || len(d[0].batches) != 2 || d[0].batches[0] != batches[0] || d[0].batches[1] != batches[1] {
		t.Fatalf("drained %+v", reqs)
	}
	a.succeeded(reqs["b"][0], 0, -1)
	// A record larger than BatchSize gets a batch of its own.
	big := mustAppend(t, a, tp, now, make([]byte, 5000))
	if !big.newBatch || big.b == batches[2] {
		t.Fatal("large record joined an open batch")
	}
	// The request cap: one batch per request when the cap is small, but
	// always at least one.
	reqs, _, _ = a.drain(now.Add(20*time.Millisecond), drainFlags{}, 100, allTo("b"))
	if d := reqs["b"]; len(d) != 1 || len(d[0].batches) != 1 || d[0].batches[0] != batches[2] {
		t.Fatalf("capped drain %+v", reqs)
	}
}

func TestAccumulatorRetryAndExpiry(t *testing.T) {
	a := newAccumulator(1024, 0, time.Second, record.BatchOptions{})
	tp := topicPartition{"t", 2}
	now := time.Now()
	first := mustAppend(t, a, tp, now, []byte("x"))
	reqs, _, _ := a.drain(now, drainFlags{}, 1<<20, allTo("b"))
	if len(reqs) != 1 {
		t.Fatal("not drained")
	}
	later := mustAppend(t, a, tp, now.Add(10*time.Millisecond), []byte("y"))
	errNL := &Error{Code: 26, Retriable: true}
	if got, _ := a.failed(reqs["b"][0], errNL, failRetry, now.Add(100*time.Millisecond), true); got != nil {
		t.Fatalf("retry returned batches to fail: %v", got)
	}
	if n := a.attemptsOf(reqs["b"][0]); n != 1 {
		t.Fatalf("attempts %d", n)
	}
	// Backoff: not before retryAt; then the failed batch first, with the later one.
	reqs, _, next := a.drain(now.Add(50*time.Millisecond), drainFlags{}, 1<<20, allTo("b"))
	if len(reqs) != 0 || !next.Equal(now.Add(100*time.Millisecond)) {
		t.Fatalf("during backoff: %+v next %v", reqs, next.Sub(now))
	}
	reqs, _, _ = a.drain(now.Add(100*time.Millisecond), drainFlags{}, 1<<20, allTo("b"))
	if d := reqs["b"]; len(d) != 1 || len(d[0].batches) != 2 || d[0].batches[0] != first.b || d[0].batches[1] != later.b {
		t.Fatalf("resend %+v", reqs)
	}
	a.failed(reqs["b"][0], errNL, failRetry, now, true)
	// Past the delivery timeout the batches expire with the last error.
	_, exp, _ := a.drain(now.Add(time.Second+10*time.Millisecond), drainFlags{}, 1<<20, func(topicPartition) string { return "" })
	if len(exp) != 2 || exp[0].b != first.b || !errors.Is(exp[0].lastErr, errNL) {
		t.Fatalf("expired %+v", exp)
	}
}

func TestAccumulatorClose(t *testing.T) {
	a := testAcc()
	now := time.Now()
	mustAppend(t, a, topicPartition{"t", 0}, now, []byte("a"))
	mustAppend(t, a, topicPartition{"t", 1}, now, []byte("b"))
	if n := len(a.incomplete()); n != 2 {
		t.Fatalf("incomplete %d", n)
	}
	if acked, rest := a.close(); len(acked) != 0 || len(rest) != 2 {
		t.Fatalf("close returned %d acked, %d other batches", len(acked), len(rest))
	}
	if _, err := a.append(topicPartition{"t", 0}, now, 0, nil, nil, nil, 10, false); !errors.Is(err, ErrProducerClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestAccumulatorAbortOnNewBatch(t *testing.T) {
	a := testAcc()
	tp := topicPartition{"t", 0}
	res, err := a.append(tp, time.Now(), 0, nil, []byte("v"), nil, 50, true)
	if err != nil || !res.aborted || len(a.incomplete()) != 0 {
		t.Fatalf("abortOnNew on an empty partition: %+v %v", res, err)
	}
	mustAppend(t, a, tp, time.Now(), []byte("v"))
	res, err = a.append(tp, time.Now(), 0, nil, []byte("v"), nil, 50, true)
	if err != nil || res.aborted || res.index != 1 {
		t.Fatalf("abortOnNew with room: %+v %v", res, err)
	}
}

func TestMemoryBlocksThenErrors(t *testing.T) {
	m := newMemory(100)
	stop := make(chan struct{})
	ctx := t.Context()
	if err := m.acquire(ctx, 80, time.Second, stop, func() {}); err != nil {
		t.Fatal(err)
	}
	waited := false
	start := time.Now()
	err := m.acquire(ctx, 50, 50*time.Millisecond, stop, func() { waited = true })
	if !errors.Is(err, ErrBufferFull) || !waited || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("acquire over the limit: %v waited %v after %v", err, waited, time.Since(start))
	}
	go func() { time.Sleep(20 * time.Millisecond); m.release(80) }()
	if err := m.acquire(ctx, 50, 5*time.Second, stop, func() {}); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	if m.inUse() != 50 {
		t.Fatalf("in use %d", m.inUse())
	}
}

func TestAccumulatorSplit(t *testing.T) {
	a := testAcc()
	tp := topicPartition{"t", 0}
	now := time.Now()
	var parent *batch
	for i := range 5 {
		parent = mustAppend(t, a, tp, now, []byte{byte('a' + i)}).b
	}
	reqs, _, _ := a.drain(now, drainFlags{flush: true}, 1<<20, allTo("b"))
	if len(reqs["b"]) != 1 {
		t.Fatal("not drained")
	}
	tooLarge := &Error{Code: 10}
	// A batch that was never built is not split: it goes again alone.
	a.failed(reqs["b"][0], tooLarge, failSplit, now, true)
	reqs, _, _ = a.drain(now, drainFlags{}, 1<<20, allTo("b"))
	if d := reqs["b"]; len(d) != 1 || len(d[0].batches) != 1 || d[0].batches[0] != parent || parent.children != nil {
		t.Fatalf("unbuilt batch: %+v", reqs)
	}
	built, err := parent.builder.Build()
	if err != nil {
		t.Fatal(err)
	}
	parent.built = built
	a.failed(reqs["b"][0], tooLarge, failSplit, now, true)
	// The halves are at the head, sent one per request.
	reqs, _, _ = a.drain(now, drainFlags{}, 1<<20, allTo("b"))
	if len(parent.children) != 2 || parent.children[0].count != 3 || parent.children[1].count != 2 || parent.children[1].first != 3 {
		t.Fatalf("children %+v", parent.children)
	}
	for idx, want := range []struct {
		child, idx int
	}{{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}} {
		c, i := parent.leaf(idx)
		if c != parent.children[want.child] || i != want.idx {
			t.Fatalf("leaf(%d) = child %p index %d", idx, c, i)
		}
	}
	if d := reqs["b"]; len(d) != 1 || len(d[0].batches) != 1 || d[0].batches[0] != parent.children[0] {
		t.Fatalf("after split: %+v", reqs)
	}
	if done := a.succeeded(reqs["b"][0], 7, -1); len(done) != 1 || done[0] != parent.children[0] || done[0].ackBase != 7 {
		t.Fatalf("first half: %+v", done)
	}
	reqs, _, _ = a.drain(now, drainFlags{}, 1<<20, allTo("b"))
	c := parent.children[1]
	if d := reqs["b"]; len(d) != 1 || d[0].batches[0] != c {
		t.Fatal("second half not drained")
	}
	c.built, _ = c.builder.Build()
	a.failed(reqs["b"][0], tooLarge, failSplit, now, true)
	reqs, _, _ = a.drain(now, drainFlags{}, 1<<20, allTo("b"))
	if len(c.children) != 2 || c.children[0].count != 1 || reqs["b"][0].batches[0] != c.children[0] {
		t.Fatalf("second split: %+v", c.children)
	}
	// A single record is not split.
	g := c.children[0]
	g.built, _ = g.builder.Build()
	if a.splitBatch(g) != nil {
		t.Fatal("split a one-record batch")
	}
}

// TestAccumulatorPipelines: an idempotent accumulator stamps consecutive
// sequences and keeps several units of a partition in flight, but sends a
// second one only once it fills half a request (or on flush); a reset
// after a failure bumps the epoch and starts the sequence over.
func TestAccumulatorPipelines(t *testing.T) {
	a := newAccumulator(1024, 0, time.Minute, record.BatchOptions{})
	a.setIdempotent(5)
	tp := topicPartition{"t", 0}
	now := time.Now()
	if reqs, _, _ := a.drain(now, drainFlags{}, 4096, allTo("b")); len(reqs) != 0 {
		t.Fatal("drained before a producer id")
	}
	a.setProducerID(42)
	v := make([]byte, 300)
	for range 3 { // one batch of 3 records (~1 KiB, full)
		mustAppend(t, a, tp, now, v)
	}
	reqs, _, _ := a.drain(now, drainFlags{}, 4096, allTo("b"))
	first := reqs["b"]
	if len(first) != 1 || first[0].producerID != 42 || first[0].epoch != 0 || first[0].seqs[0] != 0 {
		t.Fatalf("first unit %+v", first)
	}
	mustAppend(t, a, tp, now, v) // a small ready batch: not half a request
	if reqs, _, _ := a.drain(now, drainFlags{}, 4096, allTo("b")); len(reqs) != 0 {
		t.Fatalf("a small unit went while one is in flight: %+v", reqs)
	}
	for range 8 {
		mustAppend(t, a, tp, now, v)
	}
	reqs, _, _ = a.drain(now, drainFlags{}, 4096, allTo("b"))
	second := reqs["b"]
	if len(second) != 1 || second[0].seqs[0] != 3 || len(second[0].batches) < 2 {
		t.Fatalf("second unit %+v", second)
	}
	// The first fails for good: the second's answer does not matter, the
	// sequence restarts at 0 in epoch 1 with every unacknowledged batch.
	if fail, _ := a.failed(first[0], &Error{Code: 2}, failForGood, now, true); len(fail) != 1 {
		t.Fatalf("failed %v", fail)
	}
	a.failed(second[0], &Error{Code: 43, Retriable: true}, failRetry, now, false)
	reqs, _, _ = a.drain(now, drainFlags{flush: true}, 4096, allTo("b"))
	if d := reqs["b"]; len(d) != 1 || d[0].epoch != 1 || d[0].seqs[0] != 0 || d[0].batches[0] != second[0].batches[0] {
		t.Fatalf("after the reset: %+v", reqs)
	}
}
