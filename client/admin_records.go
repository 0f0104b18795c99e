package client

import (
	"context"
	"errors"
	"sort"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// OffsetSpec says which offset ListOffsets looks up: OffsetEarliest,
// OffsetLatest, or (OffsetForTime) the first offset at or after a time.
type OffsetSpec int64

const (
	// OffsetEarliest is the log start offset.
	OffsetEarliest OffsetSpec = -2
	// OffsetLatest is the high watermark: the offset the next consumed
	// record will get.
	OffsetLatest OffsetSpec = -1
)

// OffsetForTime is the spec of the first offset whose timestamp is at or
// after t.
func OffsetForTime(t time.Time) OffsetSpec { return OffsetSpec(max(0, t.UnixMilli())) }

// ListOffsetsResult is one partition's answer.
type ListOffsetsResult struct {
	TopicPartition
	// Offset is -1 when no record has a timestamp at or after the one asked.
	Offset      int64
	Timestamp   int64 // ms since the Unix epoch of the record found; -1 for earliest / latest
	LeaderEpoch int32 // -1 unknown
	Err         error
}

// ListOffsets looks up offsets on the partitions' leaders, retrying after a
// metadata refresh when leadership moved. Results are sorted by topic and
// partition.
func (a *Admin) ListOffsets(ctx context.Context, specs map[TopicPartition]OffsetSpec) ([]ListOffsetsResult, error) {
	if len(specs) == 0 {
		return nil, invalid("no partitions to list the offsets of")
	}
	for tp, s := range specs {
		if s < OffsetEarliest {
			return nil, invalid("%s: offset spec %d: want OffsetEarliest, OffsetLatest or OffsetForTime", tp.name(), s)
		}
	}
	res := map[TopicPartition]*ListOffsetsResult{}
	tps := make([]TopicPartition, 0, len(specs))
	for tp := range specs {
		tps = append(tps, tp)
		res[tp] = &ListOffsetsResult{TopicPartition: tp, Offset: -1, Timestamp: -1, LeaderEpoch: -1}
	}
	errs := a.routeToLeaders(ctx, tps, func(ctx context.Context, bc pb.BrokerServiceClient, part []TopicPartition, epochs []int32) (map[TopicPartition]error, error) {
		req := &pb.ListOffsetsRequest{ReplicaId: -1}
		idx := map[string]*pb.ListOffsetsTopic{}
		for i, tp := range part {
			t := idx[tp.Topic]
			if t == nil {
				t = &pb.ListOffsetsTopic{Topic: tp.Topic}
				idx[tp.Topic] = t
				req.Topics = append(req.Topics, t)
			}
			t.Partitions = append(t.Partitions, &pb.ListOffsetsPartition{Partition: tp.Partition, CurrentLeaderEpoch: epochs[i], TimestampMs: int64(specs[tp])})
		}
		resp, err := bc.ListOffsets(ctx, req)
		if err != nil {
			return nil, err
		}
		out := map[TopicPartition]error{}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				tp := TopicPartition{t.Topic, p.Partition}
				r := res[tp]
				if r == nil {
					continue
				}
				out[tp] = itemError(p.ErrorCode, p.ErrorMessage)
				if p.ErrorCode == pb.ErrorCode_NONE {
					r.Offset, r.Timestamp, r.LeaderEpoch = p.Offset, p.TimestampMs, p.LeaderEpoch
				}
			}
		}
		return out, nil
	})
	out := make([]ListOffsetsResult, 0, len(res))
	for tp, r := range res {
		r.Err = errs[tp]
		out = append(out, *r)
	}
	sortTopicPartitions(out, func(r ListOffsetsResult) TopicPartition { return r.TopicPartition })
	return out, nil
}

// DeleteRecordsResult is one partition's answer.
type DeleteRecordsResult struct {
	TopicPartition
	// LowWatermark is the partition's new log start offset (the smallest
	// over its replicas); -1 on error.
	LowWatermark int64
	Err          error
}

// DeleteRecords deletes every record below before[tp] in each partition (-1:
// below the high watermark, i.e. everything consumable), on the partitions'
// leaders, retrying after a metadata refresh when leadership moved. An
// offset above the high watermark is refused with OFFSET_OUT_OF_RANGE.
func (a *Admin) DeleteRecords(ctx context.Context, before map[TopicPartition]int64) ([]DeleteRecordsResult, error) {
	if len(before) == 0 {
		return nil, invalid("no partitions to delete records from")
	}
	for tp, o := range before {
		if o < -1 {
			return nil, invalid("%s: offset %d: want -1 (the high watermark) or an offset >= 0", tp.name(), o)
		}
	}
	res := map[TopicPartition]*DeleteRecordsResult{}
	tps := make([]TopicPartition, 0, len(before))
	for tp := range before {
		tps = append(tps, tp)
		res[tp] = &DeleteRecordsResult{TopicPartition: tp, LowWatermark: -1}
	}
	errs := a.routeToLeaders(ctx, tps, func(ctx context.Context, bc pb.BrokerServiceClient, part []TopicPartition, _ []int32) (map[TopicPartition]error, error) {
		req := &pb.DeleteRecordsRequest{}
		idx := map[string]*pb.DeleteRecordsTopic{}
		for _, tp := range part {
			t := idx[tp.Topic]
			if t == nil {
				t = &pb.DeleteRecordsTopic{Topic: tp.Topic}
				idx[tp.Topic] = t
				req.Topics = append(req.Topics, t)
			}
			t.Partitions = append(t.Partitions, &pb.DeleteRecordsPartition{Partition: tp.Partition, Offset: before[tp]})
		}
		resp, err := bc.DeleteRecords(ctx, req)
		if err != nil {
			return nil, err
		}
		out := map[TopicPartition]error{}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				tp := TopicPartition{t.Topic, p.Partition}
				r := res[tp]
				if r == nil {
					continue
				}
				out[tp] = itemError(p.ErrorCode, p.ErrorMessage)
				if p.ErrorCode == pb.ErrorCode_NONE {
					r.LowWatermark = p.LowWatermark
				}
			}
		}
		return out, nil
	})
	out := make([]DeleteRecordsResult, 0, len(res))
	for tp, r := range res {
		r.Err = errs[tp]
		out = append(out, *r)
	}
	sortTopicPartitions(out, func(r DeleteRecordsResult) TopicPartition { return r.TopicPartition })
	return out, nil
}

// leaderAttempts bounds the rounds routeToLeaders makes.
const leaderAttempts = 6

// leaderSend sends one request for part (with the leader epochs the client
// knows) to their leader bc and returns each partition's error (nil: done).
type leaderSend func(ctx context.Context, bc pb.BrokerServiceClient, part []TopicPartition, epochs []int32) (map[TopicPartition]error, error)

// routeToLeaders sends tps to their leaders in per-leader requests. A
// partition whose leader is unknown, or that answers a retriable error
// (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, ...), or whose leader does
// not answer, is sent again after a metadata refresh, up to leaderAttempts
// rounds within ctx. It returns each partition's final error.
func (a *Admin) routeToLeaders(ctx context.Context, tps []TopicPartition, send leaderSend) map[TopicPartition]error {
	errs := map[TopicPartition]error{}
	pending := tps
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		var m *Metadata
		var err error
		if attempt == 0 {
			m, err = a.c.Metadata(ctx)
		} else {
			m, err = a.c.RefreshMetadata(ctx)
		}
		if err != nil {
			for _, tp := range pending {
				errs[tp] = err
			}
			return errs
		}
		retry := func(err error) bool {
			var e *Error
			if !errors.As(err, &e) {
				return false
			}
			// An unknown partition in a cached view may be a new one: refresh once.
			return e.Retriable || attempt == 0 && e.Code == pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION
		}
		type group struct {
			tps    []TopicPartition
			epochs []int32
		}
		groups := map[string]*group{}
		var again []TopicPartition
		for _, tp := range pending {
			b, epoch, err := m.Leader(tp.Topic, tp.Partition)
			if err != nil {
				errs[tp] = err
				if retry(err) {
					again = append(again, tp)
				}
				continue
			}
			g := groups[b.Addr]
			if g == nil {
				g = &group{}
				groups[b.Addr] = g
			}
			g.tps = append(g.tps, tp)
			g.epochs = append(g.epochs, epoch)
		}
		addrs := make([]string, 0, len(groups))
		for addr := range groups {
			addrs = append(addrs, addr)
		}
		sort.Strings(addrs)
		for _, addr := range addrs {
			g := groups[addr]
			res, err := a.sendTo(ctx, addr, g.tps, g.epochs, send)
			for _, tp := range g.tps {
				e, ok := res[tp]
				switch {
				case err != nil:
					e = err
				case !ok:
					e = &Error{Code: pb.ErrorCode_UNKNOWN_SERVER_ERROR, Message: "broker " + addr + " did not answer for " + tp.name()}
				}
				errs[tp] = e
				if e != nil && retry(e) {
					again = append(again, tp)
				}
			}
		}
		if len(again) == 0 || attempt+1 >= leaderAttempts || ctx.Err() != nil {
			return errs
		}
		select {
		case <-ctx.Done():
			return errs
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		pending = again
	}
}

func (a *Admin) sendTo(ctx context.Context, addr string, tps []TopicPartition, epochs []int32, send leaderSend) (map[TopicPartition]error, error) {
	bc, err := a.c.Broker(addr)
	if err != nil {
		return nil, FromError(err)
	}
	rctx, cancel := context.WithTimeout(ctx, a.c.cfg.RequestTimeout)
	defer cancel()
	res, err := send(rctx, bc, tps, epochs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, FromError(ctx.Err())
		}
		return nil, FromError(err)
	}
	return res, nil
}
