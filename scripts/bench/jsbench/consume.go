package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// reader is an ordered consumer on one stream counting (and, for e2e,
// timing) what it is handed.
type reader struct {
	mu   sync.Mutex
	st   *stats
	last time.Time
	cc   jetstream.ConsumeContext
}

// counter adds up what every reader got and closes done once want (set
// before or after) is reached, so waiting costs no polling. One wait per
// counter: done stays closed.
type counter struct {
	mu     sync.Mutex
	n      int64
	want   int64 // 0: not known yet
	done   chan struct{}
	closed bool
}

func newCounter() *counter { return &counter{done: make(chan struct{})} }

func (c *counter) add() {
	c.mu.Lock()
	c.n++
	c.checkLocked()
	c.mu.Unlock()
}

func (c *counter) setWant(w int64) {
	c.mu.Lock()
	c.want = w
	c.checkLocked()
	c.mu.Unlock()
}

func (c *counter) checkLocked() {
	if !c.closed && c.want > 0 && c.n >= c.want {
		close(c.done)
		c.closed = true
	}
}

func (c *counter) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func startReader(ctx context.Context, js jetstream.JetStream, o *options, i int, policy jetstream.DeliverPolicy, stamped bool, got *counter) (*reader, error) {
	c, err := js.OrderedConsumer(ctx, streamName(o, i), jetstream.OrderedConsumerConfig{DeliverPolicy: policy})
	if err != nil {
		return nil, fmt.Errorf("consumer on %s: %w", streamName(o, i), err)
	}
	r := &reader{st: newStats(uint64(100 + i))}
	r.cc, err = c.Consume(func(m jetstream.Msg) {
		now := time.Now()
		d := m.Data()
		r.mu.Lock()
		if stamped && len(d) >= 8 {
			r.st.add(now.Sub(time.Unix(0, int64(binary.LittleEndian.Uint64(d)))), len(d))
		} else {
			r.st.count++
			r.st.bytes += int64(len(d))
		}
		r.last = now
		r.mu.Unlock()
		got.add()
	})
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", streamName(o, i), err)
	}
	return r, nil
}

// waitFor waits until got reaches want; it fails after -timeout without
// progress.
func waitFor(ctx context.Context, o *options, got *counter, want int64) error {
	got.setWant(max(want, 1))
	if want <= 0 {
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := got.count(), time.Now()
	for {
		select {
		case <-got.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			if n := got.count(); n != last {
				last, lastAt = n, now
			} else if now.Sub(lastAt) > o.timeout {
				return fmt.Errorf("only %d of %d messages arrived: none for %s", n, want, o.timeout)
			}
		}
	}
}

// consume is -mode consume: replay every stream from its first message;
// the clock runs from starting the consumers to the last message.
func consume(ctx context.Context, o *options) (*result, error) {
	nc, err := connect(o, "jsbench-consume")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	want := int64(0)
	for i := range o.streams {
		s, err := js.Stream(ctx, streamName(o, i))
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", streamName(o, i), err)
		}
		want += int64(s.CachedInfo().State.Msgs)
	}
	got := newCounter()
	var rs []*reader
	start := time.Now()
	for i := range o.streams {
		r, err := startReader(ctx, js, o, i, jetstream.DeliverAllPolicy, false, got)
		if err != nil {
			return nil, err
		}
		defer r.cc.Stop()
		rs = append(rs, r)
	}
	err = waitFor(ctx, o, got, want)
	return readersResult(start, rs), err
}

func readersResult(start time.Time, rs []*reader) *result {
	end := start
	var all []*stats
	for _, r := range rs {
		r.mu.Lock()
		if r.last.After(end) {
			end = r.last
		}
		all = append(all, r.st)
		r.mu.Unlock()
	}
	return merge(end.Sub(start).Seconds(), all...)
}

// endToEnd is -mode e2e: readers on every stream from new messages, then
// -producers publishers at -rate stamping each message; the latency is
// from stamp to the reader's handler.
func endToEnd(ctx context.Context, o *options) (*result, error) {
	nc, err := connect(o, "jsbench-e2e-consume")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	got := newCounter()
	var rs []*reader
	for i := range o.streams {
		r, err := startReader(ctx, js, o, i, jetstream.DeliverNewPolicy, true, got)
		if err != nil {
			return nil, err
		}
		defer r.cc.Stop()
		rs = append(rs, r)
	}
	time.Sleep(100 * time.Millisecond) // let the consumers settle before the first message
	var ps []*publisher
	defer func() {
		for _, p := range ps {
			p.nc.Close()
		}
	}()
	for k := range o.producers {
		p, err := newPublisher(o, k, true)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	start := time.Now()
	if _, err := runPublishers(ctx, o, ps, start, true); err != nil {
		return readersResult(start, rs), err
	}
	acked := int64(0)
	for _, p := range ps {
		p.mu.Lock()
		acked += p.st.count
		p.mu.Unlock()
	}
	err = waitFor(ctx, o, got, acked)
	return readersResult(start, rs), err
}
