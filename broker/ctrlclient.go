package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// maxMetadataMsg bounds a FetchMetadata answer (a snapshot of a large image
// is one message: ~14 B per partition).
const maxMetadataMsg = 256 << 20

// ctrlClient talks to the controller quorum: writes go to the active
// controller, found by following NOT_CONTROLLER answers (which carry its
// address) or by trying the voters in turn.
type ctrlClient struct {
	addrs  []string
	dialer func(ctx context.Context, addr string) (net.Conn, error)

	mu struct {
		sync.Mutex
		conns  map[string]*grpc.ClientConn
		leader string // last known active controller, "" unknown
		next   int    // round robin over addrs when the leader is unknown
	}
}

func newCtrlClient(addrs []string, dialer func(ctx context.Context, addr string) (net.Conn, error)) *ctrlClient {
	c := &ctrlClient{addrs: addrs, dialer: dialer}
	c.mu.conns = map[string]*grpc.ClientConn{}
	return c
}

func (c *ctrlClient) conn(addr string) (pb.ControllerServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.mu.conns[addr]; cc != nil {
		return pb.NewControllerServiceClient(cc), nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMetadataMsg)),
	}
	if c.dialer != nil {
		opts = append(opts, grpc.WithContextDialer(c.dialer))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	c.mu.conns[addr] = cc
	return pb.NewControllerServiceClient(cc), nil
}

// target is the address to try next: the known leader, else the next voter.
func (c *ctrlClient) target() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.leader != "" {
		return c.mu.leader
	}
	a := c.addrs[c.mu.next%len(c.addrs)]
	c.mu.next++
	return a
}

func (c *ctrlClient) setLeader(addr string) {
	c.mu.Lock()
	c.mu.leader = addr
	c.mu.Unlock()
}

// errorInfo extracts the Strata error a controller attached to a status.
func errorInfo(err error) *pb.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*pb.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// call runs fn against the active controller (anyVoter: any voter will do,
// for reads), retrying across voters until ctx ends. It returns fn's last
// error when that error is not about reaching the controller.
func (c *ctrlClient) call(ctx context.Context, anyVoter bool, fn func(context.Context, pb.ControllerServiceClient) error) error {
	backoff := 20 * time.Millisecond
	for {
		addr := c.target()
		cl, err := c.conn(addr)
		if err == nil {
			err = fn(ctx, cl)
		}
		if err == nil {
			return nil
		}
		info := errorInfo(err)
		switch {
		case info != nil && info.Code == pb.ErrorCode_NOT_CONTROLLER:
			if anyVoter {
				return err
			}
			c.setLeader(info.LeaderAddress) // "" when the voter does not know either
			if info.LeaderAddress != "" && info.LeaderAddress != addr {
				continue
			}
		case status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil:
			c.setLeader("")
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("broker: controller quorum %v: %w (last: %v)", c.addrs, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (c *ctrlClient) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, cc := range c.mu.conns {
		errs = append(errs, cc.Close())
	}
	c.mu.conns = map[string]*grpc.ClientConn{}
	return errors.Join(errs...)
}
