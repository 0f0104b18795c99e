// Package controllertest runs in-process controller quorums on loopback for
// tests: a Network whose dialers can cut and heal links between chosen nodes
// (like hashicorp/raft's MakeCluster Partition/Disconnect), and a Cluster of
// controllers built on it.
package controllertest

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/stratalog/strata/controller"
)

// ErrLinkCut is what a dial across a cut link returns.
var ErrLinkCut = errors.New("controllertest: link cut")

type link struct{ a, b string }

func mkLink(a, b string) link {
	if a > b {
		a, b = b, a
	}
	return link{a, b}
}

// Network hands out dialers that honour cut links. Nodes are named by their
// listen address. Two ways to cut a link, in both directions:
//
//   - Cut: new dials are refused and the connections open across it are
//     closed (a crashed peer, a reset).
//   - Blackhole: dials succeed and connections stay open, but every byte
//     either way is silently dropped (a partition: the other side only
//     learns from timeouts).
type Network struct {
	mu struct {
		sync.Mutex
		cut   map[link]bool
		hole  map[link]bool
		conns map[link]map[*trackedConn]struct{}
	}
}

// NewNetwork returns a network with every link up.
func NewNetwork() *Network {
	n := &Network{}
	n.mu.cut = map[link]bool{}
	n.mu.hole = map[link]bool{}
	n.mu.conns = map[link]map[*trackedConn]struct{}{}
	return n
}

// Blackhole drops all traffic between every node of a and every node of b.
func (n *Network) Blackhole(a, b []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			if x != y {
				n.mu.hole[mkLink(x, y)] = true
			}
		}
	}
}

func (n *Network) holed(l link) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.hole[l]
}

// Dialer returns the dialer for the node listening on from.
func (n *Network) Dialer(from string) controller.Dialer {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		l := mkLink(from, addr)
		n.mu.Lock()
		cut := n.mu.cut[l]
		n.mu.Unlock()
		if cut {
			return nil, ErrLinkCut
		}
		c, err := controller.DefaultDialer(ctx, addr)
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, n: n, l: l}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.mu.cut[l] { // cut while dialing
			c.Close()
			return nil, ErrLinkCut
		}
		if n.mu.conns[l] == nil {
			n.mu.conns[l] = map[*trackedConn]struct{}{}
		}
		n.mu.conns[l][tc] = struct{}{}
		return tc, nil
	}
}

// Cut cuts the links between every node of a and every node of b.
func (n *Network) Cut(a, b []string) {
	var toClose []*trackedConn
	n.mu.Lock()
	for _, x := range a {
		for _, y := range b {
			if x == y {
				continue
			}
			l := mkLink(x, y)
			n.mu.cut[l] = true
			for c := range n.mu.conns[l] {
				toClose = append(toClose, c)
			}
			delete(n.mu.conns, l)
		}
	}
	n.mu.Unlock()
	for _, c := range toClose {
		c.Conn.Close()
	}
}

// Isolate cuts node from every other node in all.
func (n *Network) Isolate(node string, all []string) { n.Cut([]string{node}, all) }

// HealAll restores every link. Connections that crossed a blackhole are
// closed: bytes were lost mid-stream, so they can not carry on (as TCP would
// have given up on them during a long partition).
func (n *Network) HealAll() {
	var toClose []*trackedConn
	n.mu.Lock()
	for l := range n.mu.hole {
		for c := range n.mu.conns[l] {
			toClose = append(toClose, c)
		}
		delete(n.mu.conns, l)
	}
	n.mu.cut = map[link]bool{}
	n.mu.hole = map[link]bool{}
	n.mu.Unlock()
	for _, c := range toClose {
		c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	n    *Network
	l    link
	once sync.Once
}

// Write drops p on a blackholed link (reporting success, as a kernel would).
func (c *trackedConn) Write(p []byte) (int, error) {
	if c.n.holed(c.l) {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Read drops what arrives on a blackholed link and keeps waiting.
func (c *trackedConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if n > 0 && c.n.holed(c.l) {
			if err != nil {
				return 0, err
			}
			continue
		}
		return n, err
	}
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.n.mu.Lock()
		delete(c.n.mu.conns[c.l], c)
		c.n.mu.Unlock()
	})
	return c.Conn.Close()
}
