package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// produceResult is one request's answer, handed back to the sender.
type produceResult struct {
	addr  string
	parts []drained
	resp  *pb.ProduceResponse
	err   error
}

// runSender is the one goroutine that drains ready batches, sends them and
// settles their outcome. It owns the per-broker in-flight counts.
func (p *Producer) runSender() {
	defer p.wg.Done()
	inflight := map[string]int{}
	total := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		flags := drainFlags{flush: p.flushing.Load() > 0, exhausted: p.mem.exhausted()}
		needMeta := false
		m := p.meta.Load()
		reqs, expired, next := p.acc.drain(now, flags, p.cfg.MaxRequestSize, func(tp topicPartition) string {
			if m == nil {
				needMeta = true
				return ""
			}
			b, _, err := m.Leader(tp.topic, tp.partition)
			if err != nil {
				needMeta = true
				return ""
			}
			if inflight[b.Addr] >= p.cfg.MaxInFlight {
				return ""
			}
			return b.Addr
		})
		if needMeta {
			p.requestRefresh()
			if next.IsZero() || next.After(now.Add(p.cfg.RetryBackoff)) {
				next = now.Add(p.cfg.RetryBackoff)
			}
		}
		for _, e := range expired {
			err := fmt.Errorf("%w: %d records for %s-%d not acknowledged within DeliveryTimeout %v (never sent: no leader reachable)",
				ErrDeliveryTimeout, e.b.count, e.b.tp.topic, e.b.tp.partition, p.cfg.DeliveryTimeout)
			if e.lastErr != nil {
				err = fmt.Errorf("%w: %d records for %s-%d not acknowledged within DeliveryTimeout %v; last error: %w",
					ErrDeliveryTimeout, e.b.count, e.b.tp.topic, e.b.tp.partition, p.cfg.DeliveryTimeout, e.lastErr)
			}
			p.complete(e.b, -1, -1, err)
		}
		for addr, parts := range reqs {
			inflight[addr]++
			total++
			go p.produce(addr, parts)
		}
		if len(reqs) > 0 {
			continue // more may be ready (a full request, another broker)
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-p.wake:
		case <-timer.C:
		case r := <-p.results:
			inflight[r.addr]--
			total--
			p.settle(r)
		case <-p.stop:
			// Close: what is in flight finishes (or is cancelled by
			// abort); what is queued fails.
			for ; total > 0; total-- {
				p.settle(<-p.results)
			}
			for _, b := range p.acc.close() {
				p.complete(b, -1, -1, ErrProducerClosed)
			}
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// produce sends one request and hands the answer to the sender.
func (p *Producer) produce(addr string, parts []drained) {
	r := &produceResult{addr: addr, parts: parts}
	defer func() { p.results <- r }()
	req := &pb.ProduceRequest{Acks: p.cfg.Acks.Wire(), TimeoutMs: int32(p.cfg.RequestTimeout / time.Millisecond)}
	topics := map[string]*pb.ProduceTopic{}
	for _, d := range parts {
		var records []byte
		if len(d.batches) > 1 {
			records = make([]byte, 0, d.bytes) // a compressed batch is smaller than its estimate
		}
		for _, b := range d.batches {
			if b.built == nil {
				built, err := b.builder.Build()
				if err != nil {
					r.err = &Error{Code: pb.ErrorCode_CORRUPT_MESSAGE, Message: err.Error()}
					return
				}
				b.built = built
			}
			if len(d.batches) == 1 {
				records = b.built
			} else {
				records = append(records, b.built...)
			}
		}
		t := topics[d.tp.topic]
		if t == nil {
			t = &pb.ProduceTopic{Topic: d.tp.topic}
			topics[d.tp.topic] = t
			req.Topics = append(req.Topics, t)
		}
		t.Partitions = append(t.Partitions, &pb.ProducePartition{Partition: d.tp.partition, Records: records})
	}
	bc, err := p.c.Broker(addr)
	if err != nil {
		r.err = err
		return
	}
	// The RPC deadline leaves the broker time to answer REQUEST_TIMED_OUT
	// itself when the ISR is slow.
	// It never outlives the earliest DeliveryTimeout among the batches, so
	// a record's outcome is known by then even if the broker went silent.
	deadline := time.Now().Add(p.cfg.RequestTimeout + time.Second)
	for _, d := range parts {
		if dl := d.batches[0].deadline; dl.Before(deadline) {
			deadline = dl
		}
	}
	ctx, cancel := context.WithDeadline(p.rpcCtx, deadline)
	defer cancel()
	r.resp, r.err = bc.Produce(ctx, req)
}

// settle applies one answer: completes the partitions that succeeded or
// failed for good, queues the others for a retry.
func (p *Producer) settle(r *produceResult) {
	codes := map[topicPartition]*pb.ProducePartitionResult{}
	if r.err == nil {
		for _, t := range r.resp.GetTopics() {
			for _, pr := range t.GetPartitions() {
				codes[topicPartition{t.GetTopic(), pr.GetPartition()}] = pr
			}
		}
	}
	now := time.Now()
	refresh := false
	for _, d := range r.parts {
		var err error
		pr := codes[d.tp]
		switch {
		case r.err != nil:
			err = FromError(r.err)
			if errors.Is(err, context.Canceled) && p.rpcCtx.Err() != nil {
				err = ErrProducerClosed
			}
		case pr == nil:
			err = &Error{Code: pb.ErrorCode_UNKNOWN_SERVER_ERROR, Message: fmt.Sprintf("the broker at %s answered nothing for %s-%d", r.addr, d.tp.topic, d.tp.partition), Retriable: true}
		case pr.GetErrorCode() != pb.ErrorCode_NONE:
			err = &Error{Code: pr.GetErrorCode(), Message: pr.GetErrorMessage(), Retriable: Retriable(pr.GetErrorCode())}
		}
		if err == nil {
			base := pr.GetBaseOffset()
			for _, b := range p.acc.succeeded(d.tp) {
				off := int64(-1)
				if p.cfg.Acks != AcksNone && base >= 0 {
					off = base
					base += int64(b.count)
				}
				p.complete(b, off, pr.GetLogAppendTimeMs(), nil)
			}
			continue
		}
		var e *Error
		retriable := errors.As(err, &e) && e.Retriable
		single := false
		if errors.As(err, &e) && e.Code == pb.ErrorCode_MESSAGE_TOO_LARGE {
			if len(d.batches) > 1 {
				retriable, single = true, true // resend the batches one by one: only the large one fails
			} else if p.acc.split(d.tp) {
				p.signal() // the halves go at once
				continue
			}
		}
		attempts := p.acc.attemptsOf(d.tp) + 1
		retry := retriable && p.rpcCtx.Err() == nil &&
			(p.cfg.Retries == 0 || (p.cfg.Retries > 0 && attempts <= p.cfg.Retries)) &&
			now.Before(d.batches[0].deadline)
		if retriable {
			refresh = true
		}
		back := time.Duration(0)
		if !single {
			back = p.backoff(attempts)
		}
		failed := p.acc.failed(d.tp, err, retry, now.Add(back), single)
		if !retry && retriable && !single && !now.Before(d.batches[0].deadline) {
			err = fmt.Errorf("%w: records for %s-%d not acknowledged within DeliveryTimeout %v (%d attempts): %w",
				ErrDeliveryTimeout, d.tp.topic, d.tp.partition, p.cfg.DeliveryTimeout, attempts, err)
		}
		for _, b := range failed {
			p.complete(b, -1, -1, err)
		}
	}
	if refresh {
		p.requestRefresh()
	}
}

// complete settles a batch: its futures see offset base+i or err. The
// last child of a split batch completes its parent too (before its own
// done is closed, so a Flush that saw the child sees the parent done).
func (p *Producer) complete(b *batch, base, appendTime int64, err error) {
	b.base, b.appendTime, b.err = base, appendTime, err
	p.acc.recycle(b)
	for c := b; c.parent != nil; c = c.parent {
		c.parent.left--
		if c.parent.left > 0 {
			break
		}
		close(c.parent.done)
		p.mem.release(c.parent.bytes)
	}
	close(b.done)
	p.mem.release(b.bytes)
}
