package controllertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/controller"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Options configure a Cluster. Zero values take test-friendly defaults.
type Options struct {
	Voters         int                  // default 3
	Timeouts       controller.Timeouts  // default TestTimeouts
	Snapshots      controller.Snapshots // default: the controller's defaults
	SessionTimeout time.Duration        // default 1 s
	Logger         *slog.Logger         // default: discard (STRATA_TEST_LOG=1: stderr)
	// Dir holds the nodes' data dirs; default t.TempDir().
	Dir string
}

// TestTimeouts are the tuned Raft timeouts tests use.
func TestTimeouts() controller.Timeouts {
	return controller.Timeouts{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond,
		LeaderLease: 100 * time.Millisecond, Commit: 5 * time.Millisecond}
}

// Cluster is an in-process controller quorum on loopback. Node i (0-based)
// has node id i+1. Links between nodes go through Net.
type Cluster struct {
	t     testing.TB
	Net   *Network
	Addrs []string
	cfgs  []controller.Config

	mu struct {
		sync.Mutex
		nodes []*controller.Controller // nil: stopped
		conns map[string]*grpc.ClientConn
	}
}

// NewCluster starts a quorum of opts.Voters controllers and registers its
// shutdown with t.Cleanup.
func NewCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Voters == 0 {
		opts.Voters = 3
	}
	if opts.Timeouts == (controller.Timeouts{}) {
		opts.Timeouts = TestTimeouts()
	}
	if opts.SessionTimeout == 0 {
		opts.SessionTimeout = time.Second
	}
	if opts.Logger == nil {
		if os.Getenv("STRATA_TEST_LOG") != "" {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		} else {
			opts.Logger = slog.New(slog.DiscardHandler)
		}
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c := &Cluster{t: t, Net: NewNetwork()}
	c.mu.conns = map[string]*grpc.ClientConn{}
	var lns []net.Listener
	var quorum []controller.Voter
	for i := range opts.Voters {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		c.Addrs = append(c.Addrs, ln.Addr().String())
		quorum = append(quorum, controller.Voter{ID: int32(i + 1), Addr: ln.Addr().String()})
	}
	for i := range opts.Voters {
		c.cfgs = append(c.cfgs, controller.Config{
			NodeID:         int32(i + 1),
			DataDir:        filepath.Join(opts.Dir, fmt.Sprintf("node%d", i+1)),
			Quorum:         quorum,
			Dialer:         c.Net.Dialer(c.Addrs[i]),
			Timeouts:       opts.Timeouts,
			Snapshots:      opts.Snapshots,
			SessionTimeout: opts.SessionTimeout,
			Logger:         opts.Logger,
		})
	}
	c.mu.nodes = make([]*controller.Controller, opts.Voters)
	for i := range opts.Voters {
		c.start(i, lns[i])
	}
	t.Cleanup(c.Close)
	return c
}

func (c *Cluster) start(i int, ln net.Listener) {
	c.t.Helper()
	cfg := c.cfgs[i]
	cfg.Listener = ln
	n, err := controller.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.mu.nodes[i] = n
	c.mu.Unlock()
}

// Node returns node i, nil when stopped.
func (c *Cluster) Node(i int) *controller.Controller {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.nodes[i]
}

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.Addrs) }

// Stop stops node i (its data stays).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	n := c.mu.nodes[i]
	c.mu.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		if err := n.Close(); err != nil {
			c.t.Logf("close node %d: %v", i+1, err)
		}
	}
}

// Restart starts a stopped node i again on its address, from its disk.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger a moment
		if ln, err = net.Listen("tcp", c.Addrs[i]); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.start(i, ln)
}

// Close stops every node and closes the clients.
func (c *Cluster) Close() {
	for i := range c.Addrs {
		c.Stop(i)
	}
	c.mu.Lock()
	for _, cc := range c.mu.conns {
		cc.Close()
	}
	c.mu.conns = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
}

// Active waits up to timeout for an active controller and returns its index.
func (c *Cluster) Active(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		for i := range c.Addrs {
			if n := c.Node(i); n != nil && n.IsActive() {
				return i, nil
			}
		}
		if time.Now().After(deadline) {
			return -1, errors.New("controllertest: no active controller")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// MustActive is Active that fails the test (10 s).
func (c *Cluster) MustActive() int {
	c.t.Helper()
	i, err := c.Active(10 * time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return i
}

// Client returns a ControllerService client for node i.
func (c *Cluster) Client(i int) pb.ControllerServiceClient {
	return pb.NewControllerServiceClient(c.conn(c.Addrs[i]))
}

func (c *Cluster) conn(addr string) *grpc.ClientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.mu.conns[addr]; cc != nil {
		return cc
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.conns[addr] = cc
	return cc
}

// Call runs fn against the active controller, following NOT_CONTROLLER
// answers and retrying unreachable nodes until ctx is done.
func (c *Cluster) Call(ctx context.Context, fn func(pb.ControllerServiceClient) error) error {
	i := 0
	if a, err := c.Active(0); err == nil {
		i = a
	}
	for {
		err := fn(c.Client(i))
		if err == nil {
			return nil
		}
		var ce *controller.Error
		e := controller.FromGRPC(err)
		retry := false
		if errors.As(e, &ce) && ce.Code == pb.ErrorCode_NOT_CONTROLLER {
			retry = true
			if ce.LeaderID > 0 && int(ce.LeaderID) <= c.Size() {
				i = int(ce.LeaderID) - 1
			} else {
				i = (i + 1) % c.Size()
			}
		} else if isUnavailable(err) {
			retry = true
			i = (i + 1) % c.Size()
		}
		if !retry {
			return e
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), e)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
