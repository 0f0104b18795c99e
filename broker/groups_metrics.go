package broker

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratalog/strata/broker/group"
)

// groupMetrics exports the consumer groups this broker coordinates, read
// when Prometheus scrapes (each group is reported by its coordinator only,
// so sum() across brokers is the cluster's value):
//
//	strata_group_members{group}                       members of the group
//	strata_group_committed_offset{group,topic,partition}
//	strata_group_lag{group,topic,partition}           records between the committed offset and the partition's end
//
// The partitions' ends come from their leaders with ListOffsets (the same
// call DescribeGroups makes), bounded by groupMetricsTimeout; a partition
// whose end could not be learned has no lag series in that scrape.
type groupMetrics struct{ c *coordinator }

const groupMetricsTimeout = 3 * time.Second

var (
	groupTPLabels      = []string{"group", "topic", "partition"}
	descGroupMembers   = prometheus.NewDesc("strata_group_members", "Members of a consumer group this broker coordinates.", []string{"group"}, nil)
	descGroupCommitted = prometheus.NewDesc("strata_group_committed_offset", "A consumer group's committed offset of a partition.", groupTPLabels, nil)
	descGroupLag       = prometheus.NewDesc("strata_group_lag", "Records between a consumer group's committed offset and the partition's end (high watermark).", groupTPLabels, nil)
)

// Describe implements prometheus.Collector.
func (m groupMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descGroupMembers
	ch <- descGroupCommitted
	ch <- descGroupLag
}

// Collect implements prometheus.Collector.
func (m groupMetrics) Collect(ch chan<- prometheus.Metric) {
	m.c.mu.Lock()
	shards := make([]*group.Shard, 0, len(m.c.shards))
	for _, cs := range m.c.shards {
		shards = append(shards, cs.shard)
	}
	m.c.mu.Unlock()
	committed := map[string]map[group.TP]int64{}
	seen := map[group.TP]bool{}
	var tps []group.TP
	for _, s := range shards {
		for _, g := range s.List(nil) {
			ch <- prometheus.MustNewConstMetric(descGroupMembers, prometheus.GaugeValue, float64(g.Members), g.GroupId)
			offs, _, err := s.Committed(g.GroupId)
			if err != nil {
				continue // the shard is unloading: its new coordinator reports the group
			}
			committed[g.GroupId] = offs
			for tp := range offs {
				if !seen[tp] {
					seen[tp] = true
					tps = append(tps, tp)
				}
			}
		}
	}
	if len(tps) == 0 {
		return
	}
	parent := m.c.b.ctx
	if parent == nil {
		parent = context.Background() // not started
	}
	ctx, cancel := context.WithTimeout(parent, groupMetricsTimeout)
	defer cancel()
	ends := m.c.listOffsets(ctx, tps, LatestTimestamp)
	for id, offs := range committed {
		for tp, off := range offs {
			part := strconv.Itoa(int(tp.Partition))
			ch <- prometheus.MustNewConstMetric(descGroupCommitted, prometheus.GaugeValue, float64(off), id, tp.Topic, part)
			if end, ok := ends[tp]; ok && off >= 0 {
				ch <- prometheus.MustNewConstMetric(descGroupLag, prometheus.GaugeValue, float64(max(end-off, 0)), id, tp.Topic, part)
			}
		}
	}
}
