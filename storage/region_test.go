package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// regionTestFile writes size pseudo-random bytes to a new file and returns it
// opened as a SegmentFile, with its contents. The file is closed at cleanup.
func regionTestFile(t testing.TB, size int) (*SegmentFile, []byte) {
	t.Helper()
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	name := filepath.Join(t.TempDir(), "00000000000000000000.log")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	sf := OpenSegmentFile(f)
	t.Cleanup(sf.CloseWhenUnused)
	return sf, data
}

// regionTCPPair returns the two ends of a loopback TCP connection.
func regionTCPPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   *net.TCPConn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.AcceptTCP()
		accepted <- result{c, err}
	}()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	res := <-accepted
	if res.err != nil {
		client.Close()
		t.Fatal(res.err)
	}
	t.Cleanup(func() { client.Close(); res.c.Close() })
	return client, res.c
}

// regionCases are regions of a file of regionTestSize bytes: odd offsets and
// lengths, page-straddling, the whole file, empty ones.
const regionTestSize = 2<<20 + 4099

var regionCases = []struct{ pos, n int64 }{
	{0, regionTestSize},
	{0, 1},
	{1, 1},
	{4095, 2},
	{4095, 4097},
	{12345, 100003},
	{1 << 20, 1<<20 + 4099},
	{regionTestSize - 1, 1},
	{regionTestSize, 0},
	{777, 0},
}

// sendAndReceive writes r to w in a goroutine and reads r.Len bytes from rd.
func sendAndReceive(t *testing.T, r Region, w io.Writer, rd io.Reader) []byte {
	t.Helper()
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := r.WriteTo(w)
		done <- result{n, err}
	}()
	got := make([]byte, r.Len)
	if _, err := io.ReadFull(rd, got); err != nil {
		t.Fatalf("receive %v: %v", r, err)
	}
	res := <-done
	if res.err != nil || res.n != r.Len {
		t.Fatalf("WriteTo %v = %d, %v; want %d, nil", r, res.n, res.err, r.Len)
	}
	return got
}

func TestRegionWriteToTCP(t *testing.T) {
	sf, data := regionTestFile(t, regionTestSize)
	client, server := regionTCPPair(t)
	// Small buffers, so that large regions see partial sends and EAGAIN.
	if err := client.SetWriteBuffer(128 << 10); err != nil {
		t.Fatal(err)
	}
	for _, c := range regionCases {
		r := Region{File: sf, Pos: c.pos, Len: c.n}
		got := sendAndReceive(t, r, client, server)
		if !bytes.Equal(got, data[c.pos:c.pos+c.n]) {
			t.Fatalf("region %v: received bytes differ", r)
		}
	}
	// Nothing more than asked for was sent.
	client.Close()
	if rest, err := io.ReadAll(server); err != nil || len(rest) != 0 {
		t.Fatalf("after the regions: %d extra bytes, %v", len(rest), err)
	}
	if refs := sf.refs(); refs != 1 {
		t.Fatalf("refs after sends = %d, want 1 (the owner's)", refs)
	}
}

func TestSendFileTCP(t *testing.T) {
	sf, data := regionTestFile(t, 100<<10)
	client, server := regionTCPPair(t)
	done := make(chan error, 1)
	go func() {
		n, err := SendFile(client, sf.File(), 333, 50<<10)
		if err == nil && n != 50<<10 {
			err = fmt.Errorf("sent %d", n)
		}
		done <- err
	}()
	got := make([]byte, 50<<10)
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[333:333+50<<10]) {
		t.Fatal("bytes differ")
	}
	// The file offset is untouched.
	if off, err := sf.File().Seek(0, io.SeekCurrent); err != nil || off != 0 {
		t.Fatalf("file offset = %d, %v", off, err)
	}
	if n, err := SendFile(client, sf.File(), 0, 0); n != 0 || err != nil {
		t.Fatalf("empty SendFile = %d, %v", n, err)
	}
	if _, err := SendFile(client, sf.File(), -1, 5); !errors.Is(err, ErrRegionOutOfBounds) {
		t.Fatalf("negative pos: %v", err)
	}
	// Past the end: what exists is sent, then an error.
	go func() { _, _ = io.Copy(io.Discard, server) }()
	n, err := SendFile(client, sf.File(), 100<<10-10, 20)
	if !errors.Is(err, io.ErrUnexpectedEOF) || n != 10 {
		t.Fatalf("past EOF: %d, %v", n, err)
	}
}

func TestRegionWriteToUnix(t *testing.T) {
	sf, data := regionTestFile(t, regionTestSize)
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.UnixConn, 1)
	go func() {
		c, _ := ln.AcceptUnix()
		accepted <- c
	}()
	client, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()
	if haveSendfile && streamSocket(client) == nil {
		t.Fatal("a unix stream socket should take the sendfile path")
	}
	for _, c := range regionCases[:6] {
		r := Region{File: sf, Pos: c.pos, Len: c.n}
		if got := sendAndReceive(t, r, client, server); !bytes.Equal(got, data[c.pos:c.pos+c.n]) {
			t.Fatalf("region %v: received bytes differ", r)
		}
	}
}

// plainWriter hides every interface but io.Writer.
type plainWriter struct{ w io.Writer }

func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }

func TestRegionWriteToCopyPath(t *testing.T) {
	sf, data := regionTestFile(t, regionTestSize)
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if streamSocket(out) != nil {
		t.Fatal("a regular file must not take the sendfile path")
	}
	for _, c := range regionCases {
		r := Region{File: sf, Pos: c.pos, Len: c.n}
		var buf bytes.Buffer
		if n, err := r.WriteTo(plainWriter{&buf}); err != nil || n != c.n {
			t.Fatalf("WriteTo(buffer) %v = %d, %v", r, n, err)
		}
		if !bytes.Equal(buf.Bytes(), data[c.pos:c.pos+c.n]) {
			t.Fatalf("region %v: copied bytes differ", r)
		}
		// An *os.File is a syscall.Conn but not a socket: copied too.
		if err := out.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := out.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if n, err := r.WriteTo(out); err != nil || n != c.n {
			t.Fatalf("WriteTo(file) %v = %d, %v", r, n, err)
		}
		got, err := os.ReadFile(out.Name())
		if err != nil || !bytes.Equal(got, data[c.pos:c.pos+c.n]) {
			t.Fatalf("region %v: file bytes differ (%v)", r, err)
		}
	}
}

// failingWriter accepts limit bytes, then fails.
type failingWriter struct{ limit int }

var errTestWriter = errors.New("test writer full")

func (f *failingWriter) Write(b []byte) (int, error) {
	if len(b) > f.limit {
		n := f.limit
		f.limit = 0
		return n, errTestWriter
	}
	f.limit -= len(b)
	return len(b), nil
}

func TestRegionWriteToWriterError(t *testing.T) {
	sf, _ := regionTestFile(t, 1<<20)
	n, err := Region{File: sf, Pos: 0, Len: 1 << 20}.WriteTo(&failingWriter{limit: 300 << 10})
	if !errors.Is(err, errTestWriter) || n != 300<<10 {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
}

func TestRegionBytesAndMmap(t *testing.T) {
	sf, data := regionTestFile(t, regionTestSize)
	for _, c := range regionCases {
		r := Region{File: sf, Pos: c.pos, Len: c.n}
		want := data[c.pos : c.pos+c.n]

		pooled, err := r.Bytes(nil)
		if err != nil || !bytes.Equal(pooled, want) {
			t.Fatalf("Bytes(nil) %v: %v", r, err)
		}
		PutBuffer(pooled)

		dst := make([]byte, 3, c.n+10)
		own, err := r.Bytes(dst)
		if err != nil || !bytes.Equal(own, want) {
			t.Fatalf("Bytes(dst) %v: %v", r, err)
		}
		if c.n > 0 && &own[0] != &dst[:1][0] {
			t.Fatalf("Bytes(dst) %v did not use dst", r)
		}

		m, err := r.Mmap()
		if err != nil {
			t.Fatalf("Mmap %v: %v", r, err)
		}
		if m.Len() != int(c.n) || !bytes.Equal(m.Bytes(), want) {
			t.Fatalf("Mmap %v: bytes differ", r)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	if refs := sf.refs(); refs != 1 {
		t.Fatalf("refs = %d, want 1", refs)
	}
}

func TestRegionOutOfBounds(t *testing.T) {
	sf, _ := regionTestFile(t, 10000)
	client, server := regionTCPPair(t)
	go func() { _, _ = io.Copy(io.Discard, server) }()

	bad := []Region{
		{File: sf, Pos: 9000, Len: 1001}, // one byte past EOF
		{File: sf, Pos: 10000, Len: 1},   // starts at EOF
		{File: sf, Pos: 20000, Len: 5},   // starts past EOF
		{File: sf, Pos: -1, Len: 5},
		{File: sf, Pos: 0, Len: -5},
		{File: sf, Pos: 1, Len: 1<<63 - 1}, // overflows
		{File: nil, Pos: 0, Len: 5},
	}
	for _, r := range bad {
		if _, err := NewRegion(r.File, r.Pos, r.Len); !errors.Is(err, ErrRegionOutOfBounds) {
			t.Errorf("NewRegion %v: %v", r, err)
		}
		if _, err := r.WriteTo(client); !errors.Is(err, ErrRegionOutOfBounds) {
			t.Errorf("WriteTo(tcp) %v: %v", r, err)
		}
		if _, err := r.WriteTo(io.Discard); !errors.Is(err, ErrRegionOutOfBounds) {
			t.Errorf("WriteTo(discard) %v: %v", r, err)
		}
		if b, err := r.Bytes(nil); !errors.Is(err, ErrRegionOutOfBounds) || b != nil {
			t.Errorf("Bytes %v: %v", r, err)
		}
		if m, err := r.Mmap(); !errors.Is(err, ErrRegionOutOfBounds) || m != nil {
			t.Errorf("Mmap %v: %v", r, err)
		}
	}
	if r, err := NewRegion(sf, 9000, 1000); err != nil || r.End() != 10000 {
		t.Fatalf("NewRegion at the end: %v, %v", r, err)
	}
	if r, err := NewRegion(nil, 0, 0); err != nil || r != (Region{}) {
		t.Fatalf("NewRegion empty: %v, %v", r, err)
	}
	// The zero Region is empty and works.
	var zero Region
	if n, err := zero.WriteTo(client); n != 0 || err != nil {
		t.Fatalf("zero WriteTo: %d, %v", n, err)
	}
	if m, err := zero.Mmap(); err != nil || m.Len() != 0 || m.Close() != nil {
		t.Fatalf("zero Mmap: %v", err)
	}
	if refs := sf.refs(); refs != 1 {
		t.Fatalf("refs = %d, want 1", refs)
	}
}

func TestRegionSlice(t *testing.T) {
	sf, _ := regionTestFile(t, 100)
	r := Region{File: sf, Pos: 10, Len: 50}
	s, err := r.Slice(5, 20)
	if err != nil || s.Pos != 15 || s.Len != 20 || s.File != sf {
		t.Fatalf("Slice = %v, %v", s, err)
	}
	for _, c := range []struct{ off, n int64 }{{-1, 1}, {0, 51}, {51, 0}, {50, 1}, {1, -1}} {
		if _, err := r.Slice(c.off, c.n); !errors.Is(err, ErrRegionOutOfBounds) {
			t.Errorf("Slice(%d, %d): %v", c.off, c.n, err)
		}
	}
}

func TestRegionFileTruncatedUnder(t *testing.T) {
	sf, _ := regionTestFile(t, 100<<10)
	r := Region{File: sf, Pos: 50 << 10, Len: 50 << 10}
	m, err := r.Mmap()
	if err != nil {
		t.Fatal(err)
	}
	// Refused while mapped: a mapped page past the end would raise SIGBUS.
	if err := sf.Truncate(60 << 10); !errors.Is(err, ErrRegionMapped) {
		t.Fatalf("Truncate while mapped: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sf.Truncate(60 << 10); err != nil {
		t.Fatal(err)
	}
	client, server := regionTCPPair(t)
	go func() { _, _ = io.Copy(io.Discard, server) }()
	if n, err := r.WriteTo(client); !errors.Is(err, ErrRegionOutOfBounds) || n != 10<<10 {
		t.Fatalf("WriteTo(tcp) after truncate: %d, %v", n, err)
	}
	var buf bytes.Buffer
	if n, err := r.WriteTo(plainWriter{&buf}); !errors.Is(err, ErrRegionOutOfBounds) || n != 10<<10 || buf.Len() != 10<<10 {
		t.Fatalf("WriteTo(buffer) after truncate: %d (%d in buffer), %v", n, buf.Len(), err)
	}
	if _, err := r.Bytes(nil); !errors.Is(err, ErrRegionOutOfBounds) {
		t.Fatalf("Bytes after truncate: %v", err)
	}
	if _, err := r.Mmap(); !errors.Is(err, ErrRegionOutOfBounds) {
		t.Fatalf("Mmap after truncate: %v", err)
	}
	if size, err := sf.Size(); err != nil || size != 60<<10 {
		t.Fatalf("Size = %d, %v", size, err)
	}
}

func TestRegionSegmentDeleted(t *testing.T) {
	sf, data := regionTestFile(t, 64<<10)
	r := Region{File: sf, Pos: 100, Len: 30000}
	// A mapping made before deletion stays readable after the file is
	// renamed, closed and unlinked.
	m, err := r.Mmap()
	if err != nil {
		t.Fatal(err)
	}
	deleted := sf.Name() + ".deleted"
	if err := os.Rename(sf.Name(), deleted); err != nil {
		t.Fatal(err)
	}
	sf.CloseWhenUnused()
	select {
	case <-sf.Done():
	default:
		t.Fatal("no reader: the fd should be closed at once")
	}
	if err := os.Remove(deleted); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Bytes(), data[100:30100]) {
		t.Fatal("mapped bytes changed after deletion")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := sf.File().Stat(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("fd still open: %v", err)
	}
	client, _ := regionTCPPair(t)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrSegmentDeleted) {
			t.Errorf("%s on a deleted segment: %v", what, err)
		}
	}
	_, err = r.WriteTo(client)
	check("WriteTo(tcp)", err)
	_, err = r.WriteTo(io.Discard)
	check("WriteTo(discard)", err)
	_, err = r.Bytes(nil)
	check("Bytes", err)
	_, err = r.Mmap()
	check("Mmap", err)
	_, err = NewRegion(sf, 0, 1)
	check("NewRegion", err)
	_, err = sf.Size()
	check("Size", err)
	if _, err := sf.WriteAt([]byte("x"), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt on a closed file: %v", err)
	}
	if err := sf.Truncate(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Truncate on a closed file: %v", err)
	}
	if err := sf.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync on a closed file: %v", err)
	}
	// An empty region has nothing to do, deleted or not.
	if n, err := (Region{File: sf, Pos: 5}).WriteTo(client); n != 0 || err != nil {
		t.Errorf("empty region on a deleted segment: %d, %v", n, err)
	}
	if err := sf.Close(context.Background()); err != nil {
		t.Errorf("Close after close: %v", err)
	}
}

// A send that is running when the segment is deleted completes, and the fd
// is closed only after it.
func TestRegionSendCompletesAcrossDelete(t *testing.T) {
	sf, data := regionTestFile(t, 4<<20)
	client, server := regionTCPPair(t)
	if err := client.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := server.SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	r := Region{File: sf, Pos: 1, Len: 4<<20 - 1}
	type result struct {
		n   int64
		err error
	}
	sent := make(chan result, 1)
	go func() {
		n, err := r.WriteTo(client)
		sent <- result{n, err}
	}()
	// The peer does not read yet, so the send blocks holding its reference.
	deadline := time.Now().Add(10 * time.Second)
	for sf.refs() != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the send never took its reference")
		}
		time.Sleep(time.Millisecond)
	}
	sf.CloseWhenUnused()
	select {
	case <-sf.Done():
		t.Fatal("fd closed under a running send")
	case res := <-sent:
		t.Fatalf("send finished before the peer read: %d, %v", res.n, res.err)
	default:
	}
	// New operations fail cleanly meanwhile.
	if _, err := r.Bytes(nil); !errors.Is(err, ErrSegmentDeleted) {
		t.Fatalf("Bytes while closing: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := sf.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a reader in flight: %v", err)
	}

	got := make([]byte, r.Len)
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if res := <-sent; res.err != nil || res.n != r.Len {
		t.Fatalf("send across delete: %d, %v", res.n, res.err)
	}
	if !bytes.Equal(got, data[1:]) {
		t.Fatal("bytes differ")
	}
	select {
	case <-sf.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("fd not closed after the last reader")
	}
	if err := sf.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRegionWriteDeadline(t *testing.T) {
	sf, _ := regionTestFile(t, 4<<20)
	client, server := regionTCPPair(t)
	if err := client.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := server.SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	r := Region{File: sf, Pos: 0, Len: 4 << 20}
	// The peer never reads: the send fills the buffers, then times out.
	if err := client.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := r.WriteTo(client)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= r.Len {
		t.Fatalf("WriteTo past the deadline: %d, %v", n, err)
	}
	// A deadline already past: nothing is sent.
	if n, err := r.WriteTo(client); !errors.Is(err, os.ErrDeadlineExceeded) || n != 0 {
		t.Fatalf("WriteTo after the deadline: %d, %v", n, err)
	}
	if refs := sf.refs(); refs != 1 {
		t.Fatalf("refs = %d, want 1", refs)
	}
}

func TestSegmentFileRefs(t *testing.T) {
	sf, _ := regionTestFile(t, 10)
	for range 2 {
		if !sf.Acquire() {
			t.Fatal("Acquire failed on an open file")
		}
	}
	if sf.refs() != 3 {
		t.Fatalf("refs after two Acquires = %d, want 3", sf.refs())
	}
	sf.Release()
	sf.CloseWhenUnused()
	sf.CloseWhenUnused() // again: no effect
	if sf.Acquire() {
		t.Fatal("Acquire succeeded on a closing file")
	}
	if sf.refs() != 1 {
		t.Fatalf("refs = %d, want 1", sf.refs())
	}
	select {
	case <-sf.Done():
		t.Fatal("closed with a reference held")
	default:
	}
	sf.Release()
	<-sf.Done()
	sf.Release() // unbalanced: ignored
	if sf.refs() != 0 {
		t.Fatalf("refs after an unbalanced Release = %d", sf.refs())
	}
	if _, err := sf.File().Stat(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("fd still open: %v", err)
	}
}

func TestSegmentFileWrite(t *testing.T) {
	sf, _ := regionTestFile(t, 0)
	if _, err := sf.WriteAt([]byte("hello, world"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := sf.WriteAt([]byte("strata"), 7); err != nil {
		t.Fatal(err)
	}
	if err := sf.Sync(); err != nil {
		t.Fatal(err)
	}
	r, err := NewRegion(sf, 0, 13)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Bytes(nil)
	if err != nil || string(b) != "hello, strata" {
		t.Fatalf("Bytes = %q, %v", b, err)
	}
}

// Readers of every kind race the deletion of their segment: each operation
// either succeeds with the right bytes or fails with ErrSegmentDeleted, and
// the fd is closed exactly when the last of them is done. Run with -race.
func TestRegionConcurrentReadersAndDelete(t *testing.T) {
	var okOps, deletedOps atomic.Int64
	for round := range 4 {
		sf, data := regionTestFile(t, 256<<10)
		client, server := regionTCPPair(t)
		go func() { _, _ = io.Copy(io.Discard, server) }()
		var clientMu sync.Mutex // one sender at a time keeps the stream whole

		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for i := 0; i < 200; i++ {
					pos := rng.Int64N(int64(len(data)))
					n := rng.Int64N(int64(len(data))-pos) + 1
					r := Region{File: sf, Pos: pos, Len: n}
					want := data[pos : pos+n]
					var err error
					switch (g + i) % 4 {
					case 0:
						var b []byte
						if b, err = r.Bytes(nil); err == nil {
							if !bytes.Equal(b, want) {
								err = fmt.Errorf("Bytes %v: wrong bytes", r)
							}
							PutBuffer(b)
						}
					case 1:
						var m *MappedRegion
						if m, err = r.Mmap(); err == nil {
							if !bytes.Equal(m.Bytes(), want) {
								err = fmt.Errorf("Mmap %v: wrong bytes", r)
							}
							err = errors.Join(err, m.Close())
						}
					case 2:
						var buf bytes.Buffer
						if _, err = r.WriteTo(plainWriter{&buf}); err == nil && !bytes.Equal(buf.Bytes(), want) {
							err = fmt.Errorf("WriteTo(buffer) %v: wrong bytes", r)
						}
					case 3:
						clientMu.Lock()
						_, err = r.WriteTo(client)
						clientMu.Unlock()
					}
					if err == nil {
						okOps.Add(1)
					}
					if errors.Is(err, ErrSegmentDeleted) {
						deletedOps.Add(1)
						return // deleted: stop, as a reader would look up again
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		// Delete after 0, 50, 100, 150 more successful reads.
		for want, deadline := okOps.Load()+int64(50*round), time.Now().Add(10*time.Second); okOps.Load() < want && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond)
		}
		sf.CloseWhenUnused()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		select {
		case <-sf.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: fd not closed after every reader left (refs %d)", round, sf.refs())
		}
		if sf.refs() != 0 {
			t.Fatalf("round %d: refs = %d after close", round, sf.refs())
		}
	}
	if okOps.Load() == 0 || deletedOps.Load() == 0 {
		t.Fatalf("%d reads succeeded, %d saw the deletion: want both", okOps.Load(), deletedOps.Load())
	}
}

func TestBufferPool(t *testing.T) {
	for _, n := range []int{1, 4095, 4096, 4097, 100000, 1 << 20, 1<<24 - 1, 1 << 24} {
		b := GetBuffer(n)
		if len(b) != n || cap(b) < n || cap(b)&(cap(b)-1) != 0 {
			t.Fatalf("GetBuffer(%d): len %d cap %d", n, len(b), cap(b))
		}
		PutBuffer(b)
	}
	if b := GetBuffer(1<<24 + 1); len(b) != 1<<24+1 {
		t.Fatalf("large GetBuffer: len %d", len(b))
	}
	if b := GetBuffer(0); b != nil {
		t.Fatalf("GetBuffer(0) = %v", b)
	}
	// Odd capacities are pooled in the class below; tiny and huge dropped.
	PutBuffer(make([]byte, 10, 5000))
	PutBuffer(make([]byte, 10))
	PutBuffer(nil)
	PutBuffer(make([]byte, 0, 1<<25))
	for range 100 {
		if b := GetBuffer(4096); len(b) != 4096 || cap(b) != 4096 {
			t.Fatalf("GetBuffer(4096): len %d cap %d", len(b), cap(b))
		}
	}
}

// A peer that went away gives an error (EPIPE or ECONNRESET), not a SIGPIPE
// that kills the process.
func TestRegionWriteToClosedPeer(t *testing.T) {
	sf, _ := regionTestFile(t, 4<<20)
	client, server := regionTCPPair(t)
	server.Close()
	r := Region{File: sf, Pos: 0, Len: 4 << 20}
	var err error
	for i := 0; i < 10 && err == nil; i++ { // the first send may still be accepted
		_, err = r.WriteTo(client)
	}
	if err == nil {
		t.Fatal("sends to a closed peer kept succeeding")
	}
	if refs := sf.refs(); refs != 1 {
		t.Fatalf("refs = %d, want 1", refs)
	}
}

func TestSegmentFileNil(t *testing.T) {
	sf := OpenSegmentFile(nil)
	r := Region{File: sf, Pos: 0, Len: 10}
	if _, err := r.Bytes(nil); err == nil {
		t.Error("Bytes on a nil file succeeded")
	}
	if _, err := r.WriteTo(io.Discard); err == nil {
		t.Error("WriteTo on a nil file succeeded")
	}
	if _, err := r.Mmap(); err == nil {
		t.Error("Mmap on a nil file succeeded")
	}
	if err := sf.Close(context.Background()); err == nil {
		t.Error("Close of a nil file succeeded")
	}
}
