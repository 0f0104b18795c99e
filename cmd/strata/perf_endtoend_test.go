package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stratalog/strata/broker/brokertest"
)

func perfEndToEnd(args ...string) (string, string, error) {
	var g globalOptions
	return runPerfCmd(newPerfEndToEndCmd(&g), &g, args...)
}

func TestPerfEndToEnd(t *testing.T) {
	cl := brokertest.NewCluster(t, brokertest.Options{Brokers: 1})
	cl.CreateTopic("e", 2, 1, nil)
	bs := strings.Join(cl.Bootstrap(), ",")
	// Records already in the log are not counted: the consumer starts at the end.
	if out, _, err := perfProduce("--bootstrap", bs, "--topic", "e", "--num-records", "50", "--record-size", "16"); err != nil {
		t.Fatal(err, out)
	}

	out, _, err := perfEndToEnd("--bootstrap", bs, "--topic", "e", "--num-records", "300", "--record-size", "100",
		"--throughput", "1000", "--linger", "1ms", "--output", "json")
	if err != nil {
		t.Fatal(err, out)
	}
	var r perfResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if r.Records != 300 || r.Errors != 0 || r.LatencyMs.P50 <= 0 || r.LatencyMs.P99 < r.LatencyMs.P50 || r.LatencyMs.Max > 10_000 {
		t.Fatalf("result %+v", r)
	}
	// 300 records at 1000/s take about 300 ms to send.
	if r.Seconds < 0.25 {
		t.Errorf("300 records at 1000/s measured over %.3f s: the rate was not held", r.Seconds)
	}

	out, _, err = perfEndToEnd("--bootstrap", bs, "--topic", "e", "--duration", "200ms", "--record-size", "8", "--throughput", "500")
	if err != nil || !strings.Contains(out, "records end to end") || !strings.Contains(out, "99.9th") {
		t.Fatalf("table: %q, %v", out, err)
	}

	_, _, err = perfEndToEnd("--bootstrap", bs, "--topic", "nope", "--num-records", "1", "--record-size", "8", "--throughput", "1")
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("unknown topic: %v", err)
	}
}

func TestPerfEndToEndUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--num-records", "1", "--record-size", "8", "--throughput", "1"}, "--topic is required"},
		{[]string{"--topic", "e", "--record-size", "8", "--throughput", "1"}, "--num-records must be positive"},
		{[]string{"--topic", "e", "--num-records", "1", "--record-size", "7", "--throughput", "1"}, "--record-size must be at least 8"},
		{[]string{"--topic", "e", "--num-records", "1", "--record-size", "8"}, "--throughput must be positive"},
		{[]string{"--topic", "e", "--num-records", "1", "--record-size", "8", "--throughput", "1", "--consumer-timeout", "0s"}, "--consumer-timeout"},
	} {
		_, _, err := perfEndToEnd(append(tc.args, "--bootstrap", "127.0.0.1:1")...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: %v; want exit 2 naming %q", tc.args, err, tc.msg)
		}
	}
}
