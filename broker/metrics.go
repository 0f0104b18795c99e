package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratalog/strata/internal/rpcmetrics"
	"github.com/stratalog/strata/raftfsm"
	"github.com/stratalog/strata/storage"
)

// The broker's Prometheus metrics. Almost everything is read from the
// broker's state when Prometheus scrapes (Collect walks the hosted
// partitions); the data path only adds to a topic's atomic counters through
// a pointer its Partition holds: no lock, no allocation, no map lookup.
//
//	strata_broker_topic_bytes_in_total{topic}              produced batch bytes appended as leader
//	strata_broker_topic_records_in_total{topic}            produced records appended as leader
//	strata_broker_topic_bytes_out_total{topic}             batch bytes sent to consumers
//	strata_broker_topic_records_out_total{topic}           records in the batches sent to consumers
//	strata_broker_topic_replication_bytes_in_total{topic}  bytes a follower replica appended
//	strata_broker_topic_replication_bytes_out_total{topic} bytes sent to follower replicas
//	strata_broker_log_size_bytes{topic}, strata_broker_log_segments{topic}
//	strata_broker_partitions, strata_broker_leader_partitions,
//	strata_broker_under_replicated_partitions, strata_broker_under_min_isr_partitions
//	strata_broker_isr_shrinks_total, strata_broker_isr_expands_total
//	strata_broker_purgatory_size{purgatory="produce"|"fetch"}
//	strata_broker_metadata_offset, strata_broker_metadata_lag
//	strata_broker_ready, strata_broker_fenced, strata_broker_heartbeat_age_seconds
//	strata_rpc_* {server="broker"} (package rpcmetrics)
//	strata_group_* (consumer groups this broker coordinates: groups_metrics.go)
//
// Per-topic series disappear when the topic leaves the metadata.

// topicStats are one topic's data-path counters on this broker.
type topicStats struct {
	bytesIn, recordsIn        atomic.Uint64
	bytesOut, recordsOut      atomic.Uint64
	replBytesIn, replBytesOut atomic.Uint64
}

// brokerMetrics is the broker's prometheus.Collector.
type brokerMetrics struct {
	b   *Broker
	rpc *rpcmetrics.Metrics

	isrShrinks, isrExpands atomic.Uint64
	// metadataHW is the controllers' latest metadata offset, from the last
	// FetchMetadata answer.
	metadataHW atomic.Int64

	mu struct {
		sync.Mutex
		topics map[string]*topicStats
		reg    prometheus.Registerer // set by Broker.RegisterMetrics
		extra  []prometheus.Collector
	}
}

func newBrokerMetrics(b *Broker) *brokerMetrics {
	m := &brokerMetrics{b: b, rpc: rpcmetrics.New("broker")}
	m.mu.topics = map[string]*topicStats{}
	return m
}

// topic returns topic's counters, creating them (not on the data path: when
// a partition replica is created).
func (m *brokerMetrics) topic(name string) *topicStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.mu.topics[name]
	if s == nil {
		s = &topicStats{}
		m.mu.topics[name] = s
	}
	return s
}

// retainTopics drops the counters of topics img no longer has (deleted).
func (m *brokerMetrics) retainTopics(img *raftfsm.Image) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.mu.topics {
		if img.Topic(name) == nil {
			delete(m.mu.topics, name)
		}
	}
}

// isrChanged counts a committed ISR change of a partition this broker leads.
func (m *brokerMetrics) isrChanged(before, after int) {
	switch {
	case after < before:
		m.isrShrinks.Add(1)
	case after > before:
		m.isrExpands.Add(1)
	}
}

// RegisterMetrics registers the broker's metrics (and every collector added
// with AddCollector) with reg, typically a per-node prometheus.Registry.
func (b *Broker) RegisterMetrics(reg prometheus.Registerer) error {
	m := b.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := reg.Register(m); err != nil {
		return err
	}
	if b.groups != nil {
		if err := reg.Register(groupMetrics{b.groups}); err != nil {
			return err
		}
	}
	for _, c := range m.mu.extra {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	m.mu.reg = reg
	return nil
}

// AddCollector adds the metrics of a broker component that keeps its own
// state to the broker's: they are registered with the registry given to
// RegisterMetrics, now or when it is called. (The group coordinator's
// metrics, groups_metrics.go, are registered by RegisterMetrics itself.)
func (b *Broker) AddCollector(c prometheus.Collector) error {
	m := b.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.reg != nil {
		return m.mu.reg.Register(c)
	}
	m.mu.extra = append(m.mu.extra, c)
	return nil
}

var (
	topicLabels = []string{"topic"}

	descBytesIn      = prometheus.NewDesc("strata_broker_topic_bytes_in_total", "Produced batch bytes appended by this broker as partition leader.", topicLabels, nil)
	descRecordsIn    = prometheus.NewDesc("strata_broker_topic_records_in_total", "Produced records appended by this broker as partition leader.", topicLabels, nil)
	descBytesOut     = prometheus.NewDesc("strata_broker_topic_bytes_out_total", "Batch bytes sent to consumers.", topicLabels, nil)
	descRecordsOut   = prometheus.NewDesc("strata_broker_topic_records_out_total", "Records in the batches sent to consumers.", topicLabels, nil)
	descReplIn       = prometheus.NewDesc("strata_broker_topic_replication_bytes_in_total", "Batch bytes this broker appended as a follower replica.", topicLabels, nil)
	descReplOut      = prometheus.NewDesc("strata_broker_topic_replication_bytes_out_total", "Batch bytes sent to follower replicas.", topicLabels, nil)
	descLogSize      = prometheus.NewDesc("strata_broker_log_size_bytes", "Size of the topic's partition logs on this broker.", topicLabels, nil)
	descLogSegments  = prometheus.NewDesc("strata_broker_log_segments", "Segments of the topic's partition logs on this broker.", topicLabels, nil)
	descPartitions   = prometheus.NewDesc("strata_broker_partitions", "Partition replicas this broker hosts.", nil, nil)
	descLeaders      = prometheus.NewDesc("strata_broker_leader_partitions", "Partitions this broker leads.", nil, nil)
	descURP          = prometheus.NewDesc("strata_broker_under_replicated_partitions", "Partitions this broker leads whose ISR is smaller than their replica set.", nil, nil)
	descUnderMinISR  = prometheus.NewDesc("strata_broker_under_min_isr_partitions", "Partitions this broker leads whose ISR is below min.insync.replicas (acks=all fails).", nil, nil)
	descShrinks      = prometheus.NewDesc("strata_broker_isr_shrinks_total", "ISR shrinks of partitions this broker leads.", nil, nil)
	descExpands      = prometheus.NewDesc("strata_broker_isr_expands_total", "ISR expansions of partitions this broker leads.", nil, nil)
	descPurgatory    = prometheus.NewDesc("strata_broker_purgatory_size", "Delayed requests waiting: acks=all produces for the high watermark, fetch long polls for data.", []string{"purgatory"}, nil)
	descMetaOffset   = prometheus.NewDesc("strata_broker_metadata_offset", "Offset of the metadata log this broker's image has applied.", nil, nil)
	descMetaLag      = prometheus.NewDesc("strata_broker_metadata_lag", "Metadata records the controllers have that this broker has not applied yet.", nil, nil)
	descReady        = prometheus.NewDesc("strata_broker_ready", "1 when the broker is registered, unfenced and caught up with the metadata log (its /readyz).", nil, nil)
	descFenced       = prometheus.NewDesc("strata_broker_fenced", "1 while the broker is fenced as far as it knows.", nil, nil)
	descHeartbeatAge = prometheus.NewDesc("strata_broker_heartbeat_age_seconds", "Time since the active controller last answered a heartbeat.", nil, nil)
)

// Describe implements prometheus.Collector.
func (m *brokerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBytesIn, descRecordsIn, descBytesOut, descRecordsOut, descReplIn, descReplOut,
		descLogSize, descLogSegments, descPartitions, descLeaders, descURP, descUnderMinISR, descShrinks, descExpands,
		descPurgatory, descMetaOffset, descMetaLag, descReady, descFenced, descHeartbeatAge} {
		ch <- d
	}
	m.rpc.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *brokerMetrics) Collect(ch chan<- prometheus.Metric) {
	b := m.b
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	m.mu.Lock()
	for name, s := range m.mu.topics {
		counter(descBytesIn, s.bytesIn.Load(), name)
		counter(descRecordsIn, s.recordsIn.Load(), name)
		counter(descBytesOut, s.bytesOut.Load(), name)
		counter(descRecordsOut, s.recordsOut.Load(), name)
		counter(descReplIn, s.replBytesIn.Load(), name)
		counter(descReplOut, s.replBytesOut.Load(), name)
	}
	m.mu.Unlock()

	type logTotals struct{ size, segments int64 }
	logs := map[string]*logTotals{}
	var hosted, leaders, urp, underMin int
	for _, p := range b.replicas.all() {
		hosted++
		v := p.metricsView()
		if v.topic == "" {
			continue // created, no state applied yet
		}
		t := logs[v.topic]
		if t == nil {
			t = &logTotals{}
			logs[v.topic] = t
		}
		t.size += p.log.Size()
		t.segments += int64(p.log.NumSegments())
		if !v.leader {
			continue
		}
		leaders++
		if v.isr < v.replicas {
			urp++
		}
		if v.isr < v.minISR {
			underMin++
		}
	}
	for name, t := range logs {
		gauge(descLogSize, float64(t.size), name)
		gauge(descLogSegments, float64(t.segments), name)
	}
	gauge(descPartitions, float64(hosted))
	gauge(descLeaders, float64(leaders))
	gauge(descURP, float64(urp))
	gauge(descUnderMinISR, float64(underMin))
	counter(descShrinks, m.isrShrinks.Load())
	counter(descExpands, m.isrExpands.Load())

	var produces, fetches int
	if b.svc != nil {
		produces, fetches = b.svc.produces.Delayed(), b.svc.fetches.Delayed()
	}
	gauge(descPurgatory, float64(produces), "produce")
	gauge(descPurgatory, float64(fetches), "fetch")

	off := b.image.Load().Offset()
	gauge(descMetaOffset, float64(off))
	gauge(descMetaLag, float64(max(m.metadataHW.Load()-off, 0)))
	gauge(descReady, boolValue(b.Ready()))
	gauge(descFenced, boolValue(b.fenced.Load()))
	if at := b.heartbeatOK.Load(); at > 0 {
		gauge(descHeartbeatAge, time.Since(time.Unix(0, at)).Seconds())
	}
	m.rpc.Collect(ch)
}

func boolValue(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// partitionMetricsView is what the metrics read of a partition's state.
type partitionMetricsView struct {
	topic                 string
	leader                bool
	isr, replicas, minISR int
}

func (p *Partition) metricsView() partitionMetricsView {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return partitionMetricsView{
		topic: p.mu.state.Topic, leader: p.mu.leader,
		isr: len(p.mu.state.ISR), replicas: len(p.mu.state.Replicas), minISR: p.mu.cfg.MinInsyncReplicas,
	}
}

// countIn adds a leader append to the topic's produce counters.
func (s *topicStats) countIn(info storage.AppendInfo) {
	if s != nil {
		s.bytesIn.Add(uint64(info.Bytes))
		s.recordsIn.Add(uint64(info.Records))
	}
}

// countReplicated adds a follower append to the topic's replication counter.
func (s *topicStats) countReplicated(info storage.AppendInfo) {
	if s != nil {
		s.replBytesIn.Add(uint64(info.Bytes))
	}
}

// countOut adds bytes (and records) sent by a fetch: to a consumer, or to a
// follower replica (replication).
func (s *topicStats) countOut(follower bool, bytes, records int64) {
	if s == nil {
		return
	}
	if follower {
		s.replBytesOut.Add(uint64(bytes))
		return
	}
	s.bytesOut.Add(uint64(bytes))
	s.recordsOut.Add(uint64(records))
}
