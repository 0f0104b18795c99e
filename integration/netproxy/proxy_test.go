package netproxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// sources names connections by the order they were opened: the test sets
// the name the next accepted connection gets.
type sources struct {
	mu   sync.Mutex
	next string
}

func (s *sources) set(n string) { s.mu.Lock(); s.next = n; s.mu.Unlock() }
func (s *sources) identify(_, _ net.Addr) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

func newProxy(t *testing.T, src *sources) *Proxy {
	t.Helper()
	p, err := New(Config{Name: "test", Backend: echoServer(t), Identify: src.identify})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type conn struct {
	net.Conn
	r *bufio.Reader
}

func dialAs(t *testing.T, p *Proxy, src *sources, name string) *conn {
	t.Helper()
	src.set(name)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Wait until the proxy has identified it.
	deadline := time.Now().Add(5 * time.Second)
	for p.Conns()[name] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("proxy never registered a connection from %s", name)
		}
		time.Sleep(time.Millisecond)
	}
	return &conn{Conn: c, r: bufio.NewReader(c)}
}

// roundTrip sends line and waits up to wait for it to come back.
func (c *conn) roundTrip(line string, wait time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(wait))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := c.r.ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func TestPassThrough(t *testing.T) {
	src := &sources{}
	p := newProxy(t, src)
	c := dialAs(t, p, src, "a")
	for _, s := range []string{"one", "two", strings.Repeat("x", 100000)} {
		if got, err := c.roundTrip(s, 5*time.Second); err != nil || got != s {
			t.Fatalf("round trip: %q %v", got[:min(len(got), 10)], err)
		}
	}
}

// TestStallIsPerSourceAndHealDelivers: a stall holds one source's bytes
// (the other's pass), and healing delivers what was held, in order.
func TestStallIsPerSourceAndHealDelivers(t *testing.T) {
	src := &sources{}
	p := newProxy(t, src)
	a := dialAs(t, p, src, "a")
	b := dialAs(t, p, src, "b")
	p.Set("a", Rule{Stall: Both})
	if _, err := a.roundTrip("held", 300*time.Millisecond); err == nil {
		t.Fatal("a stalled source's line came back")
	}
	if got, err := b.roundTrip("free", 5*time.Second); err != nil || got != "free" {
		t.Fatalf("other source: %q %v", got, err)
	}
	// A connection opened while stalled carries nothing either.
	a2 := dialAs(t, p, src, "a")
	if _, err := a2.roundTrip("new", 300*time.Millisecond); err == nil {
		t.Fatal("a new connection of a stalled source passed")
	}
	p.Heal()
	a.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := a.r.ReadString('\n'); err != nil || got != "held\n" {
		t.Fatalf("after heal: %q %v", got, err)
	}
	if got, err := a.roundTrip("again", 5*time.Second); err != nil || got != "again" {
		t.Fatalf("after heal: %q %v", got, err)
	}
}

// TestOneWayCut: with only Down stalled, the backend gets the bytes but
// the source hears nothing back.
func TestOneWayCut(t *testing.T) {
	src := &sources{}
	var got []string
	var mu sync.Mutex
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			mu.Lock()
			got = append(got, sc.Text())
			mu.Unlock()
			io.WriteString(c, sc.Text()+"\n")
		}
	}()
	p, err := New(Config{Name: "oneway", Backend: ln.Addr().String(), Identify: src.identify})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dialAs(t, p, src, "a")
	p.Set("a", Rule{Stall: Down})
	if _, err := c.roundTrip("up only", 300*time.Millisecond); err == nil {
		t.Fatal("the answer crossed a cut down link")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("backend never got the line sent up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestResetClosesAndRefuses(t *testing.T) {
	src := &sources{}
	p := newProxy(t, src)
	a := dialAs(t, p, src, "a")
	p.Set("a", Rule{Reset: true})
	a.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.r.ReadString('\n'); err == nil {
		t.Fatal("reset connection still open")
	}
	src.set("a")
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("new connection of a reset source not closed")
	}
	p.Set("a", Rule{})
	b := dialAs(t, p, src, "a")
	if got, err := b.roundTrip("back", 5*time.Second); err != nil || got != "back" {
		t.Fatalf("after lifting reset: %q %v", got, err)
	}
}

func TestDelay(t *testing.T) {
	src := &sources{}
	p := newProxy(t, src)
	a := dialAs(t, p, src, "a")
	p.Set(AnySource, Rule{Delay: 100 * time.Millisecond})
	start := time.Now()
	if got, err := a.roundTrip("slow", 5*time.Second); err != nil || got != "slow" {
		t.Fatalf("%q %v", got, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("round trip took %v, want >= 200ms (100ms each way)", d)
	}
}

func TestBackendDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p, err := New(Config{Name: "down", Backend: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection to a dead backend stayed open")
	}
}
