package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/broker/brokertest"
)

// runPerfCmd runs `strata perf SUB args...` under a root with the global
// flags; stdout and stderr are kept apart.
func runPerfCmd(sub *cobra.Command, g *globalOptions, args ...string) (string, string, error) {
	root := &cobra.Command{Use: "strata", SilenceUsage: true, SilenceErrors: true}
	g.addFlags(root)
	perf := &cobra.Command{Use: "perf"}
	perf.AddCommand(sub)
	root.AddCommand(perf)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"perf", sub.Name()}, args...))
	err := root.Execute()
	return out.String(), errOut.String(), err
}

func perfProduce(args ...string) (string, string, error) {
	var g globalOptions
	return runPerfCmd(newPerfProduceCmd(&g), &g, args...)
}

func TestPerfProduceProducersAndDuration(t *testing.T) {
	cl := brokertest.NewCluster(t, brokertest.Options{Brokers: 1})
	cl.CreateTopic("p", 4, 1, nil)
	bs := strings.Join(cl.Bootstrap(), ",")

	// Three producers share 1000 records (334 + 333 + 333), with a small
	// window each: every record acknowledged, counted once.
	out, _, err := perfProduce("--bootstrap", bs, "--topic", "p", "--num-records", "1000", "--record-size", "100",
		"--producers", "3", "--max-in-flight", "1", "--buffer-memory", "4096", "--output", "json")
	if err != nil {
		t.Fatal(err, out)
	}
	var r perfResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if r.Records != 1000 || r.Errors != 0 || r.MBPerSec <= 0 || r.LatencyMs.P50 <= 0 || r.LatencyMs.P999 < r.LatencyMs.P99 || r.LatencyMs.P99 < r.LatencyMs.P50 {
		t.Fatalf("result %+v", r)
	}
	cons, err := runPerfConsumeCmd("--bootstrap", bs, "--topic", "p", "--num-records", "1000", "--timeout", "2s", "--output", "json")
	if err != nil {
		t.Fatalf("the topic should hold exactly the 1000 records: %v %s", err, cons)
	}

	// --duration alone, at a fixed rate of 400/s for 500 ms: about 200
	// records, never more than the rate allows.
	start := time.Now()
	out, _, err = perfProduce("--bootstrap", bs, "--topic", "p", "--duration", "500ms", "--record-size", "64",
		"--throughput", "400", "--producers", "2", "--output", "json")
	if err != nil {
		t.Fatal(err, out)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("--duration 500ms took %s", el)
	}
	r = perfResult{}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if r.Records < 50 || r.Records > 210 || r.Errors != 0 {
		t.Fatalf("500 ms at 400/s sent %d records (errors %d)", r.Records, r.Errors)
	}
}

func TestPerfProduceUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--topic", "p", "--record-size", "10"}, "--num-records must be positive"},
		{[]string{"--topic", "p", "--record-size", "10", "--num-records", "-1", "--duration", "1s"}, "--num-records must be positive"},
		{[]string{"--topic", "p", "--record-size", "10", "--duration", "-1s", "--num-records", "5"}, "--duration must not be negative"},
		{[]string{"--topic", "p", "--record-size", "10", "--num-records", "5", "--producers", "0"}, "--producers must be 1 to 1024"},
		{[]string{"--topic", "p", "--record-size", "10", "--num-records", "5", "--max-in-flight", "-1"}, "--max-in-flight"},
		{[]string{"--topic", "p", "--record-size", "10", "--num-records", "5", "--buffer-memory", "-5"}, "--buffer-memory"},
		{[]string{"--topic", "p", "--record-size", "10", "--num-records", "5", "--throughput", "0"}, "--throughput must be positive"},
	} {
		_, _, err := perfProduce(append(tc.args, "--bootstrap", "127.0.0.1:1")...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: %v; want exit 2 naming %q", tc.args, err, tc.msg)
		}
	}
}

func TestPercentilesAndReservoir(t *testing.T) {
	s := newPerfStats()
	n := perfMaxSamples * 2
	for i := range n {
		s.record(time.Duration(i)*time.Microsecond, 1, nil)
	}
	if len(s.samples) != perfMaxSamples || s.seen != int64(n) {
		t.Fatalf("reservoir holds %d of %d seen", len(s.samples), s.seen)
	}
	r := s.result(time.Now())
	// A uniform sample of 0..n us: the median is near n/2 us.
	want := float64(n) / 2 / 1000
	if r.LatencyMs.P50 < want*0.95 || r.LatencyMs.P50 > want*1.05 {
		t.Errorf("p50 %.1f ms, want about %.1f (the sample is not uniform)", r.LatencyMs.P50, want)
	}
	if r.Records != int64(n) || r.LatencyMs.Max != float64(n-1)/1000 {
		t.Errorf("records %d max %v", r.Records, r.LatencyMs.Max)
	}
	p50, p95, p99, p999 := percentiles([]float64{4, 1, 3, 2})
	if p50 != 3 || p95 != 4 || p99 != 4 || p999 != 4 {
		t.Errorf("percentiles of 1..4: %v %v %v %v", p50, p95, p99, p999)
	}
	if a, b, c, d := percentiles(nil); a+b+c+d != 0 {
		t.Error("percentiles of nothing should be zeros")
	}
}

// With many batches unacknowledged, finding a record's group costs O(1)
// amortized: the map is not rescanned for every new batch (it was, past
// 1024 groups, which took a third of the client's CPU with 16 KiB batches).
// Acknowledged groups are still pruned.
func TestAckGroupsPruneAmortized(t *testing.T) {
	g := newAckGroups()
	const batches = 20000
	var open []*ackGroup
	for range batches {
		ch := make(chan struct{})
		grp, isNew := g.get(ch)
		if !isNew {
			t.Fatal("a new channel found a group")
		}
		if again, isNew := g.get(ch); isNew || again != grp {
			t.Fatal("a second record of one batch got a new group")
		}
		open = append(open, grp)
		if len(open) > 3000 { // 3000 batches in flight; the oldest is acknowledged
			open[0].done = true
			open = open[1:]
		}
	}
	if g.scanned > 4*batches {
		t.Errorf("prunes looked at %d groups for %d batches, want O(batches)", g.scanned, batches)
	}
	if len(g.m) > 2*3000+2 {
		t.Errorf("%d groups kept with 3000 in flight: acknowledged ones not pruned", len(g.m))
	}
}
