package client

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// NewTopic describes a topic to create.
type NewTopic struct {
	Name string
	// Partitions is the partition count; 0 or -1: the cluster default
	// (num.partitions).
	Partitions int32
	// ReplicationFactor is the number of replicas per partition; 0 or -1:
	// the cluster default (default.replication.factor). It may not exceed
	// the live brokers.
	ReplicationFactor int32
	// Assignments places the replicas explicitly: Assignments[i] lists the
	// brokers of partition i, the preferred leader first. Set it and leave
	// Partitions and ReplicationFactor at 0.
	Assignments [][]int32
	// Configs are topic config overrides (retention.ms, cleanup.policy, ...).
	Configs map[string]string
}

// CreateTopicsOptions tune CreateTopics.
type CreateTopicsOptions struct {
	// ValidateOnly checks and places the topics but creates nothing.
	ValidateOnly bool
}

// CreateTopicResult is the outcome of creating one topic.
type CreateTopicResult struct {
	Name              string
	ID                string // the topic id as a UUID
	Partitions        int32
	ReplicationFactor int32
	// Configs are the topic's effective configs (overrides and defaults).
	Configs map[string]string
	Err     error // nil: created (or, with ValidateOnly, would be)
}

// orDefault maps the Go zero value to the protocol's "cluster default".
func orDefault(n int32) int32 {
	if n == 0 {
		return -1
	}
	return n
}

// CreateTopics creates topics. Each result's Err says why its topic was
// refused (TOPIC_ALREADY_EXISTS, INVALID_REPLICATION_FACTOR, INVALID_CONFIG,
// ...). The brokers learn of a new topic from the metadata log a moment
// after CreateTopics returns.
func (a *Admin) CreateTopics(ctx context.Context, topics []NewTopic, opts CreateTopicsOptions) ([]CreateTopicResult, error) {
	if len(topics) == 0 {
		return nil, invalid("no topics to create")
	}
	req := &pb.CreateTopicsRequest{ValidateOnly: opts.ValidateOnly}
	for _, t := range topics {
		ct := &pb.CreatableTopic{Name: t.Name, NumPartitions: orDefault(t.Partitions), ReplicationFactor: orDefault(t.ReplicationFactor),
			Configs: maps.Clone(t.Configs)}
		for i, reps := range t.Assignments {
			ct.Assignments = append(ct.Assignments, &pb.ReplicaAssignment{Partition: int32(i), BrokerIds: reps})
		}
		req.Topics = append(req.Topics, ct)
	}
	resp, err := callController(ctx, a, pb.ControllerServiceClient.CreateTopics, req)
	if err != nil {
		return nil, err
	}
	out := make([]CreateTopicResult, 0, len(resp.Topics))
	for _, r := range resp.Topics {
		out = append(out, CreateTopicResult{Name: r.Name, ID: topicIDString(r.TopicId), Partitions: r.NumPartitions,
			ReplicationFactor: r.ReplicationFactor, Configs: r.Configs, Err: itemError(r.ErrorCode, r.ErrorMessage)})
	}
	return out, nil
}

// DeleteTopics deletes topics by name; a result's Err is
// UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist.
func (a *Admin) DeleteTopics(ctx context.Context, names ...string) ([]TopicResult, error) {
	if len(names) == 0 {
		return nil, invalid("no topics to delete")
	}
	req := &pb.DeleteTopicsRequest{}
	for _, n := range names {
		req.Topics = append(req.Topics, &pb.DeleteTopicItem{Name: n})
	}
	resp, err := callController(ctx, a, pb.ControllerServiceClient.DeleteTopics, req)
	if err != nil {
		return nil, err
	}
	out := make([]TopicResult, 0, len(resp.Topics))
	for _, r := range resp.Topics {
		out = append(out, TopicResult{Name: r.Name, Err: itemError(r.ErrorCode, r.ErrorMessage)})
	}
	return out, nil
}

// NewPartitions grows a topic.
type NewPartitions struct {
	Topic string
	// Count is the new total partition count; it must be larger than the
	// current one (partitions never shrink).
	Count int32
	// Assignments optionally place the new partitions' replicas, one list
	// per new partition; empty: the controller places them.
	Assignments [][]int32
}

// CreatePartitionsOptions tune CreatePartitions.
type CreatePartitionsOptions struct {
	ValidateOnly bool
}

// CreatePartitions adds partitions to topics. A count not larger than the
// current one is refused with INVALID_PARTITIONS.
func (a *Admin) CreatePartitions(ctx context.Context, topics []NewPartitions, opts CreatePartitionsOptions) ([]TopicResult, error) {
	if len(topics) == 0 {
		return nil, invalid("no topics to grow")
	}
	req := &pb.CreatePartitionsRequest{ValidateOnly: opts.ValidateOnly}
	for _, t := range topics {
		ct := &pb.CreatePartitionsTopic{Name: t.Topic, Count: t.Count}
		for _, reps := range t.Assignments {
			ct.Assignments = append(ct.Assignments, &pb.Int32List{Values: reps})
		}
		req.Topics = append(req.Topics, ct)
	}
	resp, err := callController(ctx, a, pb.ControllerServiceClient.CreatePartitions, req)
	if err != nil {
		return nil, err
	}
	out := make([]TopicResult, 0, len(resp.Topics))
	for _, r := range resp.Topics {
		out = append(out, TopicResult{Name: r.Name, Err: itemError(r.ErrorCode, r.ErrorMessage)})
	}
	return out, nil
}

// TopicDescription is one topic as the brokers' metadata has it.
type TopicDescription struct {
	Name       string
	ID         string // the topic id as a UUID
	Internal   bool
	Partitions []PartitionInfo // by partition index
	Err        error           // UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist
}

// UnderReplicated reports whether the partition's ISR is smaller than its
// replica set.
func (p PartitionInfo) UnderReplicated() bool { return len(p.ISR) < len(p.Replicas) }

// ReplicationFactor is the topic's replica count (that of partition 0).
func (t TopicDescription) ReplicationFactor() int {
	if len(t.Partitions) == 0 {
		return 0
	}
	return len(t.Partitions[0].Replicas)
}

// DescribeTopicsOptions tune DescribeTopics.
type DescribeTopicsOptions struct {
	// UnderReplicated keeps only the partitions whose ISR is smaller than
	// their replica set, and only the topics that have some.
	UnderReplicated bool
}

// DescribeTopics describes the named topics (none: every topic), sorted by
// name, with their partitions' leaders, epochs, replicas, ISR and offline
// replicas. The answer comes from one broker's metadata, which trails the
// controller by the metadata log's propagation delay (milliseconds).
func (a *Admin) DescribeTopics(ctx context.Context, names []string, opts DescribeTopicsOptions) ([]TopicDescription, error) {
	resp, err := a.brokerMetadata(ctx, names)
	if err != nil {
		return nil, err
	}
	var out []TopicDescription
	for _, t := range resp.Topics {
		d := TopicDescription{Name: t.Name, ID: topicIDString(t.TopicId), Internal: t.Internal}
		if t.ErrorCode != pb.ErrorCode_NONE {
			if t.ErrorCode == pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION && t.ErrorMessage == "" {
				t.ErrorMessage = fmt.Sprintf("no topic %q", t.Name)
			}
			d.ID, d.Err = "", itemError(t.ErrorCode, t.ErrorMessage)
			out = append(out, d)
			continue
		}
		d.Partitions = make([]PartitionInfo, len(t.Partitions))
		for _, p := range t.Partitions {
			if int(p.Partition) < len(d.Partitions) {
				d.Partitions[p.Partition] = PartitionInfo{Topic: t.Name, Partition: p.Partition, Leader: p.LeaderId,
					LeaderEpoch: p.LeaderEpoch, Replicas: p.Replicas, ISR: p.Isr, Offline: p.OfflineReplicas}
			}
		}
		if opts.UnderReplicated {
			var keep []PartitionInfo
			for _, p := range d.Partitions {
				if p.UnderReplicated() {
					keep = append(keep, p)
				}
			}
			if len(keep) == 0 {
				continue
			}
			d.Partitions = keep
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// TopicListing is one line of ListTopics.
type TopicListing struct {
	Name              string
	ID                string
	Internal          bool
	Partitions        int
	ReplicationFactor int
}

// ListTopics lists every topic, sorted by name.
func (a *Admin) ListTopics(ctx context.Context) ([]TopicListing, error) {
	ds, err := a.DescribeTopics(ctx, nil, DescribeTopicsOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]TopicListing, 0, len(ds))
	for _, d := range ds {
		if d.Err != nil {
			continue
		}
		out = append(out, TopicListing{Name: d.Name, ID: d.ID, Internal: d.Internal, Partitions: len(d.Partitions), ReplicationFactor: d.ReplicationFactor()})
	}
	return out, nil
}

// WaitForTopics waits until a broker's metadata has (exists) or no longer has
// (!exists) every named topic, polling until ctx ends.
func (a *Admin) WaitForTopics(ctx context.Context, exists bool, names ...string) error {
	for {
		ds, err := a.DescribeTopics(ctx, names, DescribeTopicsOptions{})
		if err == nil {
			ok := true
			for _, d := range ds {
				ok = ok && (d.Err == nil) == exists
			}
			if ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return FromError(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// brokerMetadata asks a broker (the known ones, then the bootstrap list) for
// the metadata of topics (none: all).
func (a *Admin) brokerMetadata(ctx context.Context, topics []string) (*pb.MetadataResponse, error) {
	m, err := a.c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	var addrs []string
	ids := make([]int32, 0, len(m.Brokers))
	for id := range m.Brokers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		addrs = append(addrs, m.Brokers[id].Addr)
	}
	addrs = append(addrs, a.c.cfg.Bootstrap...)
	var lastErr error
	for _, addr := range addrs {
		bc, err := a.c.Broker(addr)
		if err != nil {
			lastErr = err
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, a.c.cfg.RequestTimeout)
		resp, err := bc.Metadata(rctx, &pb.MetadataRequest{Topics: topics})
		cancel()
		if err == nil {
			return resp, nil
		}
		if lastErr = FromError(err); ctx.Err() != nil {
			return nil, FromError(ctx.Err())
		}
	}
	return nil, &Error{Code: pb.ErrorCode_BROKER_NOT_AVAILABLE, Retriable: true,
		Message: fmt.Sprintf("no broker answered a metadata request (last error: %v); check --bootstrap and that the cluster is up", lastErr)}
}
