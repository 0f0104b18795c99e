package controller

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestMuxRoutesByFirstByte(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newMux(ln, nil, slog.New(slog.DiscardHandler))
	m.serve()
	defer m.close()
	sl := &streamLayer{m: m}

	// A Raft dial arrives at the stream layer without the marker.
	rc, err := sl.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := rc.Write([]byte("raft!")); err != nil {
		t.Fatal(err)
	}
	got, err := sl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	readN(t, got, "raft!")
	got.Close()

	// Anything else (the HTTP/2 preface) arrives at the gRPC listener whole.
	gc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	if _, err := gc.Write([]byte(preface)); err != nil {
		t.Fatal(err)
	}
	g, err := m.grpc.Accept()
	if err != nil {
		t.Fatal(err)
	}
	readN(t, g, preface)
	g.Close()

	// A connection that never sends a byte blocks neither listener.
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	rc2, err := sl.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc2.Close()
	got2, err := sl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got2.Close()

	// Close unblocks both Accepts.
	m.close()
	if _, err := sl.Accept(); err == nil {
		t.Fatal("raft Accept after close: want error")
	}
	if _, err := m.grpc.Accept(); err == nil {
		t.Fatal("grpc Accept after close: want error")
	}
}

func TestRaftMarkerIsNotAPrefaceByte(t *testing.T) {
	// Pinned: part of the wire format.
	if RaftMarker != 0x52 {
		t.Fatalf("RaftMarker = %#x, the wire format says 0x52", RaftMarker)
	}
	for _, first := range []byte{'P', 0x16} { // HTTP/2 preface, TLS handshake
		if first == RaftMarker {
			t.Fatalf("marker %#x collides with a gRPC first byte", first)
		}
	}
}

func readN(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, []byte(want)) {
		t.Fatalf("read %q, want %q", buf, want)
	}
}
