package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// RaftMarker is the first byte a controller writes on every Raft connection
// it dials; the shared listener routes connections starting with it to the
// Raft transport and everything else to the gRPC server.
//
// It is part of the wire format: do not change. 'R' (0x52) can not start a
// gRPC connection: HTTP/2 with prior knowledge opens with the client preface
// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (first byte 'P', 0x50), and a TLS
// ClientHello opens with the handshake record type 0x16.
const RaftMarker byte = 'R'

// peekTimeout bounds how long an accepted connection may take to send its
// first byte before the mux drops it.
const peekTimeout = 10 * time.Second

// Dialer opens a connection to addr. Tests inject one that cuts links.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// DefaultDialer dials TCP.
func DefaultDialer(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// mux splits one listener into a Raft stream layer and a gRPC listener by the
// first byte of each accepted connection.
type mux struct {
	ln     net.Listener
	log    *slog.Logger
	raft   *connListener
	grpc   *connListener
	dial   Dialer
	done   chan struct{}
	closed sync.Once
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		peeking map[net.Conn]struct{} // accepted, first byte not read yet
	}
}

func newMux(ln net.Listener, dial Dialer, log *slog.Logger) *mux {
	if dial == nil {
		dial = DefaultDialer
	}
	m := &mux{ln: ln, log: log, dial: dial, done: make(chan struct{})}
	m.raft = newConnListener(ln.Addr(), m.done)
	m.grpc = newConnListener(ln.Addr(), m.done)
	m.mu.peeking = map[net.Conn]struct{}{}
	return m
}

// serve runs the accept loop until close.
func (m *mux) serve() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, err := m.ln.Accept()
			if err != nil {
				select {
				case <-m.done:
					return
				default:
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				if errors.Is(err, net.ErrClosed) {
					return
				}
				m.log.Warn("controller: accept failed", "err", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.route(c)
			}()
		}
	}()
}

// route reads the first byte of c and hands c to Raft or gRPC.
func (m *mux) route(c net.Conn) {
	m.mu.Lock()
	select {
	case <-m.done:
		m.mu.Unlock()
		c.Close()
		return
	default:
	}
	m.mu.peeking[c] = struct{}{}
	m.mu.Unlock()
	var b [1]byte
	_ = c.SetReadDeadline(time.Now().Add(peekTimeout))
	_, err := io.ReadFull(c, b[:])
	m.mu.Lock()
	delete(m.mu.peeking, c)
	m.mu.Unlock()
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if b[0] == RaftMarker {
		m.raft.push(c)
		return
	}
	m.grpc.push(&peekedConn{Conn: c, first: b[0], pending: true})
}

func (m *mux) close() error {
	var err error
	m.closed.Do(func() {
		m.mu.Lock()
		close(m.done)
		for c := range m.mu.peeking {
			c.Close()
		}
		m.mu.Unlock()
		err = m.ln.Close()
	})
	m.wg.Wait()
	return err
}

// streamLayer is the raft.StreamLayer over the mux.
type streamLayer struct {
	m         *mux
	advertise net.Addr
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Accept() (net.Conn, error) { return s.m.raft.Accept() }
func (s *streamLayer) Close() error              { return nil } // the controller closes the mux
func (s *streamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.m.ln.Addr()
}

// Dial opens a Raft connection: the marker byte, then raft's own protocol.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.m.dial(ctx, string(address))
	if err != nil {
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{RaftMarker}); err != nil {
		c.Close()
		return nil, fmt.Errorf("controller: raft marker to %s: %w", address, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// connListener is a net.Listener fed by the mux.
// Closing it (grpc.Server.Stop does) stops its Accept; the mux then drops
// connections routed to it.
type connListener struct {
	addr      net.Addr
	ch        chan net.Conn
	done      <-chan struct{} // the mux's
	closed    chan struct{}
	closeOnce sync.Once
}

func newConnListener(addr net.Addr, done <-chan struct{}) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: done, closed: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	case <-l.closed:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}
func (l *connListener) Addr() net.Addr { return l.addr }

// peekedConn gives back the byte the mux read.
type peekedConn struct {
	net.Conn
	mu      sync.Mutex
	first   byte
	pending bool
}

func (c *peekedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.pending && len(p) > 0 {
		c.pending = false
		c.mu.Unlock()
		p[0] = c.first
		return 1, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}
