package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stratalog/strata/broker/wire"
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
	pidBusy, pidFailures, pidRetryAt := false, 0, time.Time{}
	for {
		now := time.Now()
		if m := p.meta.Load(); m != nil && !pidBusy && !now.Before(pidRetryAt) && p.acc.needsProducerID() && len(m.Brokers) > 0 {
			pidBusy = true
			p.wg.Add(1)
			go p.initProducerID(m, pidFailures)
		}
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
			if e.acked {
				p.complete(e.b, e.b.ackBase, e.b.ackTime, nil)
				continue
			}
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
		case r := <-p.pids:
			pidBusy = false
			if r.err == nil {
				p.acc.setProducerID(r.id)
				pidFailures = 0
			} else {
				pidFailures++
				pidRetryAt = time.Now().Add(p.backoff(pidFailures))
				p.requestRefresh()
			}
		case <-p.stop:
			// Close: what is in flight finishes (or is cancelled by
			// abort); what is queued fails.
			for ; total > 0; total-- {
				p.settle(<-p.results)
			}
			acked, rest := p.acc.close()
			for _, b := range acked {
				p.complete(b, b.ackBase, b.ackTime, nil)
			}
			for _, b := range rest {
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

// pidResult is an InitProducerId answer.
type pidResult struct {
	id  int64
	err error
}

// initProducerID asks a broker (a different one after each failure) for a
// producer id and hands the answer to the sender.
func (p *Producer) initProducerID(m *Metadata, failures int) {
	defer p.wg.Done()
	ids := make([]int32, 0, len(m.Brokers))
	for id := range m.Brokers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	r := pidResult{}
	bc, err := p.c.Broker(m.Brokers[ids[failures%len(ids)]].Addr)
	if err == nil {
		ctx, cancel := context.WithTimeout(p.rpcCtx, p.cfg.RequestTimeout)
		var resp *pb.InitProducerIdResponse
		if resp, err = bc.InitProducerId(ctx, &pb.InitProducerIdRequest{}); err == nil {
			r.id = resp.GetProducerId()
		}
		cancel()
	}
	r.err = err
	p.pids <- r // buffered: one call at a time
}

// produce sends one request and hands the answer to the sender.
//
// The request carries the built batches by reference (wire.ProduceRequest):
// neither concatenated nor copied by protobuf, gRPC reads them straight out
// of the builders. Each batch is pinned for the request (builderHold) until
// gRPC has let go of it, which may be after Invoke returns; meanwhile its
// builder is not reused and its bytes are not written in place.
func (p *Producer) produce(addr string, parts []drained) {
	r := &produceResult{addr: addr, parts: parts}
	defer func() { p.results <- r }()
	req := &wire.ProduceRequest{Acks: p.cfg.Acks.Wire(), TimeoutMs: int32(p.cfg.RequestTimeout / time.Millisecond)}
	// Partitions in one order in every request: a leader appends them in
	// request order, and a batch ahead of its sequence waits there for an
	// earlier request; the same order in all requests means two requests
	// never wait for each other.
	slices.SortFunc(parts, func(a, b drained) int {
		if c := strings.Compare(a.tp.topic, b.tp.topic); c != 0 {
			return c
		}
		return int(a.tp.partition) - int(b.tp.partition)
	})
	var pinned []*batch
	for _, d := range parts {
		batches := make([][]byte, len(d.batches))
		for i, b := range d.batches {
			if err := d.seal(b, i); err != nil {
				r.err = &Error{Code: pb.ErrorCode_CORRUPT_MESSAGE, Message: err.Error()}
				p.unpin(pinned)
				return
			}
			b.hold.pin()
			pinned = append(pinned, b)
			batches[i] = b.built
		}
		if n := len(req.Topics); n == 0 || req.Topics[n-1].Topic != d.tp.topic { // parts are sorted by topic
			req.Topics = append(req.Topics, wire.ProduceTopic{Topic: d.tp.topic})
		}
		t := &req.Topics[len(req.Topics)-1]
		t.Partitions = append(t.Partitions, wire.ProducePartition{Partition: d.tp.partition, Batches: batches})
	}
	req.OnRelease(func() { p.unpin(pinned) })
	defer req.Settle()
	cc, err := p.c.conn(addr)
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
	if p.onRequest != nil {
		p.onRequest(req)
	}
	resp := &pb.ProduceResponse{}
	if err := cc.Invoke(ctx, pb.BrokerService_Produce_FullMethodName, req, resp, wire.CallOption()); err != nil {
		r.err = err
		return
	}
	r.resp = resp
}

// seal makes b.built the bytes to send as batch i of d: built on its first
// send, with d's producer fields (idempotent); on a resend, restamped if
// they changed (after a sequence reset). The batch is not pinned by d's
// request yet; if an earlier request may still be reading its bytes, the
// new fields go into a copy.
func (d drained) seal(b *batch, i int) error {
	if b.built == nil {
		if d.producerID >= 0 {
			b.builder.SetProducer(d.producerID, d.epoch, d.seqs[i])
		}
		built, err := b.builder.Build()
		if err != nil {
			return err
		}
		b.built = built
		return nil
	}
	if d.producerID >= 0 && (b.built.ProducerID() != d.producerID || b.built.ProducerEpoch() != d.epoch || b.built.BaseSequence() != d.seqs[i]) {
		if b.hold.pinned() {
			b.built = slices.Clone(b.built)
		}
		b.built.SetProducer(d.producerID, d.epoch, d.seqs[i])
	}
	return nil
}

// unpin drops a request's references to its batches (see builderHold).
func (p *Producer) unpin(batches []*batch) {
	for _, b := range batches {
		b.hold.drop(p.acc.builders)
	}
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
			if p.cfg.Acks == AcksNone {
				base = -1
			}
			for _, b := range p.acc.succeeded(d, base, pr.GetLogAppendTimeMs()) {
				p.complete(b, b.ackBase, b.ackTime, nil)
			}
			continue
		}
		var e *Error
		isErr := errors.As(err, &e)
		retriable := isErr && e.Retriable
		kind := failRetry
		counted := true
		switch {
		case isErr && e.Code == pb.ErrorCode_MESSAGE_TOO_LARGE && (len(d.batches) > 1 || d.batches[0].count > 1):
			// Resend the batches one by one, or split the one batch in
			// halves (as Kafka's producer does): only a record too large by
			// itself fails.
			retriable, kind = true, failSplit
		case isErr && p.idempotent && (e.Code == pb.ErrorCode_OUT_OF_ORDER_SEQUENCE_NUMBER || e.Code == pb.ErrorCode_UNKNOWN_PRODUCER_ID):
			// A gap before this unit: an earlier one failed (it goes
			// again first), or, at the head, the leader lost the
			// producer's state (retention, expiry): start the sequence over.
			retriable = true
			if p.acc.isHead(d) {
				kind = failReset
			} else {
				counted = false
			}
		}
		attempts := p.acc.attemptsOf(d)
		if counted {
			attempts++
		}
		retry := retriable && p.rpcCtx.Err() == nil &&
			(p.cfg.Retries == 0 || !counted || (p.cfg.Retries > 0 && attempts <= p.cfg.Retries)) &&
			now.Before(d.batches[0].deadline)
		if retriable {
			refresh = true
		}
		if !retry {
			kind = failForGood
		}
		back := time.Duration(0)
		if kind == failRetry || kind == failReset {
			back = p.backoff(max(attempts, 1))
		}
		failed, acked := p.acc.failed(d, err, kind, now.Add(back), counted)
		if !retry && retriable && !now.Before(d.batches[0].deadline) {
			err = fmt.Errorf("%w: records for %s-%d not acknowledged within DeliveryTimeout %v (%d attempts): %w",
				ErrDeliveryTimeout, d.tp.topic, d.tp.partition, p.cfg.DeliveryTimeout, attempts, err)
		}
		for _, b := range failed {
			p.complete(b, -1, -1, err)
		}
		for _, b := range acked {
			p.complete(b, b.ackBase, b.ackTime, nil)
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
