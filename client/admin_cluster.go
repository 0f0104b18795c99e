package client

import (
	"context"
	"net"
	"sort"
	"strconv"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// BrokerDescription is one registered broker as the controller sees it.
type BrokerDescription struct {
	ID    int32
	Addr  string // host:port of its first listener
	Rack  string
	Epoch int64 // the broker epoch of its current registration
	// Fenced brokers lead nothing and are out of every ISR (not heartbeating,
	// or not caught up with the metadata log yet).
	Fenced               bool
	InControlledShutdown bool
}

// ClusterDescription is the cluster's brokers and active controller.
type ClusterDescription struct {
	ClusterID      string
	ControllerID   int32 // the active controller's node id, -1 unknown
	ControllerAddr string
	Brokers        []BrokerDescription // by id, fenced ones included
	MetadataOffset int64
}

// DescribeCluster describes every registered broker (fenced ones too) and
// the active controller.
func (a *Admin) DescribeCluster(ctx context.Context) (*ClusterDescription, error) {
	resp, err := callController(ctx, a, pb.ControllerServiceClient.DescribeCluster, &pb.DescribeClusterRequest{IncludeFenced: true})
	if err != nil {
		return nil, err
	}
	d := &ClusterDescription{ClusterID: resp.ClusterId, ControllerID: resp.ControllerId, ControllerAddr: resp.ControllerAddress,
		MetadataOffset: resp.MetadataOffset}
	for _, b := range resp.Brokers {
		bd := BrokerDescription{ID: b.BrokerId, Rack: b.Rack, Epoch: b.BrokerEpoch, Fenced: b.Fenced, InControlledShutdown: b.InControlledShutdown}
		if len(b.Listeners) > 0 {
			bd.Addr = net.JoinHostPort(b.Listeners[0].Host, strconv.Itoa(int(b.Listeners[0].Port)))
		}
		d.Brokers = append(d.Brokers, bd)
	}
	sort.Slice(d.Brokers, func(i, j int) bool { return d.Brokers[i].ID < d.Brokers[j].ID })
	return d, nil
}

// QuorumVoter is one member of the controller quorum.
type QuorumVoter struct {
	ID   int32
	Addr string
	// MatchIndex is the last Raft index known replicated to the voter; -1
	// when unknown (the Raft library does not expose followers' progress).
	MatchIndex int64
	Suffrage   string // "voter", "nonvoter", "staging"
}

// Lag is how many committed entries the voter trails by, -1 when unknown.
func (v QuorumVoter) Lag(q *QuorumDescription) int64 {
	if v.ID == q.LeaderID {
		return 0
	}
	if v.MatchIndex < 0 {
		return -1
	}
	return max(0, int64(q.CommitIndex)-v.MatchIndex)
}

// QuorumDescription is the controller quorum's Raft state, as its leader
// reports it (or, when the leader can not be reached, another voter).
type QuorumDescription struct {
	LeaderID     int32 // -1 unknown
	LeaderAddr   string
	Term         uint64
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
	Voters       []QuorumVoter // by id
}

// DescribeQuorum describes the controller quorum: leader, term, indexes
// and voters.
func (a *Admin) DescribeQuorum(ctx context.Context) (*QuorumDescription, error) {
	resp, err := callController(ctx, a, pb.ControllerServiceClient.DescribeQuorum, &pb.DescribeQuorumRequest{})
	if err != nil {
		return nil, err
	}
	// Any voter answers; the leader's indexes are the authoritative ones.
	if resp.LeaderAddress != "" {
		if cc, err := a.c.conn(resp.LeaderAddress); err == nil {
			rctx, cancel := context.WithTimeout(ctx, a.c.cfg.RequestTimeout)
			if lr, err := pb.NewControllerServiceClient(cc).DescribeQuorum(rctx, &pb.DescribeQuorumRequest{}); err == nil {
				resp = lr
			}
			cancel()
		}
	}
	q := &QuorumDescription{LeaderID: resp.LeaderId, LeaderAddr: resp.LeaderAddress, Term: resp.Term,
		LastIndex: resp.LastIndex, CommitIndex: resp.CommitIndex, AppliedIndex: resp.AppliedIndex}
	for _, v := range resp.Voters {
		q.Voters = append(q.Voters, QuorumVoter{ID: v.NodeId, Addr: v.Address, MatchIndex: v.MatchIndex, Suffrage: v.Suffrage})
	}
	sort.Slice(q.Voters, func(i, j int) bool { return q.Voters[i].ID < q.Voters[j].ID })
	return q, nil
}
