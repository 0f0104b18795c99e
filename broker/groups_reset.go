package broker

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/stratalog/strata/broker/group"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// ResetOffsets moves an empty group's committed offsets: it resolves the
// target of each partition on its leader (earliest, latest, by timestamp),
// clamps shifts and explicit offsets into [earliest, latest], and commits
// the plan unless dry_run. A group with members is refused.
func (g *groupService) ResetOffsets(ctx context.Context, req *pb.ResetOffsetsRequest) (*pb.ResetOffsetsResponse, error) {
	cs, err := g.shard(req.GetGroupId())
	if err != nil {
		return nil, groupStatus(err)
	}
	if req.GetTo() == nil {
		return nil, statusInvalid("ResetOffsets needs a target (to_earliest, to_latest, to_timestamp_ms, shift_by or to_offset)")
	}
	committed, members, err := cs.shard.Committed(req.GetGroupId())
	if err != nil {
		return nil, groupStatus(err)
	}
	if members > 0 {
		return nil, groupStatus(fmt.Errorf("%w: group %q has %s; stop them before resetting its offsets",
			group.ErrNonEmptyGroup, req.GetGroupId(), group.Members(members)))
	}
	tps, err := g.resetPartitions(req, committed)
	if err != nil {
		return nil, groupStatus(err)
	}
	earliest := g.c.listOffsets(ctx, tps, EarliestTimestamp)
	latest := g.c.listOffsets(ctx, tps, LatestTimestamp)
	var byTime map[group.TP]int64
	if ts, ok := req.GetTo().(*pb.ResetOffsetsRequest_ToTimestampMs); ok {
		if ts.ToTimestampMs < 0 {
			return nil, statusInvalid(fmt.Sprintf("to_timestamp_ms %d is negative", ts.ToTimestampMs))
		}
		byTime = g.c.listOffsets(ctx, tps, ts.ToTimestampMs)
	}
	plan := map[group.TP]int64{}
	resp := &pb.ResetOffsetsResponse{}
	for _, tp := range tps {
		lo, ok1 := earliest[tp]
		hi, ok2 := latest[tp]
		if !ok1 || !ok2 {
			return nil, groupStatus(fmt.Errorf("%w: the leader of %s-%d did not answer its offsets; try again",
				group.ErrCoordinatorNotAvailable, tp.Topic, tp.Partition))
		}
		prev, had := committed[tp]
		if !had {
			prev = -1
		}
		var to int64
		switch t := req.GetTo().(type) {
		case *pb.ResetOffsetsRequest_ToEarliest:
			to = lo
		case *pb.ResetOffsetsRequest_ToLatest:
			to = hi
		case *pb.ResetOffsetsRequest_ToTimestampMs:
			to = hi
			if off, ok := byTime[tp]; ok && off >= 0 {
				to = off
			}
		case *pb.ResetOffsetsRequest_ShiftBy:
			base := prev
			if !had {
				base = lo
			}
			to = base + t.ShiftBy
		case *pb.ResetOffsetsRequest_ToOffset:
			to = t.ToOffset
		}
		to = min(max(to, lo), hi)
		plan[tp] = to
		resp.Partitions = append(resp.Partitions, &pb.OffsetReset{Topic: tp.Topic, Partition: tp.Partition, PreviousOffset: prev, NewOffset: to})
	}
	if req.GetDryRun() || len(plan) == 0 {
		return resp, nil
	}
	next, err := cs.shard.SetOffsets(req.GetGroupId(), plan)
	if err == nil {
		err = g.c.commit(ctx, cs, next)
	}
	if err != nil {
		return nil, groupStatus(err)
	}
	return resp, nil
}

// resetPartitions is the partitions a reset names: listed ones, whole
// topics, or (none named) every partition the group has an offset for.
func (g *groupService) resetPartitions(req *pb.ResetOffsetsRequest, committed map[group.TP]int64) ([]group.TP, error) {
	img := g.c.b.image.Load()
	seen := map[group.TP]bool{}
	var out []group.TP
	add := func(tp group.TP) {
		if !seen[tp] {
			seen[tp] = true
			out = append(out, tp)
		}
	}
	if len(req.GetTopics()) == 0 {
		for tp := range committed {
			add(tp)
		}
	}
	for _, tps := range req.GetTopics() {
		t := img.Topic(tps.GetTopic())
		if t == nil {
			return nil, fmt.Errorf("%w: topic %q does not exist", errUnknownPartition, tps.GetTopic())
		}
		if len(tps.GetPartitions()) == 0 {
			for i := range t.NumPartitions() {
				add(group.TP{Topic: t.Name(), Partition: int32(i)})
			}
			continue
		}
		for _, p := range tps.GetPartitions() {
			if p < 0 || int(p) >= t.NumPartitions() {
				return nil, fmt.Errorf("%w: %s-%d", errUnknownPartition, t.Name(), p)
			}
			add(group.TP{Topic: t.Name(), Partition: p})
		}
	}
	slices.SortFunc(out, group.CompareTP)
	return out, nil
}

// listOffsets asks each partition's leader for an offset by timestamp
// (EarliestTimestamp, LatestTimestamp = the high watermark, or a time),
// grouped per leader; partitions whose leader did not answer are absent.
func (c *coordinator) listOffsets(ctx context.Context, tps []group.TP, ts int64) map[group.TP]int64 {
	img := c.b.image.Load()
	byLeader := map[int32]*pb.ListOffsetsRequest{}
	for _, tp := range tps {
		t := img.Topic(tp.Topic)
		if t == nil || t.Partition(tp.Partition) == nil {
			continue
		}
		leader := t.Partition(tp.Partition).Leader
		if leader < 0 {
			continue
		}
		req := byLeader[leader]
		if req == nil {
			req = &pb.ListOffsetsRequest{ReplicaId: -1}
			byLeader[leader] = req
		}
		var lt *pb.ListOffsetsTopic
		if n := len(req.Topics); n > 0 && req.Topics[n-1].Topic == tp.Topic {
			lt = req.Topics[n-1]
		} else {
			lt = &pb.ListOffsetsTopic{Topic: tp.Topic}
			req.Topics = append(req.Topics, lt)
		}
		lt.Partitions = append(lt.Partitions, &pb.ListOffsetsPartition{Partition: tp.Partition, CurrentLeaderEpoch: -1, TimestampMs: ts})
	}
	out := map[group.TP]int64{}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for leader, req := range byLeader {
		var resp *pb.ListOffsetsResponse
		var err error
		if leader == c.b.cfg.NodeID {
			resp, err = c.b.svc.ListOffsets(ctx, req)
		} else if addr, ok := brokerAddr(img, leader); ok {
			var cl pb.BrokerServiceClient
			if cl, err = c.b.dialBroker(ctx, leader, addr); err == nil {
				resp, err = cl.ListOffsets(ctx, req)
			}
		} else {
			continue
		}
		if err != nil {
			c.b.log.Debug("group coordinator: list offsets", "leader", leader, "err", err)
			continue
		}
		for _, t := range resp.GetTopics() {
			for _, p := range t.GetPartitions() {
				if p.GetErrorCode() == pb.ErrorCode_NONE {
					out[group.TP{Topic: t.GetTopic(), Partition: p.GetPartition()}] = p.GetOffset()
				}
			}
		}
	}
	return out
}
