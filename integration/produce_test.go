package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// runStrataStdin runs the binary with stdin; it returns stdout, stderr and
// the exit code.
func runStrataStdin(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, strataBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("strata %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestProduceCLI runs `strata produce` and `strata perf produce` as
// processes against `strata dev`; the topics are created through the
// ControllerService and the records read back with a raw Fetch.
func TestProduceCLI(t *testing.T) {
	brokerAddr, ctrlAddr := consumeDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc, err := grpc.NewClient(ctrlAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ct, err := pb.NewControllerServiceClient(cc).CreateTopics(ctx, &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{
		{Name: "lines", NumPartitions: 1, ReplicationFactor: 1}, {Name: "bench", NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil || ct.Topics[0].ErrorCode != pb.ErrorCode_NONE || ct.Topics[1].ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("create topics: %v %v", err, ct)
	}

	// Right after creation: the producer waits for the topic to reach the
	// broker's metadata.
	var in strings.Builder
	for i := range 200 {
		fmt.Fprintf(&in, "k%d\tvalue %d\n", i, i)
	}
	out, stderr, code := runStrataStdin(t, in.String(), "produce", "lines", "--bootstrap", brokerAddr, "--key-separator", "\t")
	if code != 0 || out != "" {
		t.Fatalf("produce: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	bc, err := grpc.NewClient(brokerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	fr, err := pb.NewBrokerServiceClient(bc).Fetch(ctx, &pb.FetchRequest{ReplicaId: -1, Decode: true,
		Topics: []*pb.FetchTopic{{Topic: "lines", Partitions: []*pb.FetchPartition{{Partition: 0, CurrentLeaderEpoch: -1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	recs := fr.Topics[0].Partitions[0].DecodedRecords
	if len(recs) != 200 {
		t.Fatalf("%d records stored, want 200", len(recs))
	}
	for i, r := range recs {
		if r.Offset != int64(i) || string(r.Key) != fmt.Sprint("k", i) || string(r.Value) != fmt.Sprint("value ", i) {
			t.Fatalf("offset %d: %d %q %q", i, r.Offset, r.Key, r.Value)
		}
	}

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"UnknownTopic", "x\n", []string{"produce", "nope", "--bootstrap", brokerAddr}, 1, `UNKNOWN_TOPIC_OR_PARTITION: topic "nope" does not exist`},
		{"BadAcks", "x\n", []string{"produce", "lines", "--bootstrap", brokerAddr, "--acks", "most"}, 2, `--acks "most": want all, 1 or 0`},
		{"NoSeparator", "x\n", []string{"produce", "lines", "--bootstrap", brokerAddr, "--key-separator", "="}, 2, "line 1 has no key separator"},
		{"Unreachable", "x\n", []string{"produce", "lines", "--bootstrap", "127.0.0.1:1", "--timeout", "1s"}, 1, "no broker of [127.0.0.1:1] answered"},
		{"PerfNoTopic", "", []string{"perf", "produce", "--bootstrap", brokerAddr, "--num-records", "1", "--record-size", "1"}, 2, "--topic is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runStrataStdin(t, tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d naming %q", code, stderr, tc.code, tc.msg)
			}
		})
	}

	out, stderr, code = runStrataStdin(t, "", "perf", "produce", "--bootstrap", brokerAddr, "--topic", "bench",
		"--num-records", "20000", "--record-size", "1024", "--output", "json")
	if code != 0 {
		t.Fatalf("perf produce: exit %d, stderr %q", code, stderr)
	}
	var r struct {
		Records       int64              `json:"records"`
		Errors        int64              `json:"errors"`
		RecordsPerSec float64            `json:"records_per_sec"`
		MBPerSec      float64            `json:"mb_per_sec"`
		LatencyMs     map[string]float64 `json:"latency_ms"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("perf json %q: %v", out, err)
	}
	if r.Records != 20000 || r.Errors != 0 || r.MBPerSec <= 0 || r.LatencyMs["p99_9"] < r.LatencyMs["p50"] {
		t.Fatalf("perf result %s", out)
	}
	t.Logf("perf produce 20000 x 1 KiB, acks=all: %.0f records/s, %.1f MB/s, latency ms %v", r.RecordsPerSec, r.MBPerSec, r.LatencyMs)
}
