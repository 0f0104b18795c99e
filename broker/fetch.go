package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

const (
	defaultPartitionMaxBytes = 1 << 20
	defaultFetchMaxBytes     = 50 << 20
	maxFetchWait             = 30 * time.Second
)

// Fetch serves consumers (replica_id < 0: up to the HW) and followers
// (replica_id = their broker id: up to the log end; each fetch reports their
// log end offset, which moves the HW and the ISR). It long-polls up to
// max_wait_ms until min_bytes are available, in the fetch purgatory.
func (s *service) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	resp, bufs, err := s.fetchOwned(ctx, req)
	if err != nil {
		return nil, err
	}
	attachBuffers(resp, bufs)
	return resp, nil
}

// FetchStream answers each request on the stream as Fetch would, one at a
// time and in order; a request Fetch refuses ends the stream with that
// status. Followers fetch this way (fetcherSource.rpcFetch).
func (s *service) FetchStream(stream pb.BrokerService_FetchStreamServer) error {
	return serveFetchStream(stream, s.Fetch)
}

// serveFetchStream answers the stream's requests with fetch, in order, until
// the peer closes its side or fetch or the stream fails.
func serveFetchStream(stream pb.BrokerService_FetchStreamServer, fetch func(context.Context, *pb.FetchRequest) (*pb.FetchResponse, error)) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := fetch(stream.Context(), req)
		if err != nil {
			return err
		}
		err = stream.Send(resp)
		wire.Discard(resp) // frees attached buffers unless the codec took them (see Subscribe)
		if err != nil {
			return err
		}
	}
}

// fetchOwned is Fetch returning the pooled buffers the response points into.
func (s *service) fetchOwned(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, [][]byte, error) {
	if req.GetMaxWaitMs() < 0 || req.GetMinBytes() < 0 || req.GetMaxBytes() < 0 {
		return nil, nil, statusInvalid("negative max_wait_ms, min_bytes or max_bytes")
	}
	if req.GetReplicaId() >= 0 {
		s.recordFollowerFetch(req)
	}
	resp, bufs, size := s.readFetch(req)
	wait := min(time.Duration(req.GetMaxWaitMs())*time.Millisecond, maxFetchWait)
	if size >= int64(max(req.GetMinBytes(), 1)) || wait <= 0 || hasError(resp) {
		return resp, bufs, nil
	}
	putBuffers(bufs)
	op := &delayedFetch{s: s, req: req, minBytes: int64(max(req.GetMinBytes(), 1)), done: make(chan struct{})}
	var keys []storage.TopicPartition
	for _, t := range req.GetTopics() {
		for _, p := range t.GetPartitions() {
			keys = append(keys, storage.TopicPartition{Topic: t.GetTopic(), Partition: p.GetPartition()})
		}
	}
	s.fetches.TryCompleteElseWatch(op, keys, wait)
	select {
	case <-op.done:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	resp, bufs, _ = s.readFetch(req)
	return resp, bufs, nil
}

// attachBuffers hands the pooled record buffers to the wire codec, which
// returns them to the pool once gRPC has copied them out.
func attachBuffers[M wire.Message](m M, bufs [][]byte) {
	for _, b := range bufs {
		wire.AttachPooled(m, b)
	}
}

func putBuffers(bufs [][]byte) {
	for _, b := range bufs {
		storage.PutBuffer(b)
	}
}

// recordFollowerFetch tells each partition's leader state where the follower's
// log ends; a moved HW wakes waiting produces and consumer fetches.
func (s *service) recordFollowerFetch(req *pb.FetchRequest) {
	for _, t := range req.GetTopics() {
		for _, fp := range t.GetPartitions() {
			p := s.b.replicas.get(t.GetTopic(), fp.GetPartition())
			if p == nil {
				continue
			}
			moved, prop, err := p.UpdateFollowerFetch(req.GetReplicaId(), fp.GetFetchOffset(), req.GetReplicaEpoch())
			if err != nil {
				continue // readFetch reports it
			}
			if moved {
				s.partitionMoved(storage.TopicPartition{Topic: t.GetTopic(), Partition: fp.GetPartition()})
			}
			if prop != nil {
				go s.b.proposeISR(prop)
			}
		}
	}
}

func hasError(resp *pb.FetchResponse) bool {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != pb.ErrorCode_NONE {
				return true
			}
		}
	}
	return false
}

// readFetch reads every partition of req and returns the response, the
// pooled buffers its records fields point into (the caller attaches them to
// the message it sends, or puts them back), and the number of record bytes.
// Record bytes are read once (pread into a pooled buffer); the wire codec
// sends them without another copy.
func (s *service) readFetch(req *pb.FetchRequest) (*pb.FetchResponse, [][]byte, int64) {
	resp := &pb.FetchResponse{}
	var bufs [][]byte
	budget := int64(req.GetMaxBytes())
	if budget <= 0 {
		budget = defaultFetchMaxBytes
	}
	var total int64
	img := s.b.image.Load()
	for _, t := range req.GetTopics() {
		tr := &pb.FetchTopicResult{Topic: t.GetTopic()}
		resp.Topics = append(resp.Topics, tr)
		for _, fp := range t.GetPartitions() {
			r := &pb.FetchPartitionResult{Partition: fp.GetPartition(), HighWatermark: -1, LastStableOffset: -1, LogStartOffset: -1, PreferredReadReplica: -1}
			tr.Partitions = append(tr.Partitions, r)
			p, err := s.lookup(t.GetTopic(), fp.GetPartition())
			var res FetchResult
			if err == nil {
				max := int64(fp.GetPartitionMaxBytes())
				if max <= 0 {
					max = defaultPartitionMaxBytes
				}
				if total > 0 {
					max = min(max, budget-total) // the first partition may exceed the budget by one batch
				}
				if max > 0 {
					res, err = p.ReadForFetch(fp.GetFetchOffset(), int(max), fp.GetCurrentLeaderEpoch(), req.GetReplicaId())
				} else {
					res, err = p.ReadForFetch(fp.GetFetchOffset(), 0, fp.GetCurrentLeaderEpoch(), req.GetReplicaId())
				}
			}
			if err != nil {
				r.ErrorCode, r.ErrorMessage = codeOf(err), err.Error()
				switch r.ErrorCode {
				case pb.ErrorCode_NOT_LEADER_OR_FOLLOWER, pb.ErrorCode_FENCED_LEADER_EPOCH, pb.ErrorCode_UNKNOWN_LEADER_EPOCH:
					r.CurrentLeader = leaderOf(img, t.GetTopic(), fp.GetPartition())
				case pb.ErrorCode_OFFSET_OUT_OF_RANGE:
					r.HighWatermark, r.LogStartOffset = p.HighWatermark(), p.Log().LogStartOffset()
				}
				continue
			}
			r.HighWatermark, r.LastStableOffset, r.LogStartOffset = res.HighWatermark, res.HighWatermark, res.LogStartOffset
			r.NextFetchOffset = fp.GetFetchOffset()
			if res.Region.Len == 0 {
				continue
			}
			buf, err := res.Region.Bytes(storage.GetBuffer(int(res.Region.Len)))
			if err != nil {
				r.ErrorCode, r.ErrorMessage = codeOf(err), err.Error()
				continue
			}
			if req.GetDecode() {
				r.DecodedRecords, r.NextFetchOffset, err = decodeRecords(buf, fp.GetFetchOffset(), req.GetReplicaId() < 0, res.HighWatermark)
				storage.PutBuffer(buf)
				if err != nil {
					r.ErrorCode, r.ErrorMessage = codeOf(err), err.Error()
				}
				p.stats.countOut(req.GetReplicaId() >= 0, res.Region.Len, int64(len(r.DecodedRecords)))
				total += res.Region.Len
				continue
			}
			r.Records = buf
			var records int64
			r.NextFetchOffset, records = nextOffsetIn(buf, fp.GetFetchOffset())
			p.stats.countOut(req.GetReplicaId() >= 0, int64(len(buf)), records)
			bufs = append(bufs, buf)
			total += int64(len(buf))
		}
	}
	return resp, bufs, total
}

// nextOffsetIn is the offset after the last whole batch in buf, and the
// number of records in those batches.
func nextOffsetIn(buf []byte, from int64) (int64, int64) {
	next, records := from, int64(0)
	for len(buf) > 0 {
		b, err := record.Parse(buf)
		if err != nil {
			break
		}
		next = max(next, b.NextOffset())
		records += int64(b.RecordCount())
		buf = buf[len(b):]
	}
	return next, records
}

// decodeRecords decodes the whole batches in buf into records at or after
// from (and, for a consumer, below limit: the high watermark the answer
// reports). The offset returned is where the next fetch starts: after the
// last batch decoded, or limit when a batch crosses it — the region read may
// end past the reported HW (the HW moved while it was read), and what lies
// beyond must be fetched again, not skipped.
func decodeRecords(buf []byte, from int64, consumer bool, limit int64) ([]*pb.Record, int64, error) {
	var out []*pb.Record
	var it record.Iterator
	next := from
	for len(buf) > 0 {
		b, err := record.Parse(buf)
		if err != nil {
			break // a trailing partial batch
		}
		buf = buf[len(b):]
		if consumer && b.NextOffset() > limit {
			if b.BaseOffset() >= limit {
				return out, max(next, limit), nil
			}
			buf = nil // the last batch decoded, up to limit
		}
		if b.IsControl() {
			next = b.NextOffset()
			continue
		}
		if err := it.Reset(b); err != nil {
			return out, next, err
		}
		tsType := pb.TimestampType_TIMESTAMP_TYPE_CREATE_TIME
		if b.LogAppendTime() {
			tsType = pb.TimestampType_TIMESTAMP_TYPE_LOG_APPEND_TIME
		}
		for it.Next() {
			r := it.Record()
			if r.Offset < from || (consumer && r.Offset >= limit) {
				continue
			}
			ts := r.Timestamp
			rec := &pb.Record{Offset: r.Offset, TimestampMs: &ts, TimestampType: tsType, LeaderEpoch: b.PartitionLeaderEpoch()}
			if r.Key != nil {
				rec.Key = append([]byte{}, r.Key...)
			}
			if r.Value != nil {
				rec.Value = append([]byte{}, r.Value...)
			}
			for k, v := range r.Headers() {
				h := &pb.RecordHeader{Key: string(k)}
				if v != nil {
					h.Value = append([]byte{}, v...)
				}
				rec.Headers = append(rec.Headers, h)
			}
			out = append(out, rec)
		}
		if err := it.Err(); err != nil {
			return out, next, err
		}
		next = b.NextOffset()
		if consumer {
			next = min(next, max(limit, from))
		}
	}
	return out, next, nil
}

// delayedFetch completes once min_bytes are readable (or a partition errors).
type delayedFetch struct {
	s        *service
	req      *pb.FetchRequest
	minBytes int64
	done     chan struct{}
}

func (d *delayedFetch) TryComplete() bool {
	var n int64
	for _, t := range d.req.GetTopics() {
		for _, fp := range t.GetPartitions() {
			p := d.s.b.replicas.get(t.GetTopic(), fp.GetPartition())
			if p == nil {
				return true // moved away: answer with the error now
			}
			res, err := p.ReadForFetch(fp.GetFetchOffset(), int(max(d.minBytes, 1)), fp.GetCurrentLeaderEpoch(), d.req.GetReplicaId())
			if err != nil {
				return true
			}
			n += res.Region.Len
			if n >= d.minBytes {
				return true
			}
		}
	}
	return false
}

func (d *delayedFetch) OnComplete()   { close(d.done) }
func (d *delayedFetch) OnExpiration() { close(d.done) }

// Subscribe streams a consumer's partitions from their start offsets as
// records arrive: a loop of long-poll fetches up to the HW.
func (s *service) Subscribe(req *pb.SubscribeRequest, stream pb.BrokerService_SubscribeServer) error {
	fetch := &pb.FetchRequest{ReplicaId: -1, MaxWaitMs: 500, MinBytes: 1, MaxBytes: req.GetMaxBytes(), Decode: req.GetDecode()}
	offsets := map[storage.TopicPartition]*pb.FetchPartition{}
	for _, t := range req.GetTopics() {
		ft := &pb.FetchTopic{Topic: t.GetTopic()}
		for _, sp := range t.GetPartitions() {
			fp := &pb.FetchPartition{Partition: sp.GetPartition(), FetchOffset: sp.GetStartOffset(),
				CurrentLeaderEpoch: sp.GetCurrentLeaderEpoch(), PartitionMaxBytes: req.GetPartitionMaxBytes()}
			ft.Partitions = append(ft.Partitions, fp)
			offsets[storage.TopicPartition{Topic: t.GetTopic(), Partition: sp.GetPartition()}] = fp
		}
		fetch.Topics = append(fetch.Topics, ft)
	}
	if len(offsets) == 0 {
		return statusInvalid("subscribe to no partitions")
	}
	ctx := stream.Context()
	for ctx.Err() == nil {
		resp, bufs, err := s.fetchOwned(ctx, fetch)
		if err != nil {
			return err
		}
		send := false
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				fp := offsets[storage.TopicPartition{Topic: t.Topic, Partition: p.Partition}]
				if p.ErrorCode != pb.ErrorCode_NONE {
					send = true // the client learns why, then the stream ends
					continue
				}
				if len(p.Records) > 0 || len(p.DecodedRecords) > 0 {
					fp.FetchOffset = p.NextFetchOffset
					send = true
				}
			}
		}
		if !send {
			putBuffers(bufs)
			continue
		}
		out := &pb.SubscribeResponse{Topics: resp.Topics, NodeEndpoints: resp.NodeEndpoints}
		attachBuffers(out, bufs)
		err = stream.Send(out)
		// Free now if the stream's codec copied (not ours); no-op if ours took them.
		wire.Discard(out)
		if err != nil {
			return err
		}
		if hasError(resp) {
			return fmt.Errorf("broker: subscription ended by a partition error")
		}
	}
	return ctx.Err()
}
