package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/stratalog/strata/integration/netproxy"
)

// Fault is one thing the nemesis did.
type Fault struct {
	At   time.Time
	What string
}

// Nemesis injects faults into a cluster and keeps their history: kill -9,
// SIGSTOP/SIGCONT, restarts, and link faults through the proxies.
type Nemesis struct {
	c   *Cluster
	log func(format string, args ...any)

	mu struct {
		sync.Mutex
		history []Fault
		faults  int
	}
}

// Nemesis returns a nemesis for c that logs each act with logf (t.Logf).
func (c *Cluster) Nemesis(logf func(format string, args ...any)) *Nemesis {
	return &Nemesis{c: c, log: logf}
}

// note records an act; fault says whether it counts as a fault (a heal or
// a restart does not).
func (m *Nemesis) note(fault bool, format string, args ...any) {
	f := Fault{At: time.Now(), What: fmt.Sprintf(format, args...)}
	m.mu.Lock()
	m.mu.history = append(m.mu.history, f)
	if fault {
		m.mu.faults++
	}
	m.mu.Unlock()
	if m.log != nil {
		m.log("nemesis %s: %s", f.At.Format("15:04:05.000"), f.What)
	}
}

// Faults is the number of faults injected so far.
func (m *Nemesis) Faults() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.faults
}

// History is every act so far, in order.
func (m *Nemesis) History() []Fault {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Fault(nil), m.mu.history...)
}

// Kill is kill -9 of n.
func (m *Nemesis) Kill(n *Node) error {
	m.note(true, "kill -9 %s (pid %d)", n.Name, n.Pid())
	return n.Kill()
}

// Start starts n again (from its data directory) and waits for /readyz.
func (m *Nemesis) Start(ctx context.Context, n *Node) error {
	m.note(false, "start %s", n.Name)
	if err := n.Start(); err != nil {
		return err
	}
	return n.WaitReady(ctx)
}

// Stop is a SIGTERM (controlled shutdown) of n.
func (m *Nemesis) Stop(n *Node) error {
	m.note(true, "SIGTERM %s", n.Name)
	return n.Stop(45 * time.Second)
}

// Pause is SIGSTOP of n; Resume SIGCONT.
func (m *Nemesis) Pause(n *Node) error {
	m.note(true, "SIGSTOP %s", n.Name)
	return n.Pause()
}

func (m *Nemesis) Resume(n *Node) error {
	m.note(false, "SIGCONT %s", n.Name)
	return n.Resume()
}

// proxies of n.
func proxies(n *Node) []*netproxy.Proxy {
	var out []*netproxy.Proxy
	for _, p := range []*netproxy.Proxy{n.CtrlProxy, n.BrokerProxy} {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func names(ns []*Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return "{" + strings.Join(s, ",") + "}"
}

// Partition stalls every link between a node of a and a node of b, both
// ways: bytes already sent are held, new connections carry nothing. Links
// to clients and within each side are untouched.
func (m *Nemesis) Partition(a, b []*Node) {
	m.note(true, "partition %s | %s", names(a), names(b))
	for _, x := range a {
		for _, y := range b {
			for _, p := range proxies(y) {
				p.Set(x.Name, netproxy.Rule{Stall: netproxy.Both})
			}
			for _, p := range proxies(x) {
				p.Set(y.Name, netproxy.Rule{Stall: netproxy.Both})
			}
		}
	}
}

// CutOneWay stalls bytes from each node of from to each node of to; the
// other direction still flows.
func (m *Nemesis) CutOneWay(from, to []*Node) {
	m.note(true, "one-way cut %s -> %s", names(from), names(to))
	for _, x := range from {
		for _, y := range to {
			for _, p := range proxies(y) { // x dialled y: x's bytes go up
				p.Set(x.Name, netproxy.Rule{Stall: netproxy.Up})
			}
			for _, p := range proxies(x) { // y dialled x: x's bytes go down
				p.Set(y.Name, netproxy.Rule{Stall: netproxy.Down})
			}
		}
	}
}

// Delay adds d to every chunk on every link into the nodes of to.
func (m *Nemesis) Delay(to []*Node, d time.Duration) {
	m.note(true, "delay %v into %s", d, names(to))
	for _, y := range to {
		for _, p := range proxies(y) {
			p.Set(netproxy.AnySource, netproxy.Rule{Delay: d})
		}
	}
}

// Heal lifts every link fault.
func (m *Nemesis) Heal() {
	m.note(false, "heal all links")
	for _, n := range m.c.all {
		for _, p := range proxies(n) {
			p.Heal()
		}
	}
}

// Others returns the nodes of ns other than n.
func Others(ns []*Node, n *Node) []*Node {
	var out []*Node
	for _, x := range ns {
		if x != n {
			out = append(out, x)
		}
	}
	return out
}
