package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage/record"
)

// fetchSession is a Consumer's pipeline to one leader broker: a goroutine
// that loops
//
//	build one Fetch for every ready partition this broker leads
//	send it (long poll: FetchMinBytes / FetchMaxWait)
//	decode the raw batches into Records (copied once, off the caller's path)
//	move the partitions' fetch positions, hand the answer to out
//
// out has one slot, so the session fetches at most one answer ahead of the
// one waiting for Poll: the next Fetch is in flight while the caller works
// on the records the last Poll returned. A partition is in at most one
// Fetch at a time (consumerPart.inflight), so a partition that moves to
// another leader is never fetched twice.
type fetchSession struct {
	c     *Consumer
	addr  string
	out   chan *fetchResult
	wakeC chan struct{}

	// Guarded by Consumer.mu: the in-flight Fetch's cancel (nil when none),
	// and whether kickLocked used it.
	cancel context.CancelFunc
	kicked bool
}

// errFetchKicked: the Fetch was cancelled by kickLocked.
var errFetchKicked = errors.New("client: fetch superseded")

// fetchResult is one Fetch's answer, decoded.
type fetchResult struct {
	parts []fetchedPart
}

// fetchedPart is one partition's share of an answer: the records from
// offset from (fetched under gen) up to next.
type fetchedPart struct {
	tp      TopicPartition
	gen     uint64
	from    int64
	next    int64
	records []Record
}

// fetchAsk is a partition put in a Fetch.
type fetchAsk struct {
	p     *consumerPart
	from  int64
	gen   uint64
	epoch int32
}

func (c *Consumer) startSessionLocked(addr string) {
	s := &fetchSession{c: c, addr: addr, out: make(chan *fetchResult, 1), wakeC: make(chan struct{}, 1)}
	c.mu.sessions[addr] = s
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		s.run()
	}()
}

// kickLocked cancels the in-flight Fetch: a partition's position changed
// (Seek, Resume, a reset, a new leader), and the long poll would hold the
// new position back for up to FetchMaxWait. The cancelled Fetch's
// partitions are simply fetched again; nothing moved. Consumer.mu is held.
func (s *fetchSession) kickLocked() {
	if s.cancel != nil && !s.kicked {
		s.kicked = true
		s.cancel()
	}
}

func (s *fetchSession) wake() {
	select {
	case s.wakeC <- struct{}{}:
	default:
	}
}

func (s *fetchSession) run() {
	ctx := s.c.ctx
	backoff := time.Duration(0)
	var it record.Iterator
	for {
		if backoff > 0 {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
		}
		asks, fctx, cancel := s.ready(ctx)
		if len(asks) == 0 {
			cancel()
			select {
			case <-s.wakeC:
				continue
			case <-ctx.Done():
				return
			}
		}
		res, err := s.fetch(fctx, asks, &it)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errFetchKicked) {
			s.lost(asks, false)
			continue
		}
		if err != nil {
			// The broker is unreachable or refused the whole request: find
			// the partitions' leaders again.
			s.lost(asks, true)
			backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
			continue
		}
		backoff = 0
		if res == nil {
			continue
		}
		select {
		case s.out <- res:
			s.c.signal()
		case <-ctx.Done():
			return
		}
	}
}

// ready picks the partitions to fetch from this broker and marks them in
// flight; the Fetch runs under the returned context, which kickLocked can
// cancel.
func (s *fetchSession) ready(ctx context.Context) ([]fetchAsk, context.Context, context.CancelFunc) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	fctx, cancel := context.WithCancel(ctx)
	s.cancel, s.kicked = cancel, false
	var asks []fetchAsk
	for _, p := range c.mu.parts {
		if p.leader != s.addr || p.paused || p.inflight || p.err != nil || p.reset != resetNone || p.fetchPos < 0 {
			continue
		}
		p.inflight = true
		asks = append(asks, fetchAsk{p: p, from: p.fetchPos, gen: p.gen, epoch: p.leaderEpoch})
	}
	if len(asks) == 0 {
		s.cancel = nil
	}
	return asks, fctx, cancel
}

// lost marks partitions as needing a new leader lookup and clears their
// in-flight marks.
func (s *fetchSession) lost(asks []fetchAsk, leaderGone bool) {
	c := s.c
	c.mu.Lock()
	for _, a := range asks {
		a.p.inflight = false
		if leaderGone && a.p.leader == s.addr {
			a.p.leader = ""
			c.mu.needMeta = true
		}
	}
	c.mu.Unlock()
	c.signal()
}

// fetch sends one Fetch for asks and decodes the answer. It returns nil
// when no partition moved (a long poll that timed out, errors only).
func (s *fetchSession) fetch(ctx context.Context, asks []fetchAsk, it *record.Iterator) (*fetchResult, error) {
	c := s.c
	req := &pb.FetchRequest{
		ReplicaId: -1, ReplicaEpoch: -1,
		MaxWaitMs: int32(c.cfg.FetchMaxWait / time.Millisecond), MinBytes: c.cfg.FetchMinBytes, MaxBytes: c.cfg.FetchMaxBytes,
	}
	topics := map[string]*pb.FetchTopic{}
	index := map[TopicPartition]int{} // into asks
	for i, a := range asks {
		t := topics[a.p.tp.Topic]
		if t == nil {
			t = &pb.FetchTopic{Topic: a.p.tp.Topic}
			topics[a.p.tp.Topic] = t
			req.Topics = append(req.Topics, t)
		}
		t.Partitions = append(t.Partitions, &pb.FetchPartition{Partition: a.p.tp.Partition, FetchOffset: a.from,
			CurrentLeaderEpoch: a.epoch, PartitionMaxBytes: c.cfg.PartitionMaxBytes, LogStartOffset: -1, LastFetchedEpoch: -1})
		index[a.p.tp] = i
	}
	cc, err := c.cl.conn(s.addr)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout+c.cfg.FetchMaxWait)
	c.fetches.Add(1)
	// The answer stays in one pooled buffer, its records aliasing it, until
	// they are decoded (decodeFetched copies what it keeps).
	received := &wire.ReceivedFetch{}
	defer received.Release()
	err = cc.Invoke(rctx, pb.BrokerService_Fetch_FullMethodName, req, received, FetchCallOptions()...)
	resp := received.Response()
	cancel()
	c.mu.Lock()
	kicked := s.kicked
	s.cancel = nil
	c.mu.Unlock()
	if err != nil {
		if kicked {
			return nil, errFetchKicked
		}
		return nil, FromError(err)
	}

	type outcome struct {
		part  fetchedPart
		hw    int64
		code  pb.ErrorCode
		err   error
		moved bool
	}
	outs := make([]outcome, len(asks))
	answered := make([]bool, len(asks))
	for _, t := range resp.Topics {
		for _, r := range t.Partitions {
			i, ok := index[TopicPartition{Topic: t.Topic, Partition: r.Partition}]
			if !ok || answered[i] {
				continue
			}
			answered[i] = true
			a := asks[i]
			o := &outcome{code: r.ErrorCode, hw: r.HighWatermark}
			o.part = fetchedPart{tp: a.p.tp, gen: a.gen, from: a.from, next: a.from}
			if r.ErrorCode == pb.ErrorCode_NONE {
				o.part.records, o.part.next, o.err = decodeFetched(it, a.p.tp, r.Records, a.from, r.HighWatermark)
				o.moved = o.part.next > a.from
			} else {
				o.err = codeError(r.ErrorCode, r.ErrorMessage)
				if r.ErrorCode == pb.ErrorCode_OFFSET_OUT_OF_RANGE {
					o.err = &Error{Code: r.ErrorCode, Message: fmt.Sprintf("%s: fetch offset %d is outside the log [%d, %d]: Seek to a valid offset",
						tpString(a.p.tp), a.from, r.LogStartOffset, r.HighWatermark)}
				}
			}
			outs[i] = *o
		}
	}

	res := &fetchResult{}
	needMeta := false
	c.mu.Lock()
	for i, a := range asks {
		p := a.p
		p.inflight = false
		if !answered[i] {
			continue // not in the answer: ask again
		}
		o := &outs[i]
		if o.hw >= 0 {
			p.hw = o.hw
		}
		current := c.mu.parts[p.tp] == p && p.gen == a.gen && p.fetchPos == a.from
		switch {
		case o.code == pb.ErrorCode_NONE && o.err == nil:
			if current && o.moved {
				p.fetchPos = o.part.next
				res.parts = append(res.parts, o.part)
			}
		case o.code == pb.ErrorCode_NONE:
			// Records that fail their checks: hand over what decoded, then
			// stop the partition with the error (Poll returns it).
			if current {
				p.fetchPos = o.part.next
				if len(o.part.records) > 0 {
					res.parts = append(res.parts, o.part)
				}
				p.err = o.err
			}
		case o.code == pb.ErrorCode_OFFSET_OUT_OF_RANGE:
			if current {
				if c.cfg.AutoOffsetReset == OffsetResetNone {
					p.err = o.err
				} else {
					p.seekLocked(-1)
					p.reset = c.defaultResetLocked()
				}
			}
		case retriableErr(o.err):
			// NOT_LEADER_OR_FOLLOWER, FENCED / UNKNOWN_LEADER_EPOCH, ...: the
			// position stays; the partition goes to whoever leads it now.
			if p.leader == s.addr {
				p.leader = ""
				needMeta = true
			}
		default:
			if current {
				p.err = o.err
			}
		}
	}
	if needMeta {
		c.mu.needMeta = true
	}
	c.mu.Unlock()
	if needMeta || len(res.parts) == 0 {
		c.signal()
	}
	if len(res.parts) == 0 {
		return nil, nil
	}
	return res, nil
}

// recordsIn counts the records of first and of the whole batches in rest
// (headers only), to size a partition's records once.
func recordsIn(first record.Batch, rest []byte) int {
	n := int(first.RecordCount())
	for len(rest) > 0 {
		b, err := record.Parse(rest)
		if err != nil {
			break
		}
		n += int(b.RecordCount())
		rest = rest[len(b):]
	}
	return n
}

// decodeFetched decodes the raw batches of one partition's answer: records
// from offset from on and below the high watermark hw, control batches
// skipped, a trailing partial batch dropped. next is the offset to fetch
// next. Key, value and header bytes are copied into a few shared chunks
// (the Iterator's buffers are reused), so each record costs one copy and
// no allocation of its own beyond its headers.
func decodeFetched(it *record.Iterator, tp TopicPartition, buf []byte, from, hw int64) (recs []Record, next int64, err error) {
	next = from
	var arena []byte
	alloc := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		if len(b) > 8<<10 {
			return append([]byte(nil), b...)
		}
		if cap(arena)-len(arena) < len(b) {
			arena = make([]byte, 0, 64<<10)
		}
		n := len(arena)
		arena = append(arena, b...)
		return arena[n:len(arena):len(arena)]
	}
	for len(buf) > 0 {
		b, err := record.Parse(buf)
		if errors.Is(err, record.ErrShortBatch) {
			break // a trailing partial batch: fetched whole next time
		}
		if err != nil {
			return recs, next, &Error{Code: pb.ErrorCode_CORRUPT_MESSAGE, Message: fmt.Sprintf("%s at offset %d: %v", tpString(tp), next, err)}
		}
		buf = buf[len(b):]
		if b.NextOffset() <= next {
			continue // wholly before the fetch offset
		}
		if hw >= 0 && b.BaseOffset() >= hw {
			break // never past the high watermark
		}
		if err := b.Validate(); err != nil {
			return recs, next, &Error{Code: pb.ErrorCode_CORRUPT_MESSAGE, Message: fmt.Sprintf("%s batch at offset %d: %v", tpString(tp), b.BaseOffset(), err)}
		}
		if b.IsControl() {
			next = b.NextOffset()
			continue
		}
		if err := it.Reset(b); err != nil {
			return recs, next, &Error{Code: pb.ErrorCode_CORRUPT_MESSAGE, Message: fmt.Sprintf("%s batch at offset %d: %v", tpString(tp), b.BaseOffset(), err)}
		}
		if recs == nil {
			recs = make([]Record, 0, recordsIn(b, buf))
		}
		keep := len(recs) // on a bad record, drop the batch's records already decoded
		epoch := b.PartitionLeaderEpoch()
		for it.Next() {
			r := it.Record()
			if r.Offset < next {
				continue // the batch starts before the fetch offset
			}
			if hw >= 0 && r.Offset >= hw {
				break
			}
			rec := Record{Topic: tp.Topic, Partition: tp.Partition, Offset: r.Offset, Key: alloc(r.Key), Value: alloc(r.Value),
				Timestamp: time.UnixMilli(r.Timestamp), LeaderEpoch: epoch}
			if r.HeaderCount > 0 {
				rec.Headers = make([]Header, 0, r.HeaderCount)
				h := r.HeaderIter()
				for h.Next() {
					rec.Headers = append(rec.Headers, Header{Key: string(h.Key), Value: alloc(h.Value)})
				}
			}
			recs = append(recs, rec)
		}
		if err := it.Err(); err != nil {
			return recs[:keep], next, &Error{Code: pb.ErrorCode_CORRUPT_MESSAGE, Message: fmt.Sprintf("%s batch at offset %d: %v", tpString(tp), b.BaseOffset(), err)}
		}
		next = b.NextOffset()
		if hw >= 0 && next > hw {
			next = hw // records at or past hw come again in a later fetch
		}
	}
	return recs, next, nil
}
