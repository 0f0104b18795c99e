package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/stratalog/strata/internal/rpcmetrics"
	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Controller is one controller node: a Raft voter (or a node waiting to be
// added as one) serving ControllerService on the same port. While it is the
// Raft leader it is the active controller.
type Controller struct {
	cfg  Config
	log  *slog.Logger
	addr string // advertised
	mux  *mux
	fsm  *raftfsm.FSM
	node *raftNode
	srv  *grpc.Server
	rpc  *rpcmetrics.Metrics // the ControllerService's RPC metrics

	notify   chan bool     // raft's NotifyCh
	leaderCh chan struct{} // size 1: leadership may have changed
	ops      chan *op
	done     chan struct{}
	wg       sync.WaitGroup

	active    atomic.Bool // leader, barrier passed: decisions are served
	started   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and binds the controller's port (Config.Listener or
// Config.Addr). Nothing else happens until Start.
func New(cfg Config) (*Controller, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("controller: listen %s: %w", cfg.Addr, err)
		}
	}
	addr := cfg.AdvertiseAddr
	if addr == "" {
		addr = ln.Addr().String()
	}
	log := cfg.Logger.With("node", cfg.NodeID, "role", "controller")
	c := &Controller{
		cfg:      cfg,
		log:      log,
		addr:     addr,
		mux:      newMux(ln, cfg.Dialer, log),
		fsm:      raftfsm.NewFSM(log),
		notify:   make(chan bool, 16),
		leaderCh: make(chan struct{}, 1),
		ops:      make(chan *op, 256),
		done:     make(chan struct{}),
		rpc:      rpcmetrics.New("controller"),
	}
	return c, nil
}

// Addr is the controller's advertised address (Raft and gRPC).
func (c *Controller) Addr() string { return c.addr }

// NodeID is this node's id.
func (c *Controller) NodeID() int32 { return c.cfg.NodeID }

// Start opens the Raft state under <DataDir>/raft (bootstrapping from
// Config.Quorum on the first start), and serves Raft and ControllerService on
// the port. ctx bounds the start only; Close stops the controller.
func (c *Controller) Start(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("controller: already started")
	}
	if err := ctx.Err(); err != nil {
		c.mux.close()
		return err
	}
	c.mux.serve()
	node, err := openRaftNode(&c.cfg, c.fsm, &streamLayer{m: c.mux, advertise: tcpAddr(c.addr)}, c.notify, c.log)
	if err != nil {
		c.mux.close()
		return err
	}
	c.node = node
	c.srv = grpc.NewServer()
	pb.RegisterControllerServiceServer(c.rpc.Registrar(c.srv), &service{c: c})
	reflection.Register(c.srv)
	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		if err := c.srv.Serve(c.mux.grpc); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			c.log.Warn("controller: grpc serve", "err", err)
		}
	}()
	go func() { defer c.wg.Done(); c.watchLeadership() }()
	go func() { defer c.wg.Done(); c.run() }()
	c.log.Info("controller: started", "addr", c.addr, "timeouts", c.cfg.Timeouts.String())
	return nil
}

// Close stops serving, shuts Raft down and closes the stores. Pending
// requests fail with NOT_CONTROLLER.
func (c *Controller) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.active.Store(false)
		if c.srv != nil {
			// Stop, not GracefulStop: long polls would hold it up.
			c.srv.Stop()
		}
		if c.node != nil {
			c.closeErr = c.node.close()
		}
		c.wg.Wait()
		if err := c.mux.close(); err != nil && c.closeErr == nil && !errors.Is(err, net.ErrClosed) {
			c.closeErr = err
		}
	})
	return c.closeErr
}

// IsActive reports whether this node is the active controller (the Raft
// leader, caught up with the log).
func (c *Controller) IsActive() bool { return c.active.Load() }

// Image is the current metadata image (committed and applied).
func (c *Controller) Image() *raftfsm.Image { return c.fsm.Image() }

// WaitForOffset waits until the image has applied offset.
func (c *Controller) WaitForOffset(ctx context.Context, offset int64) (*raftfsm.Image, error) {
	return c.fsm.WaitFor(ctx, offset)
}

// Leader returns the Raft leader's node id and address as this node knows
// them; -1 and "" when unknown.
func (c *Controller) Leader() (int32, string) {
	if c.node == nil {
		return -1, ""
	}
	addr, id := c.node.raft.LeaderWithID()
	if id == "" {
		return -1, ""
	}
	n, err := ParseServerID(id)
	if err != nil {
		return -1, string(addr)
	}
	return n, string(addr)
}

// Snapshot takes a Raft snapshot now (operators and tests; Raft also takes
// them by itself per Config.Snapshots).
func (c *Controller) Snapshot() error {
	if c.node == nil {
		return errors.New("controller: not started")
	}
	return c.node.raft.Snapshot().Error()
}

// Stats returns hashicorp/raft's stats (state, term, indexes, ...).
func (c *Controller) Stats() map[string]string {
	if c.node == nil {
		return nil
	}
	return c.node.raft.Stats()
}

// notController is the NOT_CONTROLLER error naming the leader.
func (c *Controller) notController() *Error {
	id, addr := c.Leader()
	if id == c.cfg.NodeID {
		// We lead but are not active (yet): say we do not know.
		id, addr = -1, ""
	}
	return &Error{Code: pb.ErrorCode_NOT_CONTROLLER, Message: "not the active controller", LeaderID: id, LeaderAddr: addr}
}

// watchLeadership forwards raft's blocking NotifyCh to leaderCh, which never
// blocks Raft.
func (c *Controller) watchLeadership() {
	for {
		select {
		case <-c.notify:
			select {
			case c.leaderCh <- struct{}{}:
			default:
			}
		case <-c.done:
			return
		}
	}
}

// applyTimeout is the Raft apply timeout for a request: its deadline, or
// Config.ApplyTimeout.
func (c *Controller) applyTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d < time.Millisecond {
			d = time.Millisecond
		}
		return d
	}
	return c.cfg.ApplyTimeout
}

type tcpAddrString string

func (a tcpAddrString) Network() string { return "tcp" }
func (a tcpAddrString) String() string  { return string(a) }

func tcpAddr(s string) net.Addr { return tcpAddrString(s) }
