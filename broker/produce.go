package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

// defaultProduceTimeout applies when a request sets no timeout_ms.
const defaultProduceTimeout = 30 * time.Second

// Produce appends each partition's batches on its leader and answers by
// acks: 0 and 1 after the append, -1 (all) once the ISR has the records
// (a delayed operation in the produce purgatory, woken by HW moves).
func (s *service) Produce(ctx context.Context, req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	acks := int(req.GetAcks())
	resp := &pb.ProduceResponse{}
	var waits []*produceWait
	for _, t := range req.GetTopics() {
		tr := &pb.ProduceTopicResult{Topic: t.GetTopic()}
		resp.Topics = append(resp.Topics, tr)
		for _, pp := range t.GetPartitions() {
			r := &pb.ProducePartitionResult{Partition: pp.GetPartition(), BaseOffset: -1, LogAppendTimeMs: -1, LogStartOffset: -1}
			tr.Partitions = append(tr.Partitions, r)
			info, p, err := s.appendPartition(t.GetTopic(), pp, acks)
			if err != nil {
				s.fail(r, t.GetTopic(), err)
				continue
			}
			p.stats.countIn(info)
			r.BaseOffset, r.LogStartOffset = info.FirstOffset, p.Log().LogStartOffset()
			// The append has woken the fetches waiting for data
			// (Partition.published).
			tp := storage.TopicPartition{Topic: t.GetTopic(), Partition: pp.GetPartition()}
			if acks == -1 {
				waits = append(waits, &produceWait{p: p, tp: tp, required: info.LastOffset + 1, result: r})
			}
		}
	}
	if len(waits) == 0 {
		return resp, nil
	}
	timeout := time.Duration(req.GetTimeoutMs()) * time.Millisecond
	if timeout <= 0 {
		timeout = defaultProduceTimeout
	}
	op := &delayedProduce{waits: waits, done: make(chan struct{})}
	keys := make([]storage.TopicPartition, len(waits))
	for i, w := range waits {
		keys[i] = w.tp
	}
	s.produces.TryCompleteElseWatch(op, keys, timeout)
	select {
	case <-op.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	img := s.b.image.Load()
	for _, w := range waits {
		if w.result.ErrorCode != pb.ErrorCode_NONE {
			w.result.CurrentLeader = leaderOf(img, w.tp.Topic, w.tp.Partition)
		}
	}
	return resp, nil
}

func (s *service) fail(r *pb.ProducePartitionResult, topic string, err error) {
	r.ErrorCode, r.ErrorMessage = codeOf(err), err.Error()
	if r.ErrorCode == pb.ErrorCode_NOT_LEADER_OR_FOLLOWER || r.ErrorCode == pb.ErrorCode_FENCED_LEADER_EPOCH {
		r.CurrentLeader = leaderOf(s.b.image.Load(), topic, r.Partition)
	}
}

// appendPartition validates and appends one partition's records.
func (s *service) appendPartition(topic string, pp *pb.ProducePartition, acks int) (storage.AppendInfo, *Partition, error) {
	if acks != 0 && acks != 1 && acks != -1 {
		return storage.AppendInfo{}, nil, fmt.Errorf("%w: %d (want 0, 1 or -1)", ErrInvalidRequiredAcks, acks)
	}
	p, err := s.lookup(topic, pp.GetPartition())
	if err != nil {
		return storage.AppendInfo{}, nil, err
	}
	batches := pp.GetRecords()
	switch {
	case len(batches) > 0 && len(pp.GetPlainRecords()) > 0:
		return storage.AppendInfo{}, nil, fmt.Errorf("%w: both records and plain_records set", record.ErrCorruptRecord)
	case len(batches) == 0 && len(pp.GetPlainRecords()) == 0:
		return storage.AppendInfo{}, nil, fmt.Errorf("%w: no records", record.ErrCorruptRecord)
	case len(batches) == 0:
		if batches, err = buildBatch(pp.GetPlainRecords()); err != nil {
			return storage.AppendInfo{}, nil, err
		}
	}
	info, err := p.AppendAsLeader(batches, acks)
	return info, p, err
}

var builders = sync.Pool{New: func() any { return record.NewBuilder(record.BatchOptions{}) }}

// newBatch builds one uncompressed RecordBatch v2 with a pooled builder:
// add appends the records. The answer is a copy the caller owns.
func newBatch(add func(bl *record.Builder) error) ([]byte, error) {
	bl := builders.Get().(*record.Builder)
	defer builders.Put(bl)
	bl.Reset(record.BatchOptions{})
	if err := add(bl); err != nil {
		return nil, err
	}
	b, err := bl.Build()
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), b...), nil
}

// buildBatch turns plain records (any language's generated stubs) into one
// RecordBatch v2.
func buildBatch(recs []*pb.Record) ([]byte, error) {
	b, err := newBatch(func(bl *record.Builder) error {
		now := time.Now().UnixMilli()
		var headers []record.Header
		for _, r := range recs {
			ts := now
			if r.TimestampMs != nil {
				ts = r.GetTimestampMs()
			}
			headers = headers[:0]
			for _, h := range r.GetHeaders() {
				headers = append(headers, record.Header{Key: h.GetKey(), Value: h.Value})
			}
			if err := bl.Append(ts, r.Key, r.Value, headers); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", record.ErrCorruptRecord, err)
	}
	return b, nil
}

// produceWait is one partition of an acks=all request.
type produceWait struct {
	p        *Partition
	tp       storage.TopicPartition
	required int64 // the HW that commits the request's records
	result   *pb.ProducePartitionResult
	done     bool
}

// delayedProduce completes when every partition's HW has reached its
// records (or failed: lost leadership, ISR below min.insync.replicas).
type delayedProduce struct {
	waits []*produceWait
	done  chan struct{}
}

func (d *delayedProduce) TryComplete() bool {
	for _, w := range d.waits {
		if w.done {
			continue
		}
		ok, err := w.p.CheckAcksAll(w.required)
		if err != nil {
			w.result.ErrorCode, w.result.ErrorMessage = codeOf(err), err.Error()
			w.done = true
			continue
		}
		if !ok {
			return false
		}
		w.done = true
	}
	return true
}

func (d *delayedProduce) OnComplete() { close(d.done) }

func (d *delayedProduce) OnExpiration() {
	for _, w := range d.waits {
		if !w.done {
			w.result.ErrorCode = pb.ErrorCode_REQUEST_TIMED_OUT
			w.result.ErrorMessage = fmt.Sprintf("broker: records up to offset %d not replicated to the ISR within the timeout", w.required-1)
		}
	}
	close(d.done)
}
