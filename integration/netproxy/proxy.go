// Package netproxy is a fault-injecting TCP proxy for the multi-process
// fault suite: every node of a test cluster is reached through a Proxy in
// front of its port, and the nemesis cuts, stalls, delays or resets links by
// source.
//
// A Proxy tells its connections apart by source: Identify maps the remote
// address of an accepted connection to a name ("broker-2", "client"), and a
// Rule set for that name applies to every connection from it, existing and
// future, until it is changed.
//
//	source ──▶ [front listener] ── up ──▶ backend
//	       ◀──                    ◀── down ──
//
// Faults, per source and direction:
//   - Stall (a partition): bytes are held, not dropped, while the rule is in
//     force: the sender's window fills and its peer sees nothing, as behind a
//     firewall that drops packets; lifting the rule delivers what was held,
//     as TCP retransmission would. A connection opened while stalled is
//     accepted (and its backend dialled) but carries nothing.
//   - Reset: existing connections are closed and new ones closed at once,
//     as a host that answers with RST.
//   - Delay: each chunk waits this long before it is forwarded (order kept).
//
// A one-way cut stalls one direction only. Bytes are never dropped from the
// middle of a stream: that would corrupt framing (HTTP/2, Raft) in a way no
// real network does.
package netproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Direction names one way of a proxied connection.
type Direction uint8

const (
	// Up is source -> backend.
	Up Direction = 1 << iota
	// Down is backend -> source.
	Down
	// Both is Up|Down.
	Both = Up | Down
)

// Rule is what happens to the connections of one source.
type Rule struct {
	Stall Direction     // directions whose bytes are held
	Reset bool          // close existing connections, refuse new ones
	Delay time.Duration // added to every chunk, both ways
}

func (r Rule) String() string {
	s := ""
	if r.Stall&Up != 0 {
		s += "stall-up "
	}
	if r.Stall&Down != 0 {
		s += "stall-down "
	}
	if r.Reset {
		s += "reset "
	}
	if r.Delay > 0 {
		s += fmt.Sprintf("delay-%v ", r.Delay)
	}
	if s == "" {
		return "pass"
	}
	return s[:len(s)-1]
}

// AnySource as a Rule's source applies to every source without a rule of its own.
const AnySource = "*"

// Config configures a Proxy.
type Config struct {
	Name    string // for String and errors
	Listen  string // front address; "127.0.0.1:0" picks a port
	Backend string // address connections are forwarded to
	// Identify names the source of an accepted connection from its two
	// ends (local: the proxy's side). Nil: every source is "".
	Identify func(local, remote net.Addr) string
	// DialTimeout bounds the backend dial (default 2 s).
	DialTimeout time.Duration
}

// Proxy forwards connections from its front address to a backend.
type Proxy struct {
	cfg Config
	ln  net.Listener

	mu struct {
		sync.Mutex
		rules   map[string]Rule
		changed chan struct{} // closed and replaced on every rule change
		conns   map[*link]struct{}
		closed  bool
	}
	wg sync.WaitGroup
}

// link is one proxied connection.
type link struct {
	source string
	front  net.Conn
	done   chan struct{} // closed by close

	mu struct {
		sync.Mutex
		back   net.Conn // nil until the backend answers the dial
		closed bool
	}
}

// close ends both sides of the link; it may run at any time from any
// goroutine (a Reset rule closes links while serve is still dialing).
func (l *link) close() {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return
	}
	l.mu.closed = true
	back := l.mu.back
	l.mu.Unlock()
	close(l.done)
	l.front.Close()
	if back != nil {
		back.Close()
	}
}

// attach records the backend connection; it reports false, having closed
// back, when the link was closed while the dial was under way.
func (l *link) attach(back net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		back.Close()
		return false
	}
	l.mu.back = back
	return true
}

// New listens on cfg.Listen and starts forwarding.
func New(cfg Config) (*Proxy, error) {
	if cfg.Backend == "" {
		return nil, errors.New("netproxy: no backend address")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("netproxy %s: listen: %w", cfg.Name, err)
	}
	p := &Proxy{cfg: cfg, ln: ln}
	p.mu.rules = map[string]Rule{}
	p.mu.changed = make(chan struct{})
	p.mu.conns = map[*link]struct{}{}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the front address sources dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Backend is the address connections are forwarded to.
func (p *Proxy) Backend() string { return p.cfg.Backend }

func (p *Proxy) String() string {
	return fmt.Sprintf("%s(%s->%s)", p.cfg.Name, p.Addr(), p.cfg.Backend)
}

// Set installs r for source (AnySource: every source without its own rule).
// The zero Rule lets everything pass.
func (p *Proxy) Set(source string, r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r == (Rule{}) {
		delete(p.mu.rules, source)
	} else {
		p.mu.rules[source] = r
	}
	close(p.mu.changed)
	p.mu.changed = make(chan struct{})
	if r.Reset {
		for l := range p.mu.conns {
			if source == AnySource || l.source == source {
				go l.close()
			}
		}
	}
}

// Heal removes every rule.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.mu.rules)
	close(p.mu.changed)
	p.mu.changed = make(chan struct{})
}

// Rules returns a copy of the rules in force.
func (p *Proxy) Rules() map[string]Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Rule, len(p.mu.rules))
	for k, v := range p.mu.rules {
		out[k] = v
	}
	return out
}

// ruleLocked is the rule for source.
func (p *Proxy) ruleLocked(source string) Rule {
	if r, ok := p.mu.rules[source]; ok {
		return r
	}
	return p.mu.rules[AnySource]
}

func (p *Proxy) rule(source string) (Rule, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ruleLocked(source), p.mu.changed
}

// Conns counts the open proxied connections by source.
func (p *Proxy) Conns() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for l := range p.mu.conns {
		out[l.source]++
	}
	return out
}

// Close stops accepting and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	err := p.ln.Close()
	for l := range p.mu.conns {
		l.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve identifies c's source, dials the backend and pumps both ways.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	source := ""
	if p.cfg.Identify != nil {
		source = p.cfg.Identify(c.LocalAddr(), c.RemoteAddr())
	}
	l := &link{source: source, front: c, done: make(chan struct{})}
	p.mu.Lock()
	if p.mu.closed || p.ruleLocked(source).Reset {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.mu.conns[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.mu.conns, l)
		p.mu.Unlock()
	}()
	back, err := net.DialTimeout("tcp", p.cfg.Backend, p.cfg.DialTimeout)
	if err != nil {
		return // the backend is down: the source sees its connection close
	}
	if !l.attach(back) {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(l, Up, back, c) }()
	go func() { defer wg.Done(); p.pump(l, Down, c, back) }()
	wg.Wait()
}

// pump copies src to dst in chunks, holding each chunk while its direction
// is stalled and delaying it by the rule's delay. Either side ending ends
// the link.
func (p *Proxy) pump(l *link, dir Direction, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.hold(l, dir) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or an error: the link ends (no half-close: neither gRPC nor Raft uses one)
		}
	}
}

// hold waits while dir is stalled for l's source, then applies the delay.
// It reports false when the link closed meanwhile.
func (p *Proxy) hold(l *link, dir Direction) bool {
	for {
		r, changed := p.rule(l.source)
		if r.Reset {
			return false
		}
		if r.Stall&dir == 0 {
			if r.Delay > 0 {
				select {
				case <-time.After(r.Delay):
				case <-l.done:
					return false
				}
			}
			return true
		}
		select {
		case <-changed:
		case <-l.done:
			return false
		}
	}
}
