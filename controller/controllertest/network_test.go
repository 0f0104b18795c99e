package controllertest

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func echoServer(t *testing.T) string {
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
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestNetworkCutBlackholeHeal(t *testing.T) {
	srv := echoServer(t)
	n := NewNetwork()
	dial := n.Dialer("me")
	ctx := context.Background()
	echo := func(c net.Conn) error {
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var b [1]byte
		_, err := io.ReadFull(c, b[:])
		return err
	}
	c, err := dial(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c); err != nil {
		t.Fatal(err)
	}
	// Cut: the open conn is closed, new dials are refused.
	n.Cut([]string{"me"}, []string{srv})
	if err := echo(c); err == nil {
		t.Fatal("conn across a cut link still works")
	}
	if _, err := dial(ctx, srv); !errors.Is(err, ErrLinkCut) {
		t.Fatalf("dial across a cut: %v", err)
	}
	n.HealAll()
	c, err = dial(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	// Blackhole: the conn stays open but nothing gets through.
	n.Blackhole([]string{"me"}, []string{srv})
	var ne net.Error
	if err := echo(c); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("echo across a blackhole: %v, want a timeout", err)
	}
	// Healing closes conns that lost bytes; new ones work.
	n.HealAll()
	if err := echo(c); err == nil {
		t.Fatal("a blackholed conn survived the heal")
	}
	c, err = dial(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c); err != nil {
		t.Fatal(err)
	}
	c.Close()
}
