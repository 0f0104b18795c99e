package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// slot is one message buffer of a publisher's ring. busy from publish to
// its ack (or error), so a buffer is never rewritten while the client may
// still resend it.
type slot struct {
	msg   nats.Msg
	start time.Time
	busy  atomic.Bool
}

// publisher is one connection publishing asynchronously with at most
// -window acks outstanding; the ack handler times each message.
type publisher struct {
	k     int
	nc    *nats.Conn
	js    jetstream.JetStream
	slots []slot
	index map[*nats.Msg]int // read-only once built

	mu       sync.Mutex // the ack handler's and the error handler's
	st       *stats
	firstErr error
}

func newPublisher(o *options, k int, stamp bool) (*publisher, error) {
	nc, err := connect(o, fmt.Sprintf("jsbench-pub-%d", k))
	if err != nil {
		return nil, err
	}
	p := &publisher{k: k, nc: nc, st: newStats(uint64(k)), slots: make([]slot, 2*o.window), index: map[*nats.Msg]int{}}
	for i := range p.slots {
		p.slots[i].msg.Data = make([]byte, o.size)
		for j := range p.slots[i].msg.Data {
			p.slots[i].msg.Data[j] = 'A' + byte(rand.IntN(26))
		}
		p.index[&p.slots[i].msg] = i
	}
	onAck := func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
		s := &p.slots[p.index[m]]
		lat := time.Since(s.start)
		p.mu.Lock()
		if !stamp { // e2e times at the consumer
			p.st.add(lat, len(m.Data))
		} else {
			p.st.count++
		}
		p.mu.Unlock()
		s.busy.Store(false)
	}
	onErr := func(_ jetstream.JetStream, m *nats.Msg, err error) {
		p.mu.Lock()
		p.st.errs++
		if p.firstErr == nil {
			p.firstErr = err
		}
		p.mu.Unlock()
		p.slots[p.index[m]].busy.Store(false)
	}
	p.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(o.window),
		jetstream.WithPublishAsyncAckHandler(onAck), jetstream.WithPublishAsyncErrHandler(onErr))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return p, nil
}

// run publishes quota messages (0: no limit) until deadline (zero: none)
// at rate messages/s (0: no cap), stamping each with its send time when
// stamp, then waits for every ack.
func (p *publisher) run(ctx context.Context, o *options, quota int64, rate float64, deadline time.Time, stamp bool) error {
	subjects := make([]string, o.streams)
	for i := range subjects {
		subjects[i] = subject(o, i)
	}
	begin := time.Now()
	for j := int64(0); (quota == 0 || j < quota) && ctx.Err() == nil; j++ {
		if rate > 0 {
			due := begin.Add(time.Duration(float64(j) / rate * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				time.Sleep(d)
			}
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		s := &p.slots[j%int64(len(p.slots))]
		for waited := time.Duration(0); s.busy.Load(); waited += 50 * time.Microsecond { // only when acks come far out of order
			if waited > o.timeout {
				return fmt.Errorf("message %d: its buffer still waits for the ack of the message %d before it after %s", j, len(p.slots), o.timeout)
			}
			time.Sleep(50 * time.Microsecond)
		}
		s.busy.Store(true)
		s.start = now
		if stamp {
			binary.LittleEndian.PutUint64(s.msg.Data, uint64(now.UnixNano()))
		}
		s.msg.Subject = subjects[(p.k+int(j))%len(subjects)]
		for {
			_, err := p.js.PublishMsgAsync(&s.msg)
			if err == nil {
				break
			}
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) && ctx.Err() == nil {
				continue // the window is full for longer than the stall wait: keep waiting
			}
			s.busy.Store(false)
			return fmt.Errorf("publish to %s: %w", s.msg.Subject, err)
		}
	}
	select {
	case <-p.js.PublishAsyncComplete():
	case <-time.After(o.timeout):
		return fmt.Errorf("%d acks still outstanding after %s", p.js.PublishAsyncPending(), o.timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstErr != nil {
		return fmt.Errorf("%d messages failed; the first: %w", p.st.errs, p.firstErr)
	}
	return nil
}

// publish is -mode pub: -producers publishers share -n and -rate.
func publish(ctx context.Context, o *options) (*result, error) {
	var ps []*publisher
	defer func() {
		for _, p := range ps {
			p.nc.Close()
		}
	}()
	for k := range o.producers {
		p, err := newPublisher(o, k, false)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	start := time.Now()
	end, err := runPublishers(ctx, o, ps, start, false)
	all := make([]*stats, len(ps))
	for i, p := range ps {
		p.mu.Lock()
		all[i] = p.st
		p.mu.Unlock()
	}
	return merge(end.Sub(start).Seconds(), all...), err
}

// runPublishers runs ps in parallel from start; it returns when every
// publisher has every ack, with that time.
func runPublishers(ctx context.Context, o *options, ps []*publisher, start time.Time, stamp bool) (time.Time, error) {
	var deadline time.Time
	if o.duration > 0 {
		deadline = start.Add(o.duration)
	}
	rate := o.rate / float64(len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for k, p := range ps {
		quota := int64(0)
		if o.n > 0 {
			quota = o.n / int64(len(ps))
			if int64(k) < o.n%int64(len(ps)) {
				quota++
			}
			if quota == 0 {
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = p.run(ctx, o, quota, rate, deadline, stamp)
		}()
	}
	wg.Wait()
	return time.Now(), errors.Join(errs...)
}
