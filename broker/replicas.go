package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/raftfsm"
	"github.com/stratalog/strata/storage"
)

// replicaManager turns each metadata image into this broker's replicas: the
// partitions it leads (MakeLeader), follows (MakeFollower + a fetcher from the
// leader), and no longer hosts (its fetcher stopped, its log deleted).
type replicaManager struct {
	b *Broker

	mu struct {
		sync.RWMutex
		parts     map[storage.TopicPartition]*Partition
		throttled map[storage.TopicPartition]bool // followers fetching as reassignment traffic
	}
	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn
}

func newReplicaManager(b *Broker) *replicaManager {
	m := &replicaManager{b: b, conns: map[string]*grpc.ClientConn{}}
	m.mu.parts = map[storage.TopicPartition]*Partition{}
	m.mu.throttled = map[storage.TopicPartition]bool{}
	return m
}

// get returns this broker's replica of a partition, or nil.
func (m *replicaManager) get(topic string, partition int32) *Partition {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.mu.parts[storage.TopicPartition{Topic: topic, Partition: partition}]
}

// all returns every replica this broker hosts.
func (m *replicaManager) all() []*Partition {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Partition, 0, len(m.mu.parts))
	for _, p := range m.mu.parts {
		out = append(out, p)
	}
	return out
}

// partitionConfig reads a topic's replication settings over the broker's.
func (m *replicaManager) partitionConfig(t *raftfsm.Topic) PartitionConfig {
	cfg := PartitionConfig{MinInsyncReplicas: m.b.cfg.MinInsyncReplicas, ReplicaLagTimeMax: m.b.cfg.ReplicaLagTimeMax}
	if v, ok := t.Config("min.insync.replicas"); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			cfg.MinInsyncReplicas = n
		}
	}
	return cfg
}

// apply brings the replicas in line with img.
func (m *replicaManager) apply(img *raftfsm.Image) {
	me := m.b.cfg.NodeID
	seen := map[storage.TopicPartition]bool{}
	img.RangeTopics(func(t *raftfsm.Topic) bool {
		for i, ip := range t.Partitions() {
			if !ip.IsReplica(me) {
				continue
			}
			tp := storage.TopicPartition{Topic: t.Name(), Partition: int32(i)}
			seen[tp] = true
			if err := m.applyPartition(img, t, tp, ip); err != nil {
				m.b.log.Error("broker: apply partition state", "topic", tp.Topic, "partition", tp.Partition, "err", err)
			}
		}
		return true
	})
	m.mu.Lock()
	var gone []storage.TopicPartition
	for tp := range m.mu.parts {
		if !seen[tp] {
			gone = append(gone, tp)
		}
	}
	m.mu.Unlock()
	for _, tp := range gone {
		m.remove(tp)
	}
	m.b.metrics.retainTopics(img)
}

func (m *replicaManager) applyPartition(img *raftfsm.Image, t *raftfsm.Topic, tp storage.TopicPartition, ip *raftfsm.Partition) error {
	st := PartitionState{
		TopicID: t.ID(), Topic: t.Name(), Index: tp.Partition,
		Replicas: slices.Clone(ip.Replicas), ISR: slices.Clone(ip.ISR),
		Leader: ip.Leader, LeaderEpoch: ip.LeaderEpoch, PartitionEpoch: ip.PartitionEpoch,
	}
	m.mu.RLock()
	p := m.mu.parts[tp]
	m.mu.RUnlock()
	if p != nil {
		if cur, _ := p.State(); cur.TopicID != st.TopicID {
			// The topic was deleted and created again under the same name.
			m.remove(tp)
			p = nil
		}
	}
	logCfg, err := m.b.cfg.Log.FromTopicConfig(t.Configs())
	if err != nil {
		logCfg = m.b.cfg.Log // the controller validated the configs; keep going
	}
	if p == nil {
		l, err := m.b.logs.GetOrCreate(tp, logCfg)
		if err != nil {
			return err
		}
		p = NewPartition(m.b.cfg.NodeID, l, m.partitionConfig(t), nil)
		p.stats = m.b.metrics.topic(tp.Topic)
		p.published = func() {
			if svc := m.b.svc; svc != nil {
				svc.fetches.CheckAndComplete(tp)
			}
		}
		m.mu.Lock()
		m.mu.parts[tp] = p
		m.mu.Unlock()
	} else {
		p.SetConfig(m.partitionConfig(t))
		if err := p.Log().SetConfig(logCfg); err != nil {
			return err
		}
	}
	if st.Leader == m.b.cfg.NodeID {
		m.b.fetchers.RemovePartition(p)
		if _, err := p.MakeLeader(st); err != nil && !isStale(err) {
			return err
		}
		if m.b.svc != nil {
			m.b.svc.partitionMoved(tp) // an ISR change can commit waiting produces
		}
		return nil
	}
	changed, err := p.MakeFollower(st)
	if err != nil {
		if isStale(err) {
			return nil
		}
		return err
	}
	if st.Leader < 0 {
		m.b.fetchers.RemovePartition(p)
		return nil
	}
	throttled := slices.Contains(ip.Adding, m.b.cfg.NodeID) // reassignment traffic
	m.mu.Lock()
	throttleChanged := m.mu.throttled[tp] != throttled
	m.mu.throttled[tp] = throttled
	m.mu.Unlock()
	if changed || throttleChanged {
		addr, ok := brokerAddr(img, st.Leader)
		if !ok {
			return fmt.Errorf("leader %d has no %s listener in the metadata", st.Leader, ListenerName)
		}
		m.b.fetchers.AddPartition(p, st.Leader, addr, throttled)
	}
	return nil
}

func isStale(err error) bool { return err != nil && errors.Is(err, ErrStaleState) }

// remove stops hosting a partition: its fetcher stops and its log is deleted.
func (m *replicaManager) remove(tp storage.TopicPartition) {
	m.mu.Lock()
	p := m.mu.parts[tp]
	delete(m.mu.parts, tp)
	delete(m.mu.throttled, tp)
	m.mu.Unlock()
	if p == nil {
		return
	}
	m.b.fetchers.RemovePartition(p)
	if err := m.b.logs.Delete(tp); err != nil {
		m.b.log.Error("broker: delete log", "topic", tp.Topic, "partition", tp.Partition, "err", err)
	}
}

// brokerClient returns a cached client for another broker.
func (m *replicaManager) brokerClient(id int32, addr string) (pb.BrokerServiceClient, error) {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if cc := m.conns[addr]; cc != nil {
		return replicaClient{pb.NewBrokerServiceClient(cc), cc}, nil
	}
	opts := append(wire.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if m.b.cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(m.b.cfg.Dialer))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	m.conns[addr] = cc
	return replicaClient{pb.NewBrokerServiceClient(cc), cc}, nil
}

// replicaClient is a connection to another broker; its fetches decode into
// pooled buffers (PooledFetcher).
type replicaClient struct {
	pb.BrokerServiceClient
	cc *grpc.ClientConn
}

func (c replicaClient) FetchPooled(ctx context.Context, req *pb.FetchRequest, into *wire.ReceivedFetch, opts ...grpc.CallOption) error {
	return c.cc.Invoke(ctx, pb.BrokerService_Fetch_FullMethodName, req, into, append(opts, wire.CallOption())...)
}

func (m *replicaManager) closeConns() {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	for a, cc := range m.conns {
		cc.Close()
		delete(m.conns, a)
	}
}

// leaders returns the partitions this broker leads now.
func (m *replicaManager) leaders() []*Partition {
	var out []*Partition
	for _, p := range m.all() {
		if _, leader := p.State(); leader {
			out = append(out, p)
		}
	}
	return out
}
