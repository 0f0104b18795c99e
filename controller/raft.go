package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Timeouts are the Raft timing knobs (see raft.Config).
type Timeouts struct {
	Heartbeat   time.Duration // follower without contact this long starts an election
	Election    time.Duration // candidate without a result this long retries
	LeaderLease time.Duration // leader without quorum contact this long steps down
	Commit      time.Duration // max delay before a heartbeat carries the commit index
}

// DefaultTimeouts are hashicorp/raft's defaults: conservative, for WANs and
// loaded machines.
func DefaultTimeouts() Timeouts {
	return Timeouts{Heartbeat: time.Second, Election: time.Second, LeaderLease: 500 * time.Millisecond, Commit: 50 * time.Millisecond}
}

// TunedTimeouts is the "tuned" profile for a LAN quorum: failover in a few
// hundred milliseconds.
func TunedTimeouts() Timeouts {
	return Timeouts{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond, LeaderLease: 75 * time.Millisecond, Commit: 10 * time.Millisecond}
}

// TimeoutsProfile returns a named profile: "default" or "tuned".
func TimeoutsProfile(name string) (Timeouts, error) {
	switch name {
	case "", "default":
		return DefaultTimeouts(), nil
	case "tuned":
		return TunedTimeouts(), nil
	}
	return Timeouts{}, fmt.Errorf("controller: unknown raft timeouts profile %q (want default or tuned)", name)
}

func (t Timeouts) String() string {
	return fmt.Sprintf("heartbeat=%v election=%v leader-lease=%v commit=%v", t.Heartbeat, t.Election, t.LeaderLease, t.Commit)
}

// Snapshots are the snapshot knobs (see raft.Config).
type Snapshots struct {
	Threshold uint64        // log entries since the last snapshot that trigger one (default 8192)
	Interval  time.Duration // how often the threshold is checked (default 120 s)
	Trailing  uint64        // log entries kept after a snapshot (default 10240)
	Retain    int           // snapshots kept on disk (default 2)
}

func (s Snapshots) withDefaults() Snapshots {
	if s.Threshold == 0 {
		s.Threshold = 8192
	}
	if s.Interval == 0 {
		s.Interval = 120 * time.Second
	}
	if s.Trailing == 0 {
		s.Trailing = 10240
	}
	if s.Retain == 0 {
		s.Retain = 2
	}
	return s
}

// raftNode is the Raft half of a controller: stores, transport and raft.Raft.
type raftNode struct {
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	snaps *raft.FileSnapshotStore
	trans *raft.NetworkTransport
}

// raftDir is <data-dir>/raft.
func raftDir(dataDir string) string { return filepath.Join(dataDir, "raft") }

// openRaftNode opens (or creates) the node's stores under <data-dir>/raft,
// bootstraps the cluster from voters if there is no state on disk yet, and
// starts Raft.
func openRaftNode(cfg *Config, fsm raft.FSM, stream raft.StreamLayer, notify chan<- bool, log *slog.Logger) (*raftNode, error) {
	dir := raftDir(cfg.DataDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	hl := newHclog(log, cfg.RaftLogLevel)
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("controller: open raft.db: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.Snapshots.Retain, hl.Named("snapshots"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("controller: open snapshots: %w", err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hl.Named("transport"),
	})
	rc := raft.DefaultConfig()
	rc.LocalID = ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.Timeouts.Heartbeat
	rc.ElectionTimeout = cfg.Timeouts.Election
	rc.LeaderLeaseTimeout = cfg.Timeouts.LeaderLease
	rc.CommitTimeout = cfg.Timeouts.Commit
	rc.SnapshotThreshold = cfg.Snapshots.Threshold
	rc.SnapshotInterval = cfg.Snapshots.Interval
	rc.TrailingLogs = cfg.Snapshots.Trailing
	rc.Logger = hl
	rc.NoLegacyTelemetry = true
	// The event loop proposes a round of entries back to back: a buffered
	// apply channel lets the leader write them with one fsync.
	rc.BatchApplyCh = true
	rc.NotifyCh = notify
	if err := raft.ValidateConfig(rc); err != nil {
		trans.Close()
		store.Close()
		return nil, fmt.Errorf("controller: raft config: %w", err)
	}
	closeAll := func() { trans.Close(); store.Close() }
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("controller: read raft state: %w", err)
	}
	if !has && inQuorum(cfg.Quorum, cfg.NodeID) {
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans, raftConfiguration(cfg.Quorum)); err != nil {
			closeAll()
			return nil, fmt.Errorf("controller: bootstrap: %w", err)
		}
		log.Info("controller: bootstrapped raft cluster", "quorum", FormatQuorum(cfg.Quorum))
	} else if !has {
		log.Info("controller: no raft state and not in the quorum; waiting to be added as a voter")
	}
	r, err := raft.NewRaft(rc, fsm, store, store, snaps, trans)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("controller: start raft: %w", err)
	}
	return &raftNode{raft: r, store: store, snaps: snaps, trans: trans}, nil
}

// close shuts Raft down and closes the stores.
func (n *raftNode) close() error {
	err := n.raft.Shutdown().Error()
	if e := n.trans.Close(); err == nil {
		err = e
	}
	if e := n.store.Close(); err == nil {
		err = e
	}
	if errors.Is(err, raft.ErrRaftShutdown) {
		err = nil
	}
	return err
}

// newHclog adapts slog for hashicorp/raft: its lines are re-logged through
// slog at their level. level is an hclog level name; "" means warn.
func newHclog(log *slog.Logger, level string) hclog.Logger {
	if level == "" {
		level = "warn"
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:            "raft",
		Level:           hclog.LevelFromString(level),
		Output:          &slogWriter{log: log},
		DisableTime:     true,
		IncludeLocation: false,
	})
}

type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	lvl := slog.LevelInfo
	switch {
	case strings.HasPrefix(line, "[ERROR]"):
		lvl = slog.LevelError
	case strings.HasPrefix(line, "[WARN]"):
		lvl = slog.LevelWarn
	case strings.HasPrefix(line, "[DEBUG]"), strings.HasPrefix(line, "[TRACE]"):
		lvl = slog.LevelDebug
	}
	w.log.Log(context.Background(), lvl, line)
	return len(p), nil
}

var _ io.Writer = (*slogWriter)(nil)

func inQuorum(vs []Voter, id int32) bool {
	for _, v := range vs {
		if v.ID == id {
			return true
		}
	}
	return false
}
