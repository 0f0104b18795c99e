package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// groupService returns a GroupService client for the broker at addr.
func (c *Client) groupService(addr string) (pb.GroupServiceClient, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewGroupServiceClient(cc), nil
}

// findCoordinators asks the brokers (the known ones, then the bootstrap
// list) which broker coordinates each group: one FindCoordinator to the
// first broker that answers. Groups the answer refuses carry their error.
func (c *Client) findCoordinators(ctx context.Context, groups []string) (map[string]string, map[string]error, error) {
	var addrs []string
	if m, err := c.Metadata(ctx); err == nil {
		for _, b := range m.Brokers {
			addrs = append(addrs, b.Addr)
		}
	} else if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	addrs = append(addrs, c.cfg.Bootstrap...)
	seen := map[string]bool{}
	var lastErr error
	for _, a := range addrs {
		if seen[a] {
			continue
		}
		seen[a] = true
		gs, err := c.groupService(a)
		if err != nil {
			lastErr = err
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, min(c.cfg.RequestTimeout, 5*time.Second))
		resp, err := gs.FindCoordinator(rctx, &pb.FindCoordinatorRequest{GroupIds: groups})
		cancel()
		if err != nil {
			lastErr = FromError(err)
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			var e *Error
			if errors.As(lastErr, &e) && !e.Retriable && !coordinatorError(e) {
				return nil, nil, lastErr // a bad request: every broker would say so
			}
			continue
		}
		found, failed := map[string]string{}, map[string]error{}
		for _, co := range resp.Coordinators {
			if err := itemError(co.ErrorCode, co.ErrorMessage); err != nil {
				failed[co.GroupId] = err
			} else if co.Address == "" {
				failed[co.GroupId] = ErrCoordinatorNotAvailable
			} else {
				found[co.GroupId] = co.Address
			}
		}
		for _, g := range groups {
			if _, ok := found[g]; !ok && failed[g] == nil {
				failed[g] = &Error{Code: pb.ErrorCode_COORDINATOR_NOT_AVAILABLE, Retriable: true,
					Message: fmt.Sprintf("FindCoordinator did not answer for group %q", g)}
			}
		}
		return found, failed, nil
	}
	return nil, nil, &Error{Code: pb.ErrorCode_BROKER_NOT_AVAILABLE, Retriable: true,
		Message: fmt.Sprintf("no broker answered FindCoordinator (last error: %v); check --bootstrap and that the cluster is up", lastErr)}
}

// groupRouter sends one group's requests to its coordinator, finding it
// with FindCoordinator and again whenever an answer says it moved
// (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS,
// or the broker is unreachable). Safe for concurrent use.
type groupRouter struct {
	cl    *Client
	group string

	mu   sync.Mutex
	addr string // "" unknown
}

// coordinator returns the coordinator's address, looking it up when unknown.
func (r *groupRouter) coordinator(ctx context.Context) (string, error) {
	r.mu.Lock()
	addr := r.addr
	r.mu.Unlock()
	if addr != "" {
		return addr, nil
	}
	found, failed, err := r.cl.findCoordinators(ctx, []string{r.group})
	if err != nil {
		return "", err
	}
	if err := failed[r.group]; err != nil {
		return "", err
	}
	addr = found[r.group]
	r.mu.Lock()
	r.addr = addr
	r.mu.Unlock()
	return addr, nil
}

// forget drops the coordinator if it is still addr.
func (r *groupRouter) forget(addr string) {
	r.mu.Lock()
	if r.addr == addr {
		r.addr = ""
	}
	r.mu.Unlock()
}

// once runs fn against the coordinator one time (one RPC bounded by the
// client's RequestTimeout). A coordinator error makes the next call look
// the coordinator up again.
func (r *groupRouter) once(ctx context.Context, fn func(context.Context, pb.GroupServiceClient) error) error {
	addr, err := r.coordinator(ctx)
	if err != nil {
		return err
	}
	gs, err := r.cl.groupService(addr)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, r.cl.cfg.RequestTimeout)
	err = FromError(fn(rctx, gs))
	cancel()
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	var e *Error
	if errors.As(err, &e) && coordinatorError(e) && e.Code != pb.ErrorCode_COORDINATOR_LOAD_IN_PROGRESS {
		r.forget(addr)
	}
	return err
}

// do runs fn against the coordinator, retrying with backoff (50 ms doubling
// to 1 s) while the coordinator moves or loads, for up to the client's
// RequestTimeout or until ctx ends. Other errors come back at once.
func (r *groupRouter) do(ctx context.Context, fn func(context.Context, pb.GroupServiceClient) error) error {
	deadline := time.Now().Add(r.cl.cfg.RequestTimeout)
	backoff := 50 * time.Millisecond
	for {
		err := r.once(ctx, fn)
		if err == nil || !coordinatorError(err) || time.Now().After(deadline) {
			return err
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// sleepCtx waits d or until ctx ends (then it returns ctx's error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
