package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/integration/checker"
	"github.com/stratalog/strata/integration/cluster"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// strataBin is the binary under test, built once by TestMain.
var strataBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strata-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	strataBin = filepath.Join(dir, "strata")
	build := exec.Command("go", "build", "-o", strataBin, "github.com/stratalog/strata/cmd/strata")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build strata:", err)
		os.Exit(1)
	}
	code := m.Run()
	checker.PrintSummary(os.Stdout)
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePorts returns n distinct free loopback ports, never handed out
// before in this test process (cluster.FreeAddr).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = cluster.FreeAddr(t)
	}
	return addrs
}

// node is one strata server process.
type node struct {
	id   int32
	addr string
	dir  string
	cmd  *exec.Cmd
	log  *os.File
}

func (n *node) start(t *testing.T, quorum string) {
	t.Helper()
	var err error
	n.log, err = os.OpenFile(filepath.Join(n.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(strataBin, "server", "--node-id", fmt.Sprint(n.id), "--roles", "controller",
		"--data-dir", n.dir, "--controller-addr", n.addr, "--quorum", quorum, "--metrics-addr", "",
		"--raft-timeouts", "tuned", "--broker-session-timeout", "1m")
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

// stop sends sig and waits (bounded) for the process to exit.
func (n *node) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	n.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		err = <-done
		t.Errorf("node %d did not stop within 15 s of %v", n.id, sig)
	}
	n.log.Close()
	n.cmd = nil
	return err
}

func dial(t *testing.T, addr string) pb.ControllerServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewControllerServiceClient(conn)
}

// waitLeader polls the live nodes until they agree on a leader among them.
func waitLeader(t *testing.T, nodes []*node, live map[int32]bool) *node {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		votes := map[int32]int{}
		for _, n := range nodes {
			if !live[n.id] {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := dial(t, n.addr).DescribeQuorum(ctx, &pb.DescribeQuorumRequest{})
			cancel()
			if err == nil && resp.LeaderId > 0 {
				votes[resp.LeaderId]++
			}
		}
		for id, v := range votes {
			if v == len(live) && live[id] {
				for _, n := range nodes {
					if n.id == id {
						return n
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no agreed leader among %v within 30 s", live)
	return nil
}

// TestControllerQuorumProcesses runs three `strata server --roles controller`
// processes: they elect a leader, commit a broker registration, survive the
// leader's SIGKILL (a new leader still has the record and commits another),
// take the killed node back from its disk, and stop cleanly on SIGTERM.
func TestControllerQuorumProcesses(t *testing.T) {
	addrs := freePorts(t, 3)
	var parts []string
	var nodes []*node
	for i, a := range addrs {
		id := int32(i + 1)
		parts = append(parts, fmt.Sprintf("%d@%s", id, a))
		nodes = append(nodes, &node{id: id, addr: a, dir: t.TempDir()})
	}
	quorum := strings.Join(parts, ",")
	live := map[int32]bool{}
	for _, n := range nodes {
		n.start(t, quorum)
		live[n.id] = true
	}
	defer func() {
		for _, n := range nodes {
			n.stop(t, syscall.SIGKILL)
		}
		if t.Failed() {
			for _, n := range nodes {
				out, _ := os.ReadFile(filepath.Join(n.dir, "server.log"))
				t.Logf("node %d log:\n%s", n.id, out)
			}
		}
	}()

	leader := waitLeader(t, nodes, live)
	register := func(c pb.ControllerServiceClient, brokerID int32) {
		t.Helper()
		inc := make([]byte, 16)
		rand.Read(inc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := c.RegisterBroker(ctx, &pb.RegisterBrokerRequest{
			BrokerId: brokerID, IncarnationId: inc, PreviousBrokerEpoch: -1,
			Listeners: []*pb.Listener{{Name: "PLAINTEXT", Host: "127.0.0.1", Port: 19092}},
		})
		if err != nil {
			t.Fatalf("register broker %d: %v", brokerID, err)
		}
		if resp.BrokerEpoch <= 0 {
			t.Fatalf("register broker %d: epoch %d", brokerID, resp.BrokerEpoch)
		}
	}
	brokers := func(c pb.ControllerServiceClient) map[int32]bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := c.DescribeCluster(ctx, &pb.DescribeClusterRequest{IncludeFenced: true})
		if err != nil {
			t.Fatalf("describe cluster: %v", err)
		}
		out := map[int32]bool{}
		for _, b := range resp.Brokers {
			out[b.BrokerId] = true
		}
		return out
	}
	register(dial(t, leader.addr), 100)

	// A follower refuses writes and names the leader.
	for _, n := range nodes {
		if n != leader {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := dial(t, n.addr).RegisterBroker(ctx, &pb.RegisterBrokerRequest{BrokerId: 101, IncarnationId: make([]byte, 16), PreviousBrokerEpoch: -1})
			cancel()
			if err == nil || !strings.Contains(err.Error(), "NOT_CONTROLLER") && !strings.Contains(strings.ToLower(err.Error()), "not the active controller") && !strings.Contains(strings.ToLower(err.Error()), "not controller") {
				t.Fatalf("write to follower %d: %v, want NOT_CONTROLLER", n.id, err)
			}
			break
		}
	}

	// Kill the active controller: the other two elect a new one that has the record.
	if err := leader.stop(t, syscall.SIGKILL); err == nil {
		t.Fatal("SIGKILL'd process exited cleanly?")
	}
	delete(live, leader.id)
	next := waitLeader(t, nodes, live)
	if next == leader {
		t.Fatal("the killed node is still the leader")
	}
	if got := brokers(dial(t, next.addr)); !got[100] {
		t.Fatalf("new leader lost the committed registration: %v", got)
	}
	register(dial(t, next.addr), 102)

	// The killed node comes back from its disk and catches up.
	leader.start(t, quorum)
	live[leader.id] = true
	waitLeader(t, nodes, live)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := dial(t, leader.addr).DescribeQuorum(ctx, &pb.DescribeQuorumRequest{})
		cancel()
		if err == nil && resp.AppliedIndex > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			lead, err2 := dial(t, next.addr).DescribeQuorum(ctx, &pb.DescribeQuorumRequest{})
			cancel()
			if err2 == nil && resp.AppliedIndex >= lead.CommitIndex-1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node did not catch up: %v %v", resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// SIGTERM stops every node cleanly.
	for _, n := range nodes {
		if err := n.stop(t, syscall.SIGTERM); err != nil {
			t.Errorf("node %d exit after SIGTERM: %v", n.id, err)
		}
	}
}

// TestServerBadFlags: malformed flags exit non-zero with a clear message
// and leave no data behind.
func TestServerBadFlags(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"server", "--data-dir", dir}, "--node-id"},
		{[]string{"server", "--node-id", "1"}, "--data-dir"},
		{[]string{"server", "--node-id", "x", "--data-dir", dir}, "invalid argument"},
		{[]string{"server", "--node-id", "1", "--data-dir", dir, "--quorum", "1@"}, "--quorum"},
		{[]string{"server", "--node-id", "1", "--data-dir", dir, "--roles", "banana"}, "unknown role"},
		{[]string{"server", "--node-id", "1", "--data-dir", dir, "--roles", "controller"}, "--quorum is required"},
		{[]string{"server", "--node-id", "1", "--data-dir", dir, "--raft-timeouts", "fast", "--quorum", "1@127.0.0.1:1"}, "--raft-timeouts"},
		{[]string{"server", "--config", filepath.Join(dir, "missing.conf")}, "--config"},
		{[]string{"server", "--node-id", "1", "--data-dir", dir, "--broker-advertise-addr", "nohost", "--quorum", "1@127.0.0.1:1"}, "--broker-advertise-addr"},
		{[]string{"server", "--node-id", "1", "--data-dir", dir, "--broker-advertise-addr", "h:0", "--quorum", "1@127.0.0.1:1"}, "--broker-advertise-addr"},
	}
	for _, tc := range cases {
		out, err := exec.Command(strataBin, tc.args...).CombinedOutput()
		if err == nil {
			t.Errorf("%v: exit 0, want failure", tc.args)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: output %q does not mention %q", tc.args, out, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("bad flags left files in the data dir: %v", entries)
	}
	// A data dir of another node is refused.
	own := t.TempDir()
	os.WriteFile(filepath.Join(own, "meta.properties"), []byte("version=1\nnode.id=7\n"), 0o644)
	out, err := exec.Command(strataBin, "server", "--node-id", "1", "--data-dir", own, "--controller-addr", "127.0.0.1:0", "--quorum", "1@127.0.0.1:1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "belongs to node 7") {
		t.Errorf("foreign data dir: %v %s", err, out)
	}
}

// TestServerConfigFile: settings come from --config, the command line wins.
func TestServerConfigFile(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "strata.conf")
	os.WriteFile(conf, []byte("# a controller\nnode-id = 5\nroles=controller\nbogus = 1\n"), 0o644)
	out, err := exec.Command(strataBin, "server", "--config", conf, "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown setting "bogus"`) {
		t.Fatalf("unknown config key: %v %s", err, out)
	}
}
