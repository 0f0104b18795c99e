package controller

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// countFSM is a trivial FSM: it counts applied commands.
type countFSM struct {
	mu sync.Mutex
	n  int
}

func (f *countFSM) Apply(*raft.Log) any { f.mu.Lock(); f.n++; f.mu.Unlock(); return nil }
func (f *countFSM) get() int            { f.mu.Lock(); defer f.mu.Unlock(); return f.n }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	return countSnap(f.get()), nil
}
func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var n int
	if _, err := fmt.Fscan(rc, &n); err != nil {
		return err
	}
	f.mu.Lock()
	f.n = n
	f.mu.Unlock()
	return nil
}

type countSnap int

func (s countSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := fmt.Fprint(sink, int(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (countSnap) Release() {}

type testRaft struct {
	cfg  Config
	m    *mux
	node *raftNode
	fsm  *countFSM
}

func startTestRaft(t *testing.T, cfg Config, ln net.Listener) *testRaft {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	m := newMux(ln, cfg.Dialer, cfg.Logger)
	m.serve()
	fsm := &countFSM{}
	node, err := openRaftNode(&cfg, fsm, &streamLayer{m: m}, nil, cfg.Logger)
	if err != nil {
		m.close()
		t.Fatal(err)
	}
	return &testRaft{cfg: cfg, m: m, node: node, fsm: fsm}
}

func (r *testRaft) stop() {
	r.node.close()
	r.m.close()
}

func waitLeader(t *testing.T, rs []*testRaft) *testRaft {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range rs {
			if r != nil && r.node.raft.State() == raft.Leader {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader within 10s")
	return nil
}

func testTimeouts() Timeouts {
	return Timeouts{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 100 * time.Millisecond, Commit: 5 * time.Millisecond}
}

// TestRaftNodeBootstrapRestart: three nodes bootstrap from one quorum, commit,
// restart from disk (quorum ignored), and keep their state; a snapshot is
// taken and restored.
func TestRaftNodeBootstrapRestart(t *testing.T) {
	dir := t.TempDir()
	var lns []net.Listener
	var quorum []Voter
	for i := 1; i <= 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		quorum = append(quorum, Voter{ID: int32(i), Addr: ln.Addr().String()})
	}
	cfgs := make([]Config, 3)
	rs := make([]*testRaft, 3)
	for i := range rs {
		cfgs[i] = Config{NodeID: int32(i + 1), DataDir: filepath.Join(dir, fmt.Sprint(i+1)), Quorum: quorum,
			Timeouts: testTimeouts(), Snapshots: Snapshots{Threshold: 8, Interval: 100 * time.Millisecond, Trailing: 4},
			Logger: slog.New(slog.DiscardHandler)}
		rs[i] = startTestRaft(t, cfgs[i], lns[i])
	}
	l := waitLeader(t, rs)
	for i := 0; i < 20; i++ {
		if err := l.node.raft.Apply([]byte("x"), time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.node.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return rs[0].fsm.get() == 20 && rs[1].fsm.get() == 20 && rs[2].fsm.get() == 20 })
	if _, err := os.Stat(filepath.Join(cfgs[0].DataDir, "raft", "raft.db")); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		r.stop()
	}
	// Restart every voter on the same addresses from disk.
	for i := range rs {
		ln, err := net.Listen("tcp", quorum[i].Addr)
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = startTestRaft(t, cfgs[i], ln)
	}
	defer func() {
		for _, r := range rs {
			r.stop()
		}
	}()
	waitFor(t, func() bool { return rs[0].fsm.get() == 20 && rs[1].fsm.get() == 20 && rs[2].fsm.get() == 20 })
	l = waitLeader(t, rs)
	if err := l.node.raft.Apply([]byte("y"), time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return rs[0].fsm.get() == 21 && rs[1].fsm.get() == 21 && rs[2].fsm.get() == 21 })
	// The low threshold makes every node snapshot on its own.
	waitFor(t, func() bool {
		for _, r := range rs {
			if s, err := r.node.snaps.List(); err != nil || len(s) == 0 {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met within 10s")
}
