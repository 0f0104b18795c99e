package controller

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratalog/strata/raftfsm"
)

// The controller's Prometheus metrics, all read when Prometheus scrapes:
// Raft's own counters (hashicorp/raft), the metadata image, and the RPC
// metrics of the ControllerService (package rpcmetrics, server="controller").
//
//	strata_controller_active                    1 on the active controller
//	strata_controller_ready                     1 when in the quorum with a known leader (/readyz)
//	strata_controller_leader_id                 the Raft leader this node knows, -1 if none
//	strata_controller_raft_state{state}         1 for the node's Raft state
//	strata_controller_raft_term, _raft_commit_index, _raft_applied_index, _raft_last_log_index
//	strata_controller_raft_last_contact_seconds a follower's time since it heard from the leader
//	strata_controller_raft_voters               voters in the latest Raft configuration
//	strata_controller_metadata_offset           offset of the metadata image this node applied
//	strata_controller_event_queue_size          requests waiting for the active controller's loop
//
// Cluster-wide gauges come from the active controller's image (0 on the
// others, as Kafka does), so sum() across controllers is the cluster value:
//
//	strata_controller_brokers, strata_controller_fenced_brokers,
//	strata_controller_topics, strata_controller_partitions,
//	strata_controller_offline_partitions, strata_controller_preferred_replica_imbalance
type controllerMetrics struct{ c *Controller }

var (
	descActive      = prometheus.NewDesc("strata_controller_active", "1 on the active controller (the Raft leader, caught up), else 0.", nil, nil)
	descReady       = prometheus.NewDesc("strata_controller_ready", "1 when this node is a voter of a quorum with a known leader (its /readyz).", nil, nil)
	descLeaderID    = prometheus.NewDesc("strata_controller_leader_id", "Node id of the Raft leader as this node knows it, -1 if unknown.", nil, nil)
	descRaftState   = prometheus.NewDesc("strata_controller_raft_state", "1 for this node's Raft state.", []string{"state"}, nil)
	descTerm        = prometheus.NewDesc("strata_controller_raft_term", "Current Raft term.", nil, nil)
	descCommit      = prometheus.NewDesc("strata_controller_raft_commit_index", "Raft commit index.", nil, nil)
	descApplied     = prometheus.NewDesc("strata_controller_raft_applied_index", "Last Raft index applied to the state machine.", nil, nil)
	descLastLog     = prometheus.NewDesc("strata_controller_raft_last_log_index", "Last index in this node's Raft log.", nil, nil)
	descLastContact = prometheus.NewDesc("strata_controller_raft_last_contact_seconds", "Time since this follower last heard from the leader (0 on the leader; absent before any contact).", nil, nil)
	descVoters      = prometheus.NewDesc("strata_controller_raft_voters", "Voters in the latest Raft configuration.", nil, nil)
	descMetaOffset  = prometheus.NewDesc("strata_controller_metadata_offset", "Offset of the metadata image this controller has applied.", nil, nil)
	descQueue       = prometheus.NewDesc("strata_controller_event_queue_size", "Requests queued for the active controller's event loop.", nil, nil)
	descBrokers     = prometheus.NewDesc("strata_controller_brokers", "Registered brokers (active controller only).", nil, nil)
	descFenced      = prometheus.NewDesc("strata_controller_fenced_brokers", "Fenced brokers (active controller only).", nil, nil)
	descTopics      = prometheus.NewDesc("strata_controller_topics", "Topics (active controller only).", nil, nil)
	descPartitions  = prometheus.NewDesc("strata_controller_partitions", "Partitions (active controller only).", nil, nil)
	descOffline     = prometheus.NewDesc("strata_controller_offline_partitions", "Partitions without a leader (active controller only).", nil, nil)
	descImbalance   = prometheus.NewDesc("strata_controller_preferred_replica_imbalance", "Partitions not led by their preferred (first) replica (active controller only).", nil, nil)
	controllerDescs = []*prometheus.Desc{descActive, descReady, descLeaderID, descRaftState, descTerm, descCommit, descApplied, descLastLog, descLastContact, descVoters, descMetaOffset, descQueue, descBrokers, descFenced, descTopics, descPartitions, descOffline, descImbalance}
	raftStateNames  = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}
)

// RegisterMetrics registers the controller's metrics with reg, typically a
// per-node prometheus.Registry.
func (c *Controller) RegisterMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(controllerMetrics{c}); err != nil {
		return err
	}
	return reg.Register(c.rpc)
}

// Ready reports whether this controller is a voter of the quorum and knows
// its leader (its /readyz), and if not, why.
func (c *Controller) Ready() (bool, string) {
	if c.node == nil {
		return false, "controller: not started"
	}
	voter, err := c.isVoter()
	switch {
	case err != nil:
		return false, "controller: " + err.Error()
	case !voter:
		return false, "controller: not a voter of the quorum"
	}
	if id, _ := c.Leader(); id <= 0 {
		return false, "controller: no known quorum leader"
	}
	return true, "ready"
}

// isVoter reports whether this node is a voter in the latest Raft
// configuration.
func (c *Controller) isVoter() (bool, error) {
	f := c.node.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, err
	}
	me := ServerID(c.cfg.NodeID)
	for _, s := range f.Configuration().Servers {
		if s.ID == me && s.Suffrage == raft.Voter {
			return true, nil
		}
	}
	return false, nil
}

// Describe implements prometheus.Collector.
func (m controllerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range controllerDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m controllerMetrics) Collect(ch chan<- prometheus.Metric) {
	c := m.c
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	active := c.IsActive()
	gauge(descActive, boolValue(active))
	ready, _ := c.Ready()
	gauge(descReady, boolValue(ready))
	leader, _ := c.Leader()
	gauge(descLeaderID, float64(leader))
	img := c.Image()
	gauge(descMetaOffset, float64(img.Offset()))
	gauge(descQueue, float64(len(c.ops)))
	if r := c.raft(); r != nil {
		st := r.State()
		for _, s := range raftStateNames {
			gauge(descRaftState, boolValue(s == st), s.String())
		}
		gauge(descTerm, float64(r.CurrentTerm()))
		gauge(descCommit, float64(r.CommitIndex()))
		gauge(descApplied, float64(r.AppliedIndex()))
		gauge(descLastLog, float64(r.LastIndex()))
		switch last := r.LastContact(); {
		case st == raft.Leader:
			gauge(descLastContact, 0)
		case !last.IsZero():
			gauge(descLastContact, time.Since(last).Seconds())
		}
		if f := r.GetConfiguration(); f.Error() == nil {
			voters := 0
			for _, s := range f.Configuration().Servers {
				if s.Suffrage == raft.Voter {
					voters++
				}
			}
			gauge(descVoters, float64(voters))
		}
	}
	var cl clusterCounts
	if active {
		cl = countCluster(img)
	}
	gauge(descBrokers, float64(cl.brokers))
	gauge(descFenced, float64(cl.fenced))
	gauge(descTopics, float64(cl.topics))
	gauge(descPartitions, float64(cl.partitions))
	gauge(descOffline, float64(cl.offline))
	gauge(descImbalance, float64(cl.imbalance))
}

// raft is the Raft node once started, else nil.
func (c *Controller) raft() *raft.Raft {
	if c.node == nil {
		return nil
	}
	return c.node.raft
}

type clusterCounts struct {
	brokers, fenced, topics, partitions, offline, imbalance int
}

// countCluster counts the cluster-wide gauges in img.
func countCluster(img *raftfsm.Image) clusterCounts {
	var cl clusterCounts
	for _, b := range img.Brokers() {
		cl.brokers++
		if b.Fenced {
			cl.fenced++
		}
	}
	cl.topics = img.NumTopics()
	img.RangeTopics(func(t *raftfsm.Topic) bool {
		for _, p := range t.Partitions() {
			cl.partitions++
			if p.Leader == raftfsm.NoLeader {
				cl.offline++
			} else if len(p.Replicas) > 0 && p.Leader != p.Replicas[0] {
				cl.imbalance++
			}
		}
		return true
	})
	return cl
}

func boolValue(v bool) float64 {
	if v {
		return 1
	}
	return 0
}
