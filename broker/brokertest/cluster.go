// Package brokertest starts in-process Strata clusters on loopback for
// tests: a controller quorum (controllertest) and brokers with ids 101, 102,
// ... Links go through the controller cluster's Network, so tests can cut
// and heal them.
package brokertest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/broker"
	"github.com/stratalog/strata/controller/controllertest"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Options configure a Cluster; zero values take test-friendly defaults.
type Options struct {
	Voters  int // controller voters, default 1
	Brokers int // default 3
	// ReplicaLagTimeMax is replica.lag.time.max.ms (default 1.5 s).
	ReplicaLagTimeMax time.Duration
	// SessionTimeout is broker.session.timeout.ms at the controllers (default 2 s).
	SessionTimeout time.Duration
	// FetchMaxWait is the replica fetchers' long-poll wait (default 100 ms).
	FetchMaxWait time.Duration
	// DirectDial makes brokers dial each other directly instead of through
	// the link-cutting Network (benchmarks).
	DirectDial bool
	// Groups configures the group coordinators. Unset fields default to
	// test-sized values: 4 offsets partitions, a 3 s session timeout, a
	// 300 ms heartbeat interval (the broker's defaults are 50, 45 s, 5 s).
	Groups broker.GroupConfig
}

// Cluster is an in-process cluster.
type Cluster struct {
	TB   testing.TB
	Ctrl *controllertest.Cluster
	opts Options
	dir  string

	mu      sync.Mutex
	brokers map[int32]*broker.Broker
	addrs   map[int32]string
}

// Logger is what the clusters log to: nothing, or stderr with STRATA_TEST_LOG=1.
func Logger() *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// NewCluster starts a cluster, waits until every broker is ready, and
// registers its shutdown with tb.Cleanup.
func NewCluster(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	if opts.Voters == 0 {
		opts.Voters = 1
	}
	if opts.Brokers == 0 {
		opts.Brokers = 3
	}
	if opts.ReplicaLagTimeMax == 0 {
		opts.ReplicaLagTimeMax = 1500 * time.Millisecond
	}
	if opts.SessionTimeout == 0 {
		opts.SessionTimeout = 2 * time.Second
	}
	if opts.FetchMaxWait == 0 {
		opts.FetchMaxWait = 100 * time.Millisecond
	}
	c := &Cluster{TB: tb, opts: opts, dir: tb.TempDir(), brokers: map[int32]*broker.Broker{}, addrs: map[int32]string{}}
	c.Ctrl = controllertest.NewCluster(tb, controllertest.Options{Voters: opts.Voters, SessionTimeout: opts.SessionTimeout, Logger: Logger()})
	for i := range opts.Brokers {
		c.Start(int32(101 + i))
	}
	tb.Cleanup(func() {
		c.mu.Lock()
		bs := c.brokers
		c.brokers = map[int32]*broker.Broker{}
		c.mu.Unlock()
		for _, b := range bs {
			b.Kill()
		}
	})
	c.WaitReady()
	return c
}

// Start starts broker id (again, on its old address and data, if it ran before).
func (c *Cluster) Start(id int32) *broker.Broker {
	c.TB.Helper()
	c.mu.Lock()
	addr := c.addrs[id]
	c.mu.Unlock()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.TB.Fatal(err)
	}
	cfg := broker.Config{
		NodeID: id, DataDir: filepath.Join(c.dir, fmt.Sprint(id)), Listener: ln,
		Controllers: c.Ctrl.Addrs, Dialer: c.Ctrl.Net.Dialer(ln.Addr().String()),
		ReplicaLagTimeMax: c.opts.ReplicaLagTimeMax, MetadataMaxWait: 200 * time.Millisecond,
		Fetcher:         broker.FetcherConfig{MaxWait: c.opts.FetchMaxWait, Backoff: 50 * time.Millisecond},
		ShutdownTimeout: 10 * time.Second,
		Groups:          c.groupConfig(),
		Logger:          Logger(),
	}
	if c.opts.DirectDial {
		cfg.Dialer = nil
	}
	b, err := broker.New(cfg)
	if err != nil {
		c.TB.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		c.TB.Fatalf("start broker %d: %v", id, err)
	}
	c.mu.Lock()
	c.brokers[id] = b
	c.addrs[id] = ln.Addr().String()
	c.mu.Unlock()
	return b
}

func (c *Cluster) groupConfig() broker.GroupConfig {
	g := c.opts.Groups
	if g.OffsetsTopicPartitions == 0 {
		g.OffsetsTopicPartitions = 4
	}
	if g.SessionTimeout == 0 {
		g.SessionTimeout = 3 * time.Second
	}
	if g.HeartbeatInterval == 0 {
		g.HeartbeatInterval = 300 * time.Millisecond
	}
	return g
}

// Kill stops broker id abruptly (a crash).
func (c *Cluster) Kill(id int32) {
	c.mu.Lock()
	b := c.brokers[id]
	delete(c.brokers, id)
	c.mu.Unlock()
	if b != nil {
		b.Kill()
	}
}

// Broker is the running broker id, or nil.
func (c *Cluster) Broker(id int32) *broker.Broker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.brokers[id]
}

// Addr is broker id's address.
func (c *Cluster) Addr(id int32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[id]
}

// IDs lists every broker id this cluster has started, running or not.
func (c *Cluster) IDs() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int32
	for id := range c.addrs {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Running lists the running brokers' ids.
func (c *Cluster) Running() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int32
	for id := range c.brokers {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Bootstrap lists the running brokers' addresses.
func (c *Cluster) Bootstrap() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id := range c.brokers {
		out = append(out, c.addrs[id])
	}
	sort.Strings(out)
	return out
}

// WaitReady waits until every running broker is registered, unfenced and
// caught up.
func (c *Cluster) WaitReady() {
	c.TB.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ready := true
		c.mu.Lock()
		for _, b := range c.brokers {
			ready = ready && b.Ready()
		}
		c.mu.Unlock()
		if ready {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.TB.Fatalf("brokers not ready within 20 s")
}

// CreateTopic creates a topic through the controllers, retrying while a
// just-started broker is not yet unfenced, and waits until every broker's
// metadata has it.
func (c *Cluster) CreateTopic(name string, partitions, rf int32, configs map[string]string) {
	c.TB.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		var code pb.ErrorCode
		err := c.Ctrl.Call(ctx, func(cl pb.ControllerServiceClient) error {
			resp, err := cl.CreateTopics(ctx, &pb.CreateTopicsRequest{Topics: []*pb.CreatableTopic{{Name: name, NumPartitions: partitions, ReplicationFactor: rf, Configs: configs}}})
			if err != nil {
				return err
			}
			if r := resp.Topics[0]; r.ErrorCode != pb.ErrorCode_NONE {
				code = r.ErrorCode
				return fmt.Errorf("create topic %s: %v %s", name, r.ErrorCode, r.ErrorMessage)
			}
			return nil
		})
		if code == pb.ErrorCode_INVALID_REPLICATION_FACTOR && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			c.TB.Fatal(err)
		}
		break
	}
	for {
		all := true
		c.mu.Lock()
		for _, b := range c.brokers {
			all = all && b.Image().Topic(name) != nil
		}
		c.mu.Unlock()
		if all {
			return
		}
		if ctx.Err() != nil {
			c.TB.Fatalf("topic %s not in every broker's metadata", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
