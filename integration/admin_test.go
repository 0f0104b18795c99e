package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startDev runs `strata dev` on free ports until the test ends and returns
// its broker address once it is ready.
func startDev(t *testing.T) string {
	t.Helper()
	ports := freePorts(t, 3)
	cmd := exec.Command(strataBin, "dev", "--data-dir", t.TempDir(), "--broker-addr", ports[0], "--controller-addr", ports[1], "--metrics-addr", ports[2])
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "ready in") {
				once = true
				close(ready)
			}
		}
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("strata dev stderr:\n%s", stderr.String())
		}
	})
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("strata dev exited: %s", stderr.String())
	case <-time.After(15 * time.Second):
		t.Fatal("strata dev not ready within 15 s")
	}
	return ports[0]
}

// strata runs the binary and returns stdout, stderr and the exit code.
func strata(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(strataBin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("strata %s: still running after 30 s", strings.Join(args, " "))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &ee):
		return out.String(), errOut.String(), ee.ExitCode()
	}
	t.Fatalf("strata %s: %v", strings.Join(args, " "), err)
	return "", "", -1
}

// TestAdminCLI drives the admin commands of the real binary against a real
// `strata dev`: create (with the cluster defaults), list, describe, alter,
// delete, cluster describe, with JSON parsed and exit codes checked.
func TestAdminCLI(t *testing.T) {
	bs := startDev(t)
	run := func(code int, args ...string) (string, string) {
		t.Helper()
		out, errOut, got := strata(t, append([]string{"--bootstrap", bs, "--timeout", "10s"}, args...)...)
		if got != code {
			t.Fatalf("strata %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errOut)
		}
		return out, errOut
	}
	jsonOut := func(v any, args ...string) {
		t.Helper()
		out, _ := run(0, append(args, "--output", "json")...)
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("strata %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// Create without --partitions / --replication-factor: strata dev's
	// defaults (num.partitions = default.replication.factor = 1).
	var created struct {
		Name              string `json:"name"`
		Partitions        int    `json:"partitions"`
		ReplicationFactor int    `json:"replication_factor"`
	}
	jsonOut(&created, "topics", "create", "demo")
	if created.Name != "demo" || created.Partitions != 1 || created.ReplicationFactor != 1 {
		t.Errorf("create demo: %+v", created)
	}
	if out, _ := run(0, "topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=60000"); !strings.Contains(out, "Created topic orders with 3 partitions, replication factor 1.") {
		t.Errorf("create orders: %q", out)
	}
	if _, errOut := run(1, "topics", "create", "wide", "--replication-factor", "3"); !strings.Contains(errOut, "strata: create topic \"wide\": replication factor 3 is larger than the 1 available brokers") {
		t.Errorf("rf 3 on one broker: %q", errOut)
	}
	if _, errOut := run(2, "topics", "create", "x", "--partitions", "zero"); !strings.Contains(errOut, "--partitions") {
		t.Errorf("bad flag: %q", errOut)
	}

	var list struct {
		Topics []struct {
			Name       string `json:"name"`
			Partitions int    `json:"partitions"`
		} `json:"topics"`
	}
	jsonOut(&list, "topics", "list")
	if len(list.Topics) != 2 || list.Topics[0].Name != "demo" || list.Topics[1].Name != "orders" || list.Topics[1].Partitions != 3 {
		t.Errorf("list: %+v", list)
	}

	run(0, "topics", "alter", "orders", "--partitions", "4", "--config", "cleanup.policy=compact")
	if _, errOut := run(1, "topics", "alter", "orders", "--partitions", "2"); !strings.Contains(errOut, "can only grow") {
		t.Errorf("shrink: %q", errOut)
	}
	type describe struct {
		Topics []struct {
			Name           string            `json:"name"`
			PartitionCount int               `json:"partition_count"`
			Configs        map[string]string `json:"configs"`
			Partitions     []struct {
				Partition int32   `json:"partition"`
				Leader    int32   `json:"leader"`
				Replicas  []int32 `json:"replicas"`
				ISR       []int32 `json:"isr"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var d describe
		jsonOut(&d, "topics", "describe", "orders")
		if len(d.Topics) == 1 && d.Topics[0].PartitionCount == 4 {
			o := d.Topics[0]
			if o.Configs["retention.ms"] != "60000" || o.Configs["cleanup.policy"] != "compact" {
				t.Errorf("orders configs: %v", o.Configs)
			}
			for _, p := range o.Partitions {
				if p.Leader != 1 || len(p.Replicas) != 1 || p.Replicas[0] != 1 || len(p.ISR) != 1 {
					t.Errorf("orders-%d: %+v", p.Partition, p)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("describe after alter: %+v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, errOut := run(1, "topics", "describe", "missing"); !strings.Contains(errOut, `topic "missing" does not exist`) {
		t.Errorf("describe missing: %q", errOut)
	}

	var cluster struct {
		ClusterID    string `json:"cluster_id"`
		ControllerID int32  `json:"controller_id"`
		Brokers      []struct {
			ID      int32  `json:"id"`
			Address string `json:"address"`
			Epoch   int64  `json:"epoch"`
			Fenced  bool   `json:"fenced"`
		} `json:"brokers"`
		Quorum struct {
			LeaderID    int32  `json:"leader_id"`
			CommitIndex uint64 `json:"commit_index"`
			Voters      []struct {
				ID  int32 `json:"id"`
				Lag int64 `json:"lag"`
			} `json:"voters"`
		} `json:"quorum"`
	}
	jsonOut(&cluster, "cluster", "describe")
	if cluster.ClusterID == "" || cluster.ControllerID != 1 || len(cluster.Brokers) != 1 || cluster.Brokers[0].ID != 1 ||
		cluster.Brokers[0].Address != bs || cluster.Brokers[0].Fenced || cluster.Brokers[0].Epoch <= 0 {
		t.Errorf("cluster describe: %+v", cluster)
	}
	if q := cluster.Quorum; q.LeaderID != 1 || q.CommitIndex == 0 || len(q.Voters) != 1 || q.Voters[0].Lag != 0 {
		t.Errorf("quorum: %+v", q)
	}

	if out, _ := run(0, "topics", "delete", "demo"); !strings.Contains(out, "Deleted topic demo.") {
		t.Errorf("delete: %q", out)
	}
	if _, errOut := run(1, "topics", "delete", "demo"); !strings.Contains(errOut, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("delete again: %q", errOut)
	}
	jsonOut(&list, "topics", "list")
	if len(list.Topics) != 1 || list.Topics[0].Name != "orders" {
		t.Errorf("list after delete: %+v", list)
	}

	// Nobody listening: exit 1 naming --bootstrap.
	_, errOut, code := strata(t, "--bootstrap", freePorts(t, 1)[0], "topics", "list")
	if code != 1 || !strings.Contains(errOut, "check --bootstrap") {
		t.Errorf("unreachable: exit %d %q", code, errOut)
	}
}
