package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/broker/brokertest"
	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// runProduceCmd runs the CLI in process with stdin; stdout and stderr apart.
func runProduceCmd(stdin string, args ...string) (stdout, stderr string, err error) {
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errb.String(), err
}

// fetchAll reads a partition up to its high watermark (decode=true).
func fetchAll(t *testing.T, bootstrap []string, topic string, partition int32) []*pb.Record {
	t.Helper()
	c, err := client.New(client.Config{Bootstrap: bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bc, _, err := c.LeaderClient(ctx, topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := bc.Fetch(ctx, &pb.FetchRequest{ReplicaId: -1, Decode: true, MaxWaitMs: 10,
		Topics: []*pb.FetchTopic{{Topic: topic, Partitions: []*pb.FetchPartition{{Partition: partition, CurrentLeaderEpoch: -1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return fr.Topics[0].Partitions[0].DecodedRecords
}

func TestProduceCmd(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 1})
	c.CreateTopic("lines", 3, 1, nil)
	bs := strings.Join(c.Bootstrap(), ",")

	t.Run("KeyedLines", func(t *testing.T) {
		var in strings.Builder
		for i := range 30 {
			fmt.Fprintf(&in, "user-%d:event %d\n", i%4, i)
		}
		in.WriteString("user-0:last line without newline")
		out, stderr, err := runProduceCmd(in.String(), "produce", "lines", "--bootstrap", bs, "--key-separator", ":")
		if err != nil {
			t.Fatalf("produce: %v (stderr %q)", err, stderr)
		}
		if out != "" {
			t.Errorf("stdout %q, want nothing", out)
		}
		total := 0
		for p := range int32(3) {
			for _, r := range fetchAll(t, c.Bootstrap(), "lines", p) {
				total++
				if want := client.KeyPartition(r.Key, 3); want != p {
					t.Errorf("key %q on partition %d, murmur2 says %d", r.Key, p, want)
				}
				if !strings.HasPrefix(string(r.Value), "event ") && string(r.Value) != "last line without newline" {
					t.Errorf("value %q", r.Value)
				}
			}
		}
		if total != 31 {
			t.Fatalf("%d records stored, want 31", total)
		}
	})

	t.Run("PartitionAndJSON", func(t *testing.T) {
		out, _, err := runProduceCmd("a\r\nb\n\nc\n", "produce", "lines", "--bootstrap", bs, "--partition", "2", "--acks", "1", "--output", "json")
		if err != nil {
			t.Fatal(err)
		}
		var sum produceSummary
		if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Acknowledged != 4 || sum.Topic != "lines" {
			t.Fatalf("json %q: %+v %v", out, sum, err)
		}
		recs := fetchAll(t, c.Bootstrap(), "lines", 2)
		last := recs[len(recs)-4:]
		for i, want := range []string{"a", "b", "", "c"} {
			if string(last[i].Value) != want || last[i].Key != nil {
				t.Fatalf("record %d: key %q value %q, want value %q", i, last[i].Key, last[i].Value, want)
			}
		}
	})

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"UnknownTopic", "x\n", []string{"produce", "nope"}, 1, `topic "nope" does not exist`},
		{"NoSuchPartition", "x\n", []string{"produce", "lines", "--partition", "7"}, 1, "no partition 7"},
		{"BadAcks", "x\n", []string{"produce", "lines", "--acks", "2"}, 2, `acks "2"`},
		{"BadCompression", "x\n", []string{"produce", "lines", "--compression", "brotli"}, 2, "--compression"},
		{"NoTopic", "x\n", []string{"produce"}, 2, "one TOPIC"},
		{"NoSeparator", "k:v\nno separator here\n", []string{"produce", "lines", "--key-separator", ":"}, 2, "line 2 has no key separator"},
		{"BadFlag", "x\n", []string{"produce", "lines", "--no-such-flag"}, 2, "unknown flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runProduceCmd(tc.stdin, append(tc.args, "--bootstrap", bs)...)
			if err == nil {
				t.Fatal("no error")
			}
			if got := exitCode(err); got != tc.code {
				t.Errorf("exit code %d, want %d (%v)", got, tc.code, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not name %q (stderr %q)", err, tc.msg, stderr)
			}
		})
	}

	t.Run("Unreachable", func(t *testing.T) {
		start := time.Now()
		_, _, err := runProduceCmd("x\n", "produce", "lines", "--bootstrap", "127.0.0.1:1", "--timeout", "500ms")
		if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "line 1 not acknowledged") {
			t.Fatalf("unreachable: %v", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("took %v with --timeout 500ms", el)
		}
	})
}

func TestPerfProduceCmd(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 1})
	c.CreateTopic("bench", 2, 1, nil)
	bs := strings.Join(c.Bootstrap(), ",")

	out, stderr, err := runProduceCmd("", "perf", "produce", "--bootstrap", bs, "--topic", "bench", "--num-records", "3000",
		"--record-size", "100", "--throughput", "10000", "--reporting-interval", "100ms")
	if err != nil {
		t.Fatalf("perf produce: %v (stderr %q)", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		t.Fatalf("want progress lines and a total, got %q", out)
	}
	final := lines[len(lines)-1]
	if !strings.HasPrefix(final, "3000 records sent, ") || !strings.Contains(final, "ms 99.9th.") || !strings.Contains(final, "MB/sec") {
		t.Fatalf("final line %q", final)
	}
	if !strings.Contains(lines[0], "records/sec") || !strings.Contains(lines[0], "ms max latency.") {
		t.Fatalf("progress line %q", lines[0])
	}
	n := 0
	for p := range int32(2) {
		n += len(fetchAll(t, c.Bootstrap(), "bench", p))
	}
	if n != 3000 {
		t.Fatalf("%d records stored", n)
	}

	out, _, err = runProduceCmd("", "perf", "produce", "--bootstrap", bs, "--topic", "bench", "--num-records", "500", "--record-size", "1024", "--acks", "1", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r perfResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("json %q: %v", out, err)
	}
	if r.Records != 500 || r.Errors != 0 || r.RecordsPerSec <= 0 || r.LatencyMs.Max < r.LatencyMs.P50 || r.LatencyMs.P999 < r.LatencyMs.P50 {
		t.Fatalf("result %+v", r)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--num-records", "10", "--record-size", "10"}, 2, "--topic is required"},
		{[]string{"--topic", "bench", "--num-records", "0", "--record-size", "10"}, 2, "--num-records"},
		{[]string{"--topic", "bench", "--num-records", "10", "--record-size", "10", "--throughput", "0"}, 2, "--throughput"},
		{[]string{"--topic", "nope", "--num-records", "10", "--record-size", "10"}, 1, `topic "nope" does not exist`},
	} {
		_, _, err := runProduceCmd("", append([]string{"perf", "produce", "--bootstrap", bs}, tc.args...)...)
		if err == nil || exitCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: %v (exit %d), want exit %d naming %q", tc.args, err, exitCode(err), tc.code, tc.msg)
		}
	}
}
