package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/stratalog/strata/client"
)

// freeAddrs returns n loopback addresses that were free a moment ago.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// startTestNode runs a combined node (strata dev's setup) in process.
func startTestNode(t *testing.T) (*node, serverOptions) {
	t.Helper()
	addrs := freeAddrs(t, 3)
	o := serverOptions{
		nodeID: 1, roles: "controller,broker", dataDir: filepath.Join(t.TempDir(), "data"),
		brokerAddr: addrs[0], controllerAddr: addrs[1], metricsAddr: addrs[2],
		quorum: "1@" + addrs[1], timeouts: "tuned", sessionTimeout: 4 * time.Second,
		snapThreshold: 8192, logLevel: "error", logFormat: "text",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := startNode(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.close() })
	if err := waitReady(ctx, n, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return n, o
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestMetricsEndpoint runs a produce/consume cycle against a combined node
// and scrapes /metrics: every family operators look for is there, and the
// data-path counters add up to what was produced and consumed.
func TestMetricsEndpoint(t *testing.T) {
	n, o := startTestNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.New(client.Config{Bootstrap: []string{o.brokerAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := client.NewAdmin(cl).CreateTopics(ctx, []client.NewTopic{{Name: "obs", Partitions: 3, ReplicationFactor: 1}}, client.CreateTopicsOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := client.NewProducer(cl, client.ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const records = 30
	for i := range records {
		if _, err := p.SendSync(ctx, &client.Record{Topic: "obs", Partition: int32(i % 3), Value: fmt.Appendf(nil, "value %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	p.Close(ctx)
	cons, err := client.NewConsumer(cl, client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest, FetchMaxWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if err := cons.Assign(client.TopicPartition{Topic: "obs", Partition: 0}, client.TopicPartition{Topic: "obs", Partition: 1}, client.TopicPartition{Topic: "obs", Partition: 2}); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < records; {
		recs, err := cons.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got += len(recs)
	}

	base := "http://" + o.metricsAddr
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	families := []string{
		"strata_broker_topic_bytes_in_total", "strata_broker_topic_records_in_total",
		"strata_broker_topic_bytes_out_total", "strata_broker_topic_records_out_total",
		"strata_broker_topic_replication_bytes_in_total", "strata_broker_topic_replication_bytes_out_total",
		"strata_broker_log_size_bytes", "strata_broker_log_segments",
		"strata_broker_partitions", "strata_broker_leader_partitions",
		"strata_broker_under_replicated_partitions", "strata_broker_under_min_isr_partitions",
		"strata_broker_isr_shrinks_total", "strata_broker_isr_expands_total",
		"strata_broker_purgatory_size", "strata_broker_metadata_offset", "strata_broker_metadata_lag",
		"strata_broker_ready", "strata_broker_fenced", "strata_broker_heartbeat_age_seconds",
		"strata_controller_active", "strata_controller_ready", "strata_controller_leader_id", "strata_controller_raft_state",
		"strata_controller_raft_term", "strata_controller_raft_commit_index", "strata_controller_raft_applied_index",
		"strata_controller_raft_last_log_index", "strata_controller_raft_last_contact_seconds", "strata_controller_raft_voters",
		"strata_controller_metadata_offset", "strata_controller_event_queue_size",
		"strata_controller_brokers", "strata_controller_fenced_brokers", "strata_controller_topics",
		"strata_controller_partitions", "strata_controller_offline_partitions", "strata_controller_preferred_replica_imbalance",
		"strata_rpc_requests_total", "strata_rpc_request_duration_seconds", "strata_rpc_in_flight_requests",
		"go_goroutines", "process_resident_memory_bytes",
	}
	for _, f := range families {
		if !strings.Contains(body, "\n# TYPE "+f+" ") {
			t.Errorf("/metrics has no family %s", f)
		}
	}
	// The sample dashboard and alerts use only these names (strata_group_*
	// appear once a group has committed offsets: see broker's TestGroupMetrics).
	for _, file := range []string{"grafana-dashboard.json", "prometheus.yml", "strata-alerts.yml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "observability", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`strata_[a-z_]+`).FindAllString(string(data), -1) {
			name = strings.TrimSuffix(name, "_bucket")
			if !strings.HasPrefix(name, "strata_group_") && !strings.Contains(body, "\n# TYPE "+name+" ") {
				t.Errorf("%s uses %s, which /metrics does not have", file, name)
			}
		}
	}

	mfs, err := n.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := func(name string, labels map[string]string) (float64, int) {
		var total float64
		var series int
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		next:
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
						continue next
					}
				}
				series++
				total += metricNumber(m)
			}
		}
		return total, series
	}
	obs := map[string]string{"topic": "obs"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		check  func(float64) bool
		want   string
	}{
		{"strata_broker_topic_records_in_total", obs, func(v float64) bool { return v == records }, "30"},
		{"strata_broker_topic_records_out_total", obs, func(v float64) bool { return v == records }, "30"},
		{"strata_broker_topic_bytes_in_total", obs, func(v float64) bool { return v > float64(records*len("value 0")) }, "> the values"},
		{"strata_broker_topic_bytes_out_total", obs, func(v float64) bool { return v > float64(records*len("value 0")) }, "> the values"},
		{"strata_broker_log_size_bytes", obs, func(v float64) bool { return v > 0 }, "> 0"},
		{"strata_broker_log_segments", obs, func(v float64) bool { return v == 3 }, "3"},
		{"strata_broker_leader_partitions", nil, func(v float64) bool { return v >= 3 }, ">= 3"},
		{"strata_broker_ready", nil, func(v float64) bool { return v == 1 }, "1"},
		{"strata_controller_active", nil, func(v float64) bool { return v == 1 }, "1"},
		{"strata_controller_ready", nil, func(v float64) bool { return v == 1 }, "1"},
		{"strata_controller_leader_id", nil, func(v float64) bool { return v == 1 }, "1"},
		{"strata_controller_raft_state", map[string]string{"state": "Leader"}, func(v float64) bool { return v == 1 }, "1"},
		{"strata_controller_raft_term", nil, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"strata_controller_raft_voters", nil, func(v float64) bool { return v == 1 }, "1"},
		{"strata_controller_partitions", nil, func(v float64) bool { return v >= 3 }, ">= 3"},
		{"strata_controller_offline_partitions", nil, func(v float64) bool { return v == 0 }, "0"},
		{"strata_controller_fenced_brokers", nil, func(v float64) bool { return v == 0 }, "0"},
		{"strata_controller_brokers", nil, func(v float64) bool { return v == 1 }, "1"},
		{"strata_rpc_requests_total", map[string]string{"server": "broker", "method": "Produce", "code": "OK"}, func(v float64) bool { return v >= records }, ">= 30"},
		{"strata_rpc_requests_total", map[string]string{"server": "controller", "method": "BrokerHeartbeat", "code": "OK"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"strata_rpc_request_duration_seconds", map[string]string{"server": "broker", "method": "Fetch"}, func(v float64) bool { return v >= 1 }, ">= 1 observation"},
	} {
		v, series := sum(c.name, c.labels)
		if series == 0 || !c.check(v) {
			t.Errorf("%s%v = %v over %d series, want %s", c.name, c.labels, v, series, c.want)
		}
	}
	if off, _ := sum("strata_controller_metadata_offset", nil); off <= 0 {
		t.Errorf("controller metadata offset %v", off)
	}

	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := httpGet(t, base+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("/debug/pprof/: %d", code)
	}
}

func metricNumber(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.With("node", 7).Info("hello", "topic", "t", "partition", 2)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON object: %q: %v", buf.String(), err)
	}
	if line["msg"] != "hello" || line["node"] != 7.0 || line["topic"] != "t" || line["partition"] != 2.0 {
		t.Fatalf("json line %v", line)
	}
	buf.Reset()
	if log, err = newLogger(&buf, "text", "warn"); err != nil {
		t.Fatal(err)
	}
	log.Info("dropped")
	log.Warn("kept", "node", 1)
	if got := buf.String(); strings.Contains(got, "dropped") || !strings.Contains(got, "msg=kept node=1") {
		t.Fatalf("text output %q", got)
	}
	for _, bad := range [][2]string{{"xml", "info"}, {"json", "loud"}} {
		if _, err := newLogger(&buf, bad[0], bad[1]); !errors.Is(err, errUsage) {
			t.Errorf("format %q level %q: %v, want a usage error", bad[0], bad[1], err)
		}
	}
	_, _, err = runProduceCmd("", "server", "--node-id", "1", "--data-dir", t.TempDir(), "--quorum", "1@127.0.0.1:1", "--log-format", "yaml")
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("strata server --log-format yaml: %v", err)
	}
}
