package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

// TestDevEndToEnd runs `strata dev` as a process: it is ready in under two
// seconds, a topic created through the controller takes records produced
// to the broker and fetched back, /readyz answers, and SIGTERM stops it
// cleanly (controlled shutdown, clean-shutdown marker).
func TestDevEndToEnd(t *testing.T) {
	ports := freePorts(t, 3)
	dir := t.TempDir()
	cmd := exec.Command(strataBin, "dev", "--data-dir", dir, "--broker-addr", ports[0], "--controller-addr", ports[1], "--metrics-addr", ports[2])
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr.String())
		}
	}()
	lines := bufio.NewScanner(stdout)
	readyLine := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if m := regexp.MustCompile(`ready in (\d+) ms`).FindStringSubmatch(lines.Text()); m != nil {
				readyLine <- m[1]
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case ms := <-readyLine:
		if n, _ := strconv.Atoi(ms); n >= 2000 {
			t.Errorf("strata dev ready in %d ms, want < 2000", n)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("strata dev not ready within 15 s")
	}
	resp, err := http.Get("http://" + ports[2] + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %v %v", err, resp)
	}
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc, err := grpc.NewClient(ports[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ct, err := pb.NewControllerServiceClient(cc).CreateTopics(ctx, &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{Name: "events", NumPartitions: 2, ReplicationFactor: 1}}})
	if err != nil || ct.Topics[0].ErrorCode != pb.ErrorCode_NONE {
		t.Fatalf("create topic: %v %v", err, ct)
	}
	bc, err := grpc.NewClient(ports[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	cl := pb.NewBrokerServiceClient(bc)
	b := record.NewBuilder(record.BatchOptions{Codec: record.CodecZstd})
	for i := range 100 {
		b.Append(int64(i), []byte(fmt.Sprint("k", i)), []byte(fmt.Sprint("v", i)), nil)
	}
	batch, _ := b.Build()
	var pr *pb.ProduceResponse
	for {
		pr, err = cl.Produce(ctx, &pb.ProduceRequest{Acks: -1, Topics: []*pb.ProduceTopic{{Topic: "events", Partitions: []*pb.ProducePartition{{Partition: 1, Records: batch}}}}})
		if err == nil && pr.Topics[0].Partitions[0].ErrorCode == pb.ErrorCode_NONE {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("produce: %v %v", err, pr)
		}
		time.Sleep(50 * time.Millisecond) // the broker learns of the new topic from the metadata log
	}
	fr, err := cl.Fetch(ctx, &pb.FetchRequest{ReplicaId: -1, Decode: true, Topics: []*pb.FetchTopic{{Topic: "events", Partitions: []*pb.FetchPartition{{Partition: 1, FetchOffset: 0, CurrentLeaderEpoch: -1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := fr.Topics[0].Partitions[0].DecodedRecords; len(got) != 100 || string(got[99].Value) != "v99" {
		t.Fatalf("fetched %d records", len(got))
	}

	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("strata dev exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("strata dev did not stop within 20 s of SIGTERM")
	}
	t.Logf("stopped in %v", time.Since(start))
	if _, err := os.Stat(filepath.Join(dir, storage.CleanShutdownFile)); err != nil {
		t.Fatalf("no clean-shutdown marker after SIGTERM: %v", err)
	}
}
