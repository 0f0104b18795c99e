package controller_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stratalog/strata/controller/controllertest"
)

// gauges reads every single-series gauge family of reg in one Gather.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) == 1 && mf.GetMetric()[0].Gauge != nil {
			out[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return out
}

// gaugeOf is the value of a single-series family in reg, -1 if absent.
func gaugeOf(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestControllerMetricsAndReadiness: one of three controllers is active;
// the active one counts brokers and fences; a voter cut off from the
// others loses its leader and stops being ready, and is ready again once
// healed.
func TestControllerMetricsAndReadiness(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{Voters: 3})
	active := c.MustActive()
	regs := make([]*prometheus.Registry, c.Size())
	for i := range regs {
		regs[i] = prometheus.NewRegistry()
		if err := c.Node(i).RegisterMetrics(regs[i]); err != nil {
			t.Fatal(err)
		}
	}
	live := c.NewFakeBroker(1, "")
	dead := c.NewFakeBroker(2, "")
	ctx := ctxT(t, 30*time.Second)
	for _, b := range []*controllertest.FakeBroker{live, dead} {
		if _, err := b.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	live.Start(100 * time.Millisecond)
	defer live.Stop()
	for hb := live.Last(); hb == nil || hb.IsFenced; hb = live.Last() {
		if ctx.Err() != nil {
			t.Fatal("the live broker was never unfenced")
		}
		time.Sleep(20 * time.Millisecond)
	}
	createTopic(t, c, "t", 2, 1)

	// The second broker registers (fenced) and never heartbeats: it stays
	// fenced. Exactly one node is active and reports the cluster; the others
	// report 0 (each registry read in one Gather, as a scrape does).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var actives int
		var cluster map[string]float64
		for i, reg := range regs {
			v := gauges(t, reg)
			if v["strata_controller_active"] == 1 {
				actives++
				cluster = v
			} else if v["strata_controller_partitions"] != 0 || v["strata_controller_brokers"] != 0 {
				t.Fatalf("node %d is not active but reports cluster gauges: %v", i+1, v)
			}
			if v["strata_controller_raft_voters"] != 3 {
				t.Fatalf("node %d: strata_controller_raft_voters %v", i+1, v["strata_controller_raft_voters"])
			}
		}
		if actives == 1 && cluster["strata_controller_fenced_brokers"] == 1 && cluster["strata_controller_brokers"] == 2 &&
			cluster["strata_controller_partitions"] == 2 && cluster["strata_controller_topics"] == 1 &&
			cluster["strata_controller_offline_partitions"] == 0 && cluster["strata_controller_ready"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d active; the active one reports %v", actives, cluster)
		}
		time.Sleep(20 * time.Millisecond)
	}
	active = c.MustActive()
	if n := testutil.CollectAndCount(regs[active], "strata_rpc_requests_total"); n == 0 {
		t.Error("no strata_rpc_requests_total series on the active controller")
	}

	// Cut a follower off: it loses the leader and is not ready.
	follower := (active + 1) % c.Size()
	c.Net.Isolate(c.Addrs[follower], c.Addrs)
	deadline = time.Now().Add(10 * time.Second)
	for {
		ok, why := c.Node(follower).Ready()
		if !ok {
			if why == "" {
				t.Fatal("not ready without a reason")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an isolated controller is still ready after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := gaugeOf(t, regs[follower], "strata_controller_leader_id"); v != -1 {
		t.Errorf("isolated node knows leader %v", v)
	}
	c.Net.HealAll()
	deadline = time.Now().Add(10 * time.Second)
	for ok, _ := c.Node(follower).Ready(); !ok; ok, _ = c.Node(follower).Ready() {
		if time.Now().After(deadline) {
			t.Fatal("healed controller not ready after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
