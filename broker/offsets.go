package broker

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/raftfsm"
	"github.com/stratalog/strata/storage"
)

// Special timestamps of ListOffsets (Kafka's).
const (
	EarliestTimestamp = -2
	LatestTimestamp   = -1
)

// statusInvalid is a request-level INVALID_REQUEST.
func statusInvalid(msg string) error {
	st := status.New(codes.InvalidArgument, "broker: "+msg)
	if d, err := st.WithDetails(&pb.ErrorInfo{Code: pb.ErrorCode_INVALID_REQUEST, Message: msg}); err == nil {
		st = d
	}
	return st.Err()
}

// ListOffsets answers the earliest offset (-2), the latest (-1: the HW, what
// a consumer can read), or the first offset at or after a timestamp.
func (s *service) ListOffsets(ctx context.Context, req *pb.ListOffsetsRequest) (*pb.ListOffsetsResponse, error) {
	resp := &pb.ListOffsetsResponse{}
	img := s.b.image.Load()
	for _, t := range req.GetTopics() {
		tr := &pb.ListOffsetsTopicResult{Topic: t.GetTopic()}
		resp.Topics = append(resp.Topics, tr)
		for _, lp := range t.GetPartitions() {
			r := &pb.ListOffsetsPartitionResult{Partition: lp.GetPartition(), TimestampMs: -1, Offset: -1, LeaderEpoch: -1}
			tr.Partitions = append(tr.Partitions, r)
			off, ts, epoch, err := s.listOffset(t.GetTopic(), lp, req.GetReplicaId())
			if err != nil {
				r.ErrorCode, r.ErrorMessage = codeOf(err), err.Error()
				r.CurrentLeader = leaderOf(img, t.GetTopic(), lp.GetPartition())
				continue
			}
			r.Offset, r.TimestampMs, r.LeaderEpoch = off, ts, epoch
		}
	}
	return resp, nil
}

func (s *service) listOffset(topic string, lp *pb.ListOffsetsPartition, replica int32) (offset, ts int64, epoch int32, err error) {
	p, err := s.lookup(topic, lp.GetPartition())
	if err != nil {
		return 0, 0, 0, err
	}
	p.mu.RLock()
	err = p.checkLeaderLocked(lp.GetCurrentLeaderEpoch())
	epoch = p.mu.state.LeaderEpoch
	epochStart := p.mu.leaderAt
	p.mu.RUnlock()
	if err != nil {
		return 0, 0, 0, err
	}
	l := p.Log()
	// A client must never see the HW go back: a new leader's HW comes from
	// its last fetch as a follower and may trail what its predecessor
	// answered; once it reaches the epoch's start it is at least that.
	if replica < 0 && lp.GetTimestampMs() != EarliestTimestamp && l.HighWatermark() < epochStart {
		return 0, 0, 0, fmt.Errorf("%w: high watermark %d, leader epoch %d starts at %d", ErrOffsetNotAvailable,
			l.HighWatermark(), epoch, epochStart)
	}
	switch target := lp.GetTimestampMs(); {
	case target == EarliestTimestamp:
		return l.LogStartOffset(), -1, epoch, nil
	case target == LatestTimestamp:
		if replica >= 0 {
			return l.LogEndOffset(), -1, epoch, nil
		}
		return l.HighWatermark(), -1, epoch, nil
	case target < 0:
		return 0, 0, 0, fmt.Errorf("%w: timestamp %d (want -2, -1 or >= 0)", storage.ErrOffsetOutOfRange, target)
	default:
		off, at, found, err := l.OffsetForTimestamp(target)
		if err != nil {
			return 0, 0, 0, err
		}
		if !found || (replica < 0 && off >= l.HighWatermark()) {
			return -1, -1, epoch, nil // no record that late (Kafka answers offset -1)
		}
		return off, at, epoch, nil
	}
}

// OffsetForLeaderEpoch answers a follower's truncation question.
func (s *service) OffsetForLeaderEpoch(ctx context.Context, req *pb.OffsetForLeaderEpochRequest) (*pb.OffsetForLeaderEpochResponse, error) {
	resp := &pb.OffsetForLeaderEpochResponse{}
	for _, t := range req.GetTopics() {
		tr := &pb.OffsetForLeaderEpochTopicResult{Topic: t.GetTopic()}
		resp.Topics = append(resp.Topics, tr)
		for _, ep := range t.GetPartitions() {
			r := &pb.OffsetForLeaderEpochPartitionResult{Partition: ep.GetPartition(), LeaderEpoch: -1, EndOffset: -1}
			tr.Partitions = append(tr.Partitions, r)
			p, err := s.lookup(t.GetTopic(), ep.GetPartition())
			if err == nil {
				r.LeaderEpoch, r.EndOffset, err = p.OffsetForLeaderEpoch(ep.GetCurrentLeaderEpoch(), ep.GetLeaderEpoch())
			}
			if err != nil {
				r.ErrorCode, r.ErrorMessage = codeOf(err), err.Error()
			}
		}
	}
	return resp, nil
}

// DeleteRecords raises a partition's log start offset on its leader (-1: to
// the HW). Offsets past the HW are OFFSET_OUT_OF_RANGE. Followers adopt the
// new log start from the leader's fetch answers.
func (s *service) DeleteRecords(ctx context.Context, req *pb.DeleteRecordsRequest) (*pb.DeleteRecordsResponse, error) {
	resp := &pb.DeleteRecordsResponse{}
	for _, t := range req.GetTopics() {
		tr := &pb.DeleteRecordsTopicResult{Topic: t.GetTopic()}
		resp.Topics = append(resp.Topics, tr)
		for _, dp := range t.GetPartitions() {
			r := &pb.DeleteRecordsPartitionResult{Partition: dp.GetPartition(), LowWatermark: -1}
			tr.Partitions = append(tr.Partitions, r)
			low, err := s.deleteRecords(t.GetTopic(), dp)
			if err != nil {
				r.ErrorCode, r.ErrorMessage = codeOf(err), err.Error()
				continue
			}
			r.LowWatermark = low
		}
	}
	return resp, nil
}

func (s *service) deleteRecords(topic string, dp *pb.DeleteRecordsPartition) (int64, error) {
	p, err := s.lookup(topic, dp.GetPartition())
	if err != nil {
		return 0, err
	}
	p.mu.RLock()
	err = p.checkLeaderLocked(-1)
	p.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	hw := p.HighWatermark()
	off := dp.GetOffset()
	if off == -1 {
		off = hw
	}
	if off < 0 || off > hw {
		return 0, fmt.Errorf("%w: delete records before %d, high watermark is %d", storage.ErrOffsetOutOfRange, off, hw)
	}
	return p.Log().DeleteRecordsBefore(off)
}

// Metadata answers from the broker's metadata image: brokers, and for the
// requested topics (all when none) each partition's leader, epoch, replicas,
// ISR and offline replicas.
func (s *service) Metadata(ctx context.Context, req *pb.MetadataRequest) (*pb.MetadataResponse, error) {
	img := s.b.image.Load()
	resp := &pb.MetadataResponse{ClusterId: img.ClusterID(), ControllerId: -1, Brokers: nodeEndpoints(img),
		MetadataOffset: img.Offset(), ControllerAddresses: s.b.cfg.Controllers}
	var topics []*raftfsm.Topic
	if len(req.GetTopics()) == 0 {
		topics = img.Topics()
	} else {
		for _, name := range req.GetTopics() {
			t := img.Topic(name)
			if t == nil {
				resp.Topics = append(resp.Topics, &pb.MetadataTopicResult{Name: name, ErrorCode: pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, ErrorMessage: "unknown topic " + name})
				continue
			}
			topics = append(topics, t)
		}
	}
	for _, t := range topics {
		id := t.ID()
		tr := &pb.MetadataTopicResult{Name: t.Name(), TopicId: id[:], Internal: len(t.Name()) > 2 && t.Name()[:2] == "__"}
		for i, ip := range t.Partitions() {
			pr := &pb.MetadataPartitionResult{Partition: int32(i), LeaderId: ip.Leader, LeaderEpoch: ip.LeaderEpoch,
				Replicas: ip.Replicas, Isr: ip.ISR}
			if ip.Leader < 0 {
				pr.ErrorCode = pb.ErrorCode_LEADER_NOT_AVAILABLE
			}
			for _, r := range ip.Replicas {
				if br := img.Broker(r); br == nil || br.Fenced {
					pr.OfflineReplicas = append(pr.OfflineReplicas, r)
				}
			}
			tr.Partitions = append(tr.Partitions, pr)
		}
		resp.Topics = append(resp.Topics, tr)
	}
	return resp, nil
}
