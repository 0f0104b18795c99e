package controller

import (
	"context"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// CreateTopics creates topics (each item succeeds or fails on its own).
func (s *service) CreateTopics(ctx context.Context, req *pb.CreateTopicsRequest) (*pb.CreateTopicsResponse, error) {
	return wrap(s.c.createTopics(ctx, req))
}

func (c *Controller) createTopics(ctx context.Context, req *pb.CreateTopicsRequest) (*pb.CreateTopicsResponse, error) {
	resp := &pb.CreateTopicsResponse{}
	err := c.submit(ctx, func(_ *activeState, t *txn) error {
		resp.Topics = resp.Topics[:0]
		start, n := t.mark()
		seen := nameCounts(req.GetTopics())
		for _, ct := range req.GetTopics() {
			r := &pb.CreateTopicResult{Name: ct.GetName()}
			resp.Topics = append(resp.Topics, r)
			if err := namedOnce(seen, ct.GetName()); err != nil {
				r.ErrorCode, r.ErrorMessage = itemError(err)
				continue
			}
			var created *createdTopic
			if err := t.item(func() (err error) { created, err = decideCreateTopic(t, ct, newTopicID()); return err }); err != nil {
				r.ErrorCode, r.ErrorMessage = itemError(err)
				continue
			}
			r.TopicId = created.id.Bytes()
			r.NumPartitions = created.partitions
			r.ReplicationFactor = created.rf
			r.Configs = created.configs
		}
		if req.GetValidateOnly() {
			t.rollback(start, n)
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// DeleteTopics deletes topics by name or id; the topic id goes with them, so
// a topic re-created under the same name is a new topic.
func (s *service) DeleteTopics(ctx context.Context, req *pb.DeleteTopicsRequest) (*pb.DeleteTopicsResponse, error) {
	return wrap(s.c.deleteTopics(ctx, req))
}

func (c *Controller) deleteTopics(ctx context.Context, req *pb.DeleteTopicsRequest) (*pb.DeleteTopicsResponse, error) {
	resp := &pb.DeleteTopicsResponse{}
	err := c.submit(ctx, func(_ *activeState, t *txn) error {
		resp.Topics = resp.Topics[:0]
		for _, item := range req.GetTopics() {
			r := &pb.DeleteTopicResult{Name: item.GetName(), TopicId: item.GetTopicId()}
			resp.Topics = append(resp.Topics, r)
			var tp *raftfsm.Topic
			if err := t.item(func() (err error) { tp, err = decideDeleteTopic(t, item); return err }); err != nil {
				r.ErrorCode, r.ErrorMessage = itemError(err)
				continue
			}
			r.Name, r.TopicId = tp.Name(), tp.ID().Bytes()
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// CreatePartitions grows topics; partitions never shrink.
func (s *service) CreatePartitions(ctx context.Context, req *pb.CreatePartitionsRequest) (*pb.CreatePartitionsResponse, error) {
	return wrap(s.c.createPartitions(ctx, req))
}

func (c *Controller) createPartitions(ctx context.Context, req *pb.CreatePartitionsRequest) (*pb.CreatePartitionsResponse, error) {
	resp := &pb.CreatePartitionsResponse{}
	err := c.submit(ctx, func(_ *activeState, t *txn) error {
		resp.Topics = resp.Topics[:0]
		start, n := t.mark()
		seen := nameCounts(req.GetTopics())
		for _, ct := range req.GetTopics() {
			r := &pb.CreatePartitionsTopicResult{Name: ct.GetName()}
			resp.Topics = append(resp.Topics, r)
			if err := namedOnce(seen, ct.GetName()); err != nil {
				r.ErrorCode, r.ErrorMessage = itemError(err)
				continue
			}
			r.ErrorCode, r.ErrorMessage = itemError(t.item(func() error { return decideCreatePartitions(t, ct) }))
		}
		if req.GetValidateOnly() {
			t.rollback(start, n)
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// topicIDOf parses a request's topic id bytes.
func topicIDOf(b []byte) (raftfsm.TopicID, error) {
	id, err := raftfsm.TopicIDFromBytes(b)
	if err != nil {
		return id, errorf(pb.ErrorCode_INVALID_REQUEST, "%v", err)
	}
	return id, nil
}

// nameCounts counts how often each topic is named in a request.
func nameCounts[T interface{ GetName() string }](items []T) map[string]int {
	seen := make(map[string]int, len(items))
	for _, it := range items {
		seen[it.GetName()]++
	}
	return seen
}

// namedOnce refuses a topic a request names more than once: which of its
// items would win is not defined.
func namedOnce(seen map[string]int, name string) error {
	if seen[name] > 1 {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "topic %q named more than once", name)
	}
	return nil
}
