package controller

import (
	"context"
	"net"
	"strconv"

	"github.com/hashicorp/raft"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// DescribeCluster answers from this node's image: the cluster id, the active
// controller as this node knows it, and the brokers.
func (s *service) DescribeCluster(ctx context.Context, req *pb.DescribeClusterRequest) (*pb.DescribeClusterResponse, error) {
	c := s.c
	img := c.fsm.Image()
	id, addr := c.Leader()
	resp := &pb.DescribeClusterResponse{ClusterId: img.ClusterID(), ControllerId: id, ControllerAddress: addr, MetadataOffset: img.Offset()}
	for _, b := range img.Brokers() {
		if b.Fenced && !req.GetIncludeFenced() {
			continue
		}
		d := &pb.BrokerDescription{BrokerId: b.ID, Rack: b.Rack, BrokerEpoch: b.Epoch, Fenced: b.Fenced, InControlledShutdown: b.InControlledShutdown}
		for _, l := range b.Listeners {
			d.Listeners = append(d.Listeners, &pb.Listener{Name: l.Name, Host: l.Host, Port: l.Port})
		}
		resp.Brokers = append(resp.Brokers, d)
	}
	return resp, nil
}

// DescribeQuorum describes the Raft group as this node sees it.
func (s *service) DescribeQuorum(ctx context.Context, _ *pb.DescribeQuorumRequest) (*pb.DescribeQuorumResponse, error) {
	return wrap(s.c.describeQuorum())
}

func (c *Controller) describeQuorum() (*pb.DescribeQuorumResponse, error) {
	r := c.node.raft
	id, addr := c.Leader()
	resp := &pb.DescribeQuorumResponse{
		LeaderId: id, LeaderAddress: addr, Term: r.CurrentTerm(),
		LastIndex: r.LastIndex(), CommitIndex: r.CommitIndex(), AppliedIndex: r.AppliedIndex(),
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, c.applyError(err)
	}
	for _, srv := range f.Configuration().Servers {
		n, err := ParseServerID(srv.ID)
		if err != nil {
			n = -1
		}
		v := &pb.QuorumVoter{NodeId: n, Address: string(srv.Address), MatchIndex: -1, Suffrage: suffrage(srv.Suffrage)}
		resp.Voters = append(resp.Voters, v)
	}
	return resp, nil
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	case raft.Staging:
		return "staging"
	}
	return s.String()
}

// AddVoter adds a controller to the quorum, through the leader. The new node
// must be started (without bootstrapping: it is not in its own --quorum) at
// the address given.
func (s *service) AddVoter(ctx context.Context, req *pb.AddVoterRequest) (*pb.AddVoterResponse, error) {
	return wrap(&pb.AddVoterResponse{}, s.c.AddVoter(ctx, Voter{ID: req.GetVoterId(), Addr: req.GetAddress()}))
}

// AddVoter adds v to the Raft configuration. Only the active controller can.
func (c *Controller) AddVoter(ctx context.Context, v Voter) error {
	if v.ID <= 0 {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "voter id %d is not positive", v.ID)
	}
	if host, port, err := net.SplitHostPort(v.Addr); err != nil || host == "" {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "voter address %q is not host:port", v.Addr)
	} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "voter address %q has no valid port", v.Addr)
	}
	r, cfg, err := c.leaderConfiguration()
	if err != nil {
		return err
	}
	for _, srv := range cfg.Servers {
		if srv.ID == ServerID(v.ID) && srv.Suffrage == raft.Voter {
			return errorf(pb.ErrorCode_DUPLICATE_VOTER, "node %d already votes", v.ID)
		}
		if string(srv.Address) == v.Addr && srv.ID != ServerID(v.ID) {
			return errorf(pb.ErrorCode_INVALID_REQUEST, "address %s belongs to node %s", v.Addr, srv.ID)
		}
	}
	if err := r.AddVoter(ServerID(v.ID), raft.ServerAddress(v.Addr), 0, c.applyTimeout(ctx)).Error(); err != nil {
		return c.applyError(err)
	}
	return nil
}

// RemoveVoter removes a controller from the quorum, through the leader.
func (s *service) RemoveVoter(ctx context.Context, req *pb.RemoveVoterRequest) (*pb.RemoveVoterResponse, error) {
	return wrap(&pb.RemoveVoterResponse{}, s.c.RemoveVoter(ctx, req.GetVoterId()))
}

// RemoveVoter removes node id from the Raft configuration. Only the active
// controller can; removing itself makes it step down.
func (c *Controller) RemoveVoter(ctx context.Context, id int32) error {
	r, cfg, err := c.leaderConfiguration()
	if err != nil {
		return err
	}
	found := false
	for _, srv := range cfg.Servers {
		if srv.ID == ServerID(id) {
			found = true
		}
	}
	if !found {
		return errorf(pb.ErrorCode_VOTER_NOT_FOUND, "node %d is not in the quorum", id)
	}
	if err := r.RemoveServer(ServerID(id), 0, c.applyTimeout(ctx)).Error(); err != nil {
		return c.applyError(err)
	}
	return nil
}

func (c *Controller) leaderConfiguration() (*raft.Raft, raft.Configuration, error) {
	if c.node == nil || !c.active.Load() {
		return nil, raft.Configuration{}, c.notController()
	}
	r := c.node.raft
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, raft.Configuration{}, c.applyError(err)
	}
	return r, f.Configuration(), nil
}
