package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/broker/group"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// groupService is the GroupService gRPC server: it finds a request's shard
// on this broker (NOT_COORDINATOR when another broker coordinates the
// group), runs the operation, and answers once its records replicated.
type groupService struct {
	pb.UnimplementedGroupServiceServer
	c *coordinator
}

// groupCodes maps the coordinator's errors to their codes and gRPC codes.
var groupCodes = []struct {
	err   error
	code  pb.ErrorCode
	grpc  codes.Code
	retry bool
}{
	{group.ErrNotCoordinator, pb.ErrorCode_NOT_COORDINATOR, codes.FailedPrecondition, true},
	{group.ErrCoordinatorNotAvailable, pb.ErrorCode_COORDINATOR_NOT_AVAILABLE, codes.Unavailable, true},
	{group.ErrLoadInProgress, pb.ErrorCode_COORDINATOR_LOAD_IN_PROGRESS, codes.Unavailable, true},
	{group.ErrGroupNotFound, pb.ErrorCode_GROUP_ID_NOT_FOUND, codes.NotFound, false},
	{group.ErrInvalidGroupID, pb.ErrorCode_INVALID_GROUP_ID, codes.InvalidArgument, false},
	{group.ErrUnknownMember, pb.ErrorCode_UNKNOWN_MEMBER_ID, codes.FailedPrecondition, false},
	{group.ErrFencedMemberEpoch, pb.ErrorCode_FENCED_MEMBER_EPOCH, codes.FailedPrecondition, false},
	{group.ErrStaleMemberEpoch, pb.ErrorCode_STALE_MEMBER_EPOCH, codes.FailedPrecondition, true},
	{group.ErrPartitionNotOwned, pb.ErrorCode_PARTITION_NOT_OWNED, codes.FailedPrecondition, false},
	{group.ErrNonEmptyGroup, pb.ErrorCode_NON_EMPTY_GROUP, codes.FailedPrecondition, false},
	{group.ErrUnsupportedAssignor, pb.ErrorCode_UNSUPPORTED_ASSIGNOR, codes.InvalidArgument, false},
	{group.ErrInvalidRegex, pb.ErrorCode_INVALID_REGULAR_EXPRESSION, codes.InvalidArgument, false},
	{group.ErrGroupMaxSize, pb.ErrorCode_GROUP_MAX_SIZE_REACHED, codes.ResourceExhausted, false},
	{group.ErrOffsetMetadataTooLarge, pb.ErrorCode_OFFSET_METADATA_TOO_LARGE, codes.InvalidArgument, false},
	{group.ErrInvalidRequest, pb.ErrorCode_INVALID_REQUEST, codes.InvalidArgument, false},
	{group.ErrUnknownPartition, pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, codes.NotFound, false},
}

// groupCode is err's Strata code (with the data path's codes for what the
// offsets partition's log answered).
func groupCode(err error) (pb.ErrorCode, codes.Code, bool) {
	for _, gc := range groupCodes {
		if errors.Is(err, gc.err) {
			return gc.code, gc.grpc, gc.retry
		}
	}
	switch code := codeOf(err); code {
	case pb.ErrorCode_NOT_LEADER_OR_FOLLOWER, pb.ErrorCode_FENCED_LEADER_EPOCH, pb.ErrorCode_UNKNOWN_LEADER_EPOCH:
		return pb.ErrorCode_NOT_COORDINATOR, codes.FailedPrecondition, true
	case pb.ErrorCode_NOT_ENOUGH_REPLICAS, pb.ErrorCode_REQUEST_TIMED_OUT, pb.ErrorCode_STORAGE_ERROR:
		return pb.ErrorCode_COORDINATOR_NOT_AVAILABLE, codes.Unavailable, true
	case pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION:
		return code, codes.NotFound, false
	}
	return pb.ErrorCode_UNKNOWN_SERVER_ERROR, codes.Internal, false
}

// groupStatus turns a coordinator error into a gRPC status with ErrorInfo.
func groupStatus(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	code, gcode, retry := groupCode(err)
	st := status.New(gcode, err.Error())
	if d, derr := st.WithDetails(&pb.ErrorInfo{Code: code, Message: err.Error(), Retriable: retry}); derr == nil {
		st = d
	}
	return st.Err()
}

func (g *groupService) FindCoordinator(ctx context.Context, req *pb.FindCoordinatorRequest) (*pb.FindCoordinatorResponse, error) {
	if len(req.GetGroupIds()) == 0 {
		return nil, statusInvalid("FindCoordinator names no group")
	}
	img := g.c.b.image.Load()
	t := img.Topic(OffsetsTopic)
	if t == nil {
		g.c.createOffsetsTopic()
	}
	resp := &pb.FindCoordinatorResponse{}
	for _, id := range req.GetGroupIds() {
		gc := &pb.GroupCoordinator{GroupId: id, NodeId: -1}
		resp.Coordinators = append(resp.Coordinators, gc)
		var err error
		switch {
		case group.ValidID("group", id) != nil:
			err = fmt.Errorf("%w: %v", group.ErrInvalidGroupID, group.ValidID("group", id))
		case t == nil || t.NumPartitions() == 0:
			err = fmt.Errorf("%w: %s is being created", group.ErrCoordinatorNotAvailable, OffsetsTopic)
		default:
			i := partitionFor(id, int32(t.NumPartitions()))
			leader := t.Partition(i).Leader
			addr, ok := brokerAddr(img, leader)
			if leader < 0 || !ok {
				err = fmt.Errorf("%w: %s-%d has no leader", group.ErrCoordinatorNotAvailable, OffsetsTopic, i)
				break
			}
			gc.NodeId, gc.Address = leader, addr
		}
		if err != nil {
			code, _, _ := groupCode(err)
			gc.ErrorCode, gc.ErrorMessage = code, err.Error()
		}
	}
	return resp, nil
}

// createOffsetsTopic asks the controller for __consumer_offsets (at most
// once a second per broker; TOPIC_ALREADY_EXISTS is success).
func (c *coordinator) createOffsetsTopic() {
	c.mu.Lock()
	if time.Since(c.creating) < time.Second {
		c.mu.Unlock()
		return
	}
	c.creating = time.Now()
	c.mu.Unlock()
	img := c.b.image.Load()
	rf := c.cfg.OffsetsTopicReplicationFactor
	if n := int32(len(img.Brokers())); n < rf {
		rf = max(n, 1) // a cluster smaller than the factor still gets groups
	}
	req := &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{
		Name: OffsetsTopic, NumPartitions: c.cfg.OffsetsTopicPartitions, ReplicationFactor: rf,
		Configs: map[string]string{"cleanup.policy": "compact"},
	}}}
	go func() {
		ctx, cancel := context.WithTimeout(c.b.ctx, 10*time.Second)
		defer cancel()
		var resp *pb.CreateTopicsResponse
		err := c.b.ctrl.call(ctx, false, func(ctx context.Context, cl pb.ControllerServiceClient) error {
			var err error
			resp, err = cl.CreateTopics(ctx, req)
			return err
		})
		if err == nil && len(resp.GetTopics()) == 1 {
			if r := resp.GetTopics()[0]; r.GetErrorCode() != pb.ErrorCode_NONE && r.GetErrorCode() != pb.ErrorCode_TOPIC_ALREADY_EXISTS {
				err = fmt.Errorf("%s: %s", r.GetErrorCode(), r.GetErrorMessage())
			}
		}
		if err != nil {
			c.b.log.Warn("group coordinator: create "+OffsetsTopic, "err", err)
			return
		}
		c.b.log.Info("group coordinator: created "+OffsetsTopic, "partitions", c.cfg.OffsetsTopicPartitions, "replication_factor", rf)
	}()
}

func (g *groupService) GroupHeartbeat(ctx context.Context, req *pb.GroupHeartbeatRequest) (*pb.GroupHeartbeatResponse, error) {
	cs, err := g.shard(req.GetGroupId())
	if err != nil {
		return nil, groupStatus(err)
	}
	resp, next, err := cs.shard.Heartbeat(req)
	if err == nil {
		err = g.c.commit(ctx, cs, next)
	}
	if err != nil {
		return nil, groupStatus(err)
	}
	return resp, nil
}

// shard validates a group id and finds its shard here.
func (g *groupService) shard(id string) (*coordShard, error) {
	if err := group.ValidID("group", id); err != nil {
		return nil, fmt.Errorf("%w: %v", group.ErrInvalidGroupID, err)
	}
	return g.c.shardFor(id)
}

func (g *groupService) OffsetCommit(ctx context.Context, req *pb.OffsetCommitRequest) (*pb.OffsetCommitResponse, error) {
	cs, err := g.shard(req.GetGroupId())
	if err != nil {
		return nil, groupStatus(err)
	}
	next, err := cs.shard.CommitOffsets(req)
	if err == nil {
		err = g.c.commit(ctx, cs, next)
	}
	if err != nil {
		return nil, groupStatus(err)
	}
	return &pb.OffsetCommitResponse{}, nil
}

func (g *groupService) OffsetFetch(ctx context.Context, req *pb.OffsetFetchRequest) (*pb.OffsetFetchResponse, error) {
	cs, err := g.shard(req.GetGroupId())
	if err != nil {
		return nil, groupStatus(err)
	}
	topics, err := cs.shard.FetchOffsets(req.GetGroupId(), req.GetTopics())
	if err != nil {
		return nil, groupStatus(err)
	}
	return &pb.OffsetFetchResponse{Topics: topics}, nil
}

func (g *groupService) ListGroups(ctx context.Context, req *pb.ListGroupsRequest) (*pb.ListGroupsResponse, error) {
	g.c.mu.Lock()
	shards := make([]*coordShard, 0, len(g.c.shards))
	for _, cs := range g.c.shards {
		shards = append(shards, cs)
	}
	g.c.mu.Unlock()
	resp := &pb.ListGroupsResponse{}
	for _, cs := range shards {
		for _, l := range cs.shard.List(req.GetStates()) {
			l.CoordinatorId = g.c.b.cfg.NodeID
			resp.Groups = append(resp.Groups, l)
		}
	}
	return resp, nil
}

func (g *groupService) DescribeGroups(ctx context.Context, req *pb.DescribeGroupsRequest) (*pb.DescribeGroupsResponse, error) {
	if len(req.GetGroupIds()) == 0 {
		return nil, statusInvalid("DescribeGroups names no group")
	}
	resp := &pb.DescribeGroupsResponse{}
	for _, id := range req.GetGroupIds() {
		d, err := g.describe(ctx, id)
		if err != nil {
			code, _, _ := groupCode(err)
			d = &pb.GroupDescription{GroupId: id, ErrorCode: code, ErrorMessage: err.Error(), State: group.StateDead, CoordinatorId: -1}
		}
		resp.Groups = append(resp.Groups, d)
	}
	return resp, nil
}

func (g *groupService) describe(ctx context.Context, id string) (*pb.GroupDescription, error) {
	cs, err := g.shard(id)
	if err != nil {
		return nil, err
	}
	d, err := cs.shard.Describe(id)
	if err != nil {
		return nil, err
	}
	d.CoordinatorId = g.c.b.cfg.NodeID
	tps := make([]group.TP, 0, len(d.Offsets))
	for _, o := range d.Offsets {
		tps = append(tps, group.TP{Topic: o.Topic, Partition: o.Partition})
	}
	ends := g.c.listOffsets(ctx, tps, LatestTimestamp)
	for _, o := range d.Offsets {
		if end, ok := ends[group.TP{Topic: o.Topic, Partition: o.Partition}]; ok {
			o.LogEndOffset = end
			if o.CommittedOffset >= 0 {
				o.Lag = max(end-o.CommittedOffset, 0)
			}
		}
	}
	return d, nil
}

func (g *groupService) DeleteGroups(ctx context.Context, req *pb.DeleteGroupsRequest) (*pb.DeleteGroupsResponse, error) {
	if len(req.GetGroupIds()) == 0 {
		return nil, statusInvalid("DeleteGroups names no group")
	}
	resp := &pb.DeleteGroupsResponse{}
	for _, id := range req.GetGroupIds() {
		r := &pb.DeleteGroupResult{GroupId: id}
		resp.Results = append(resp.Results, r)
		cs, err := g.shard(id)
		if err == nil {
			var next int64
			if next, err = cs.shard.Delete(id); err == nil {
				err = g.c.commit(ctx, cs, next)
			}
		}
		if err != nil {
			code, _, _ := groupCode(err)
			r.ErrorCode, r.ErrorMessage = code, err.Error()
		}
	}
	return resp, nil
}
