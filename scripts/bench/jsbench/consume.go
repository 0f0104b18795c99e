package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
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

func startReader(ctx context.Context, js jetstream.JetStream, o *options, i int, policy jetstream.DeliverPolicy, stamped bool, got *atomic.Int64) (*reader, error) {
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
		got.Add(1)
	})
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", streamName(o, i), err)
	}
	return r, nil
}

// waitFor polls got until it reaches want; it fails after -timeout
// without progress.
func waitFor(ctx context.Context, o *options, got *atomic.Int64, want int64) error {
	last, lastAt := got.Load(), time.Now()
	for {
		n := got.Load()
		if n >= want {
			return nil
		}
		if n != last {
			last, lastAt = n, time.Now()
		}
		if time.Since(lastAt) > o.timeout {
			return fmt.Errorf("only %d of %d messages arrived: none for %s", n, want, o.timeout)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Microsecond)
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
	var got atomic.Int64
	var rs []*reader
	start := time.Now()
	for i := range o.streams {
		r, err := startReader(ctx, js, o, i, jetstream.DeliverAllPolicy, false, &got)
		if err != nil {
			return nil, err
		}
		defer r.cc.Stop()
		rs = append(rs, r)
	}
	err = waitFor(ctx, o, &got, want)
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
	var got atomic.Int64
	var rs []*reader
	for i := range o.streams {
		r, err := startReader(ctx, js, o, i, jetstream.DeliverNewPolicy, true, &got)
		if err != nil {
			return nil, err
		}
		defer r.cc.Stop()
		rs = append(rs, r)
	}
	time.Sleep(100 * time.Millisecond) // the ordered consumers are created asynchronously
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
	err = waitFor(ctx, o, &got, acked)
	return readersResult(start, rs), err
}
