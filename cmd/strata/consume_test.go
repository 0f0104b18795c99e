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
	"github.com/stratalog/strata/storage/record"
)

// consumeTestCluster starts a 1-broker cluster with topic "t" (3
// partitions) holding 10 records per partition: key kI, value pP-vI,
// timestamp base+I seconds. It returns the bootstrap address and base.
func consumeTestCluster(t *testing.T) (string, time.Time) {
	t.Helper()
	cl := brokertest.NewCluster(t, brokertest.Options{Brokers: 1})
	cl.CreateTopic("t", 3, 1, nil)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for p := range int32(3) {
		consumeTestProduce(t, cl.Bootstrap(), "t", p, 0, 10, base)
	}
	return strings.Join(cl.Bootstrap(), ","), base
}

// consumeTestProduce appends records [from, from+n) to topic-partition
// through raw Produce (acks=all), two batches.
func consumeTestProduce(t testing.TB, bootstrap []string, topic string, partition int32, from, n int, base time.Time) {
	t.Helper()
	c, err := client.New(client.Config{Bootstrap: bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := record.NewBuilder(record.BatchOptions{})
	for _, span := range [][2]int{{from, from + n/2}, {from + n/2, from + n}} {
		b.Reset(record.BatchOptions{Codec: record.CodecSnappy})
		for i := span[0]; i < span[1]; i++ {
			b.Append(base.Add(time.Duration(i)*time.Second).UnixMilli(), []byte(fmt.Sprint("k", i)), []byte(fmt.Sprintf("p%d-v%d", partition, i)), nil)
		}
		batch, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		for {
			bc, _, err := c.LeaderClient(ctx, topic, partition)
			if err == nil {
				var resp *pb.ProduceResponse
				resp, err = bc.Produce(ctx, &pb.ProduceRequest{Acks: -1, Topics: []*pb.ProduceTopic{{Topic: topic,
					Partitions: []*pb.ProducePartition{{Partition: partition, Records: batch}}}}})
				if err == nil && resp.Topics[0].Partitions[0].ErrorCode == pb.ErrorCode_NONE {
					break
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("produce: %v", err)
			}
			c.RefreshMetadata(ctx)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// runConsumeCmd runs the CLI in process; stdout and stderr apart.
func runConsumeCmd(args ...string) (stdout, stderr string, err error) {
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errb.String(), err
}

func TestConsume(t *testing.T) {
	bs, base := consumeTestCluster(t)

	t.Run("from-beginning max-messages", func(t *testing.T) {
		out, stderr, err := runConsumeCmd("consume", "t", "--bootstrap", bs, "--from-beginning", "--max-messages", "30")
		if err != nil {
			t.Fatal(err, stderr)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 30 {
			t.Fatalf("%d lines:\n%s", len(lines), out)
		}
		next := map[string]int{}
		for _, l := range lines {
			var p, i int
			if _, err := fmt.Sscanf(l, "p%d-v%d", &p, &i); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			if key := fmt.Sprint(p); next[key] != i {
				t.Fatalf("partition %d: value %d after %d", p, i, next[key]-1)
			}
			next[fmt.Sprint(p)]++
		}
		if !strings.Contains(stderr, "Processed a total of 30 messages") {
			t.Fatalf("stderr %q", stderr)
		}
		// --max-messages below what is there stops early.
		out, _, err = runConsumeCmd("consume", "t", "--bootstrap", bs, "--from-beginning", "--max-messages", "4", "--partition", "2")
		if err != nil || out != "p2-v0\np2-v1\np2-v2\np2-v3\n" {
			t.Fatalf("max-messages 4: %q, %v", out, err)
		}
	})
	t.Run("partition offset print", func(t *testing.T) {
		out, _, err := runConsumeCmd("consume", "t", "--bootstrap", bs, "--partition", "1", "--offset", "7", "--print-key", "--print-offset", "--timeout", "300ms")
		if err != nil {
			t.Fatal(err)
		}
		want := "Partition:1\tOffset:7\tk7\tp1-v7\nPartition:1\tOffset:8\tk8\tp1-v8\nPartition:1\tOffset:9\tk9\tp1-v9\n"
		if out != want {
			t.Fatalf("got\n%s\nwant\n%s", out, want)
		}
	})
	t.Run("timestamp", func(t *testing.T) {
		ts := base.Add(6*time.Second - time.Millisecond).Format(time.RFC3339Nano)
		out, _, err := runConsumeCmd("consume", "t", "--bootstrap", bs, "--partition", "0", "--timestamp", ts, "--timeout", "300ms")
		if err != nil || out != "p0-v6\np0-v7\np0-v8\np0-v9\n" {
			t.Fatalf("--timestamp %s: %q, %v", ts, out, err)
		}
		ms := fmt.Sprint(base.Add(8 * time.Second).UnixMilli())
		out, _, err = runConsumeCmd("consume", "t", "--bootstrap", bs, "--partition", "0", "--timestamp", ms, "--timeout", "300ms")
		if err != nil || out != "p0-v8\np0-v9\n" {
			t.Fatalf("--timestamp %s: %q, %v", ms, out, err)
		}
	})
	t.Run("json", func(t *testing.T) {
		out, _, err := runConsumeCmd("consume", "t", "--bootstrap", bs, "--partition", "2", "--offset", "9", "--output", "json", "--max-messages", "1")
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Topic     string  `json:"topic"`
			Partition int32   `json:"partition"`
			Offset    int64   `json:"offset"`
			Timestamp int64   `json:"timestamp"`
			Key       *string `json:"key"`
			Value     *string `json:"value"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		if r.Topic != "t" || r.Partition != 2 || r.Offset != 9 || *r.Key != "k9" || *r.Value != "p2-v9" || r.Timestamp != base.Add(9*time.Second).UnixMilli() {
			t.Fatalf("json record %+v", r)
		}
	})
	t.Run("latest by default", func(t *testing.T) {
		start := time.Now()
		out, stderr, err := runConsumeCmd("consume", "t", "--bootstrap", bs, "--timeout", "300ms")
		if err != nil || out != "" {
			t.Fatalf("default start: %q, %v", out, err)
		}
		if time.Since(start) > 10*time.Second || !strings.Contains(stderr, "Processed a total of 0 messages") {
			t.Fatalf("idle exit after %s, stderr %q", time.Since(start), stderr)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"consume", "nope", "--timeout", "1s"}, 1, `topic "nope" does not exist`},
			{[]string{"consume", "t", "--partition", "3"}, 1, "no partition 3"},
			{[]string{"consume", "t", "--partition", "0", "--offset", "50"}, 1, "outside the log [0, 10]"},
			{[]string{"consume", "t", "--offset", "5"}, 2, "needs --partition"},
			{[]string{"consume", "t", "--from-beginning", "--offset", "5"}, 2, "exclude each other"},
			{[]string{"consume", "t", "--timestamp", "yesterday"}, 2, "--timestamp"},
			{[]string{"consume", "t", "--offset", "-3", "--partition", "0"}, 2, "--offset"},
			{[]string{"consume", "t", "--group", "g", "--partition", "0"}, 2, "--partition does not go with --group"},
			{[]string{"consume", "t", "--group", "g", "--offset", "3"}, 2, "--offset does not go with --group"},
			{[]string{"consume", "t", "--group", "g", "--timestamp", "0"}, 2, "--timestamp does not go with --group"},
			{[]string{"consume", "t", "--group", " "}, 2, "--group is blank"},
			{[]string{"consume", "nope", "--group", "g", "--timeout", "1s"}, 1, `topic "nope" does not exist`},
			{[]string{"consume", "t", "--max-messages", "x"}, 2, "max-messages"},
			{[]string{"consume"}, 2, "takes one TOPIC"},
		} {
			_, _, err := runConsumeCmd(append(tc.args, "--bootstrap", bs)...)
			if err == nil || exitCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%v: exit %d %v; want exit %d naming %q", tc.args, exitCodeOrZero(err), err, tc.code, tc.msg)
			}
		}
		_, _, err := runConsumeCmd("consume", "t", "--bootstrap", "127.0.0.1:1")
		if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "--bootstrap") {
			t.Errorf("unreachable bootstrap: %v", err)
		}
	})
}

func exitCodeOrZero(err error) int {
	if err == nil {
		return 0
	}
	return exitCode(err)
}
