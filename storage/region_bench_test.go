//go:build linux

package storage

// Benchmarks of the read path. The target (DESIGN §7, the zero-copy issue):
// sending a region with Region.WriteTo is within 10% of a bare sendfile loop
// over the same file. scripts/bench-sendfile.sh runs the send benchmarks
// interleaved and prints the ratios.
//
// Every send benchmark writes regions of the same 64 MiB file, in order and
// wrapping around, to a loopback TCP connection whose peer reads into a
// 1 MiB buffer (socket receive buffer 4 MiB) and discards. The file is
// written and synced once per process and unlinked at once (it lives while
// open), so it sits in the page cache: what is measured is the send path, not
// the disk. If $STRATA_REGION_BENCH_FILE names a file of at least 64 MiB,
// that file is used instead (the script makes one for all its runs).

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const benchFileSize = 64 << 20

var benchSizes = []struct {
	name string
	n    int64
}{
	{"1MiB", 1 << 20},
	{"64KiB", 64 << 10},
}

var benchFile struct {
	once sync.Once
	sf   *SegmentFile
	err  error
}

// benchSegmentFile returns the shared 64 MiB benchmark file.
func benchSegmentFile(b *testing.B) *SegmentFile {
	b.Helper()
	benchFile.once.Do(func() {
		if name := os.Getenv("STRATA_REGION_BENCH_FILE"); name != "" {
			f, err := os.Open(name)
			if err != nil {
				benchFile.err = err
				return
			}
			if fi, err := f.Stat(); err != nil || fi.Size() < benchFileSize {
				f.Close()
				benchFile.err = fmt.Errorf("%s: want at least %d bytes (%v)", name, benchFileSize, err)
				return
			}
			benchFile.sf = OpenSegmentFile(f)
			return
		}
		f, err := os.CreateTemp("", "strata-region-bench-*.log")
		if err != nil {
			benchFile.err = err
			return
		}
		// Unlinked now: the inode lives while f is open, and nothing is
		// left behind when the process exits.
		if err := os.Remove(f.Name()); err != nil {
			benchFile.err = err
			return
		}
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = byte(i*31 + i>>8)
		}
		for off := int64(0); off < benchFileSize; off += int64(len(chunk)) {
			chunk[0] = byte(off >> 20)
			if _, err := f.WriteAt(chunk, off); err != nil {
				benchFile.err = err
				return
			}
		}
		// Flush now, so that background writeback of 64 MiB of dirty
		// pages does not steal CPU from the measurements.
		if err := f.Sync(); err != nil {
			benchFile.err = err
			return
		}
		benchFile.sf = OpenSegmentFile(f)
	})
	if benchFile.err != nil {
		b.Fatal(benchFile.err)
	}
	return benchFile.sf
}

// benchConn returns the sending end of a loopback TCP connection whose peer
// reads and discards everything. It is closed, and the peer waited for, at
// cleanup.
func benchConn(b *testing.B) *net.TCPConn {
	b.Helper()
	client, server := regionTCPPair(b)
	if err := server.SetReadBuffer(4 << 20); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<20)
		for {
			if _, err := server.Read(buf); err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() {
		client.Close()
		<-done
	})
	return client
}

// rawFD returns the descriptor behind c. The caller keeps c open while using it.
func rawFD(b *testing.B, c syscall.Conn) int {
	b.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		b.Fatal(err)
	}
	return fd
}

// benchPos returns the position of the i-th region of n bytes: consecutive,
// wrapping at the end of the file.
func benchPos(i int, n int64) int64 { return int64(i) * n % benchFileSize }

// BenchmarkSendRegion: Region.WriteTo to a TCP connection (the sendfile path).
func BenchmarkSendRegion(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			sf := benchSegmentFile(b)
			conn := benchConn(b)
			b.SetBytes(size.n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := Region{File: sf, Pos: benchPos(i, size.n), Len: size.n}
				if _, err := r.WriteTo(conn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBareSendfile is the baseline: a minimal loop of unix.Sendfile on
// the raw descriptors, the socket non-blocking as Go leaves it, waiting in
// poll(2) on EAGAIN. No references, no runtime poller, no allocation.
func BenchmarkBareSendfile(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			sf := benchSegmentFile(b)
			conn := benchConn(b)
			sock, src := rawFD(b, conn), rawFD(b, sf.File())
			pfd := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLOUT}}
			b.SetBytes(size.n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				off := benchPos(i, size.n)
				for end := off + size.n; off < end; {
					_, err := unix.Sendfile(sock, src, &off, int(end-off))
					switch err {
					case nil, unix.EINTR:
					case unix.EAGAIN:
						if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
							b.Fatal(err)
						}
					default:
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkBareSendfileBlocking is the tightest baseline: the same loop on a
// socket switched to blocking mode, so the sender sleeps inside sendfile.
func BenchmarkBareSendfileBlocking(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			sf := benchSegmentFile(b)
			conn := benchConn(b)
			sock, src := rawFD(b, conn), rawFD(b, sf.File())
			// This connection is used for nothing else; Close still works.
			if err := unix.SetNonblock(sock, false); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size.n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				off := benchPos(i, size.n)
				for end := off + size.n; off < end; {
					if _, err := unix.Sendfile(sock, src, &off, int(end-off)); err != nil && err != unix.EINTR {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkSendPaired measures the ratio directly, robust to a machine whose
// load drifts: each iteration sends one region with Region.WriteTo and one
// with a baseline, on the same connection, in alternating order, and times
// each. It reports the throughput of each and their ratio, region/bare
// (1.0 = parity; the target is >= 0.90). Two baselines:
//
//	vs-poll     the bare loop of BenchmarkBareSendfile (waits in poll(2),
//	            blocking its thread)
//	vs-poller   the same sendfile loop that WriteTo runs (sendLoop, waiting
//	            in the runtime's poller), called without Region: so the
//	            ratio is the cost of Region itself (reference, checks,
//	            dispatch), and the gap between the two ratios is the cost
//	            of parking a goroutine instead of a thread
func BenchmarkSendPaired(b *testing.B) {
	for _, size := range benchSizes {
		for _, baseline := range []string{"vs-poll", "vs-poller"} {
			b.Run(size.name+"/"+baseline, func(b *testing.B) {
				benchSendPaired(b, size.n, baseline == "vs-poller")
			})
		}
	}
}

func benchSendPaired(b *testing.B, n int64, viaPoller bool) {
	sf := benchSegmentFile(b)
	conn := benchConn(b)
	sock, src := rawFD(b, conn), rawFD(b, sf.File())
	rc, err := conn.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	pfd := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLOUT}}
	bare := func(off int64) {
		if viaPoller {
			if _, err := sendLoop(rc, src, off, n); err != nil {
				b.Fatal(err)
			}
			return
		}
		for end := off + n; off < end; {
			_, err := unix.Sendfile(sock, src, &off, int(end-off))
			switch err {
			case nil, unix.EINTR:
			case unix.EAGAIN:
				if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
					b.Fatal(err)
				}
			default:
				b.Fatal(err)
			}
		}
	}
	region := func(off int64) {
		if _, err := (Region{File: sf, Pos: off, Len: n}).WriteTo(conn); err != nil {
			b.Fatal(err)
		}
	}
	var tRegion, tBare time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := benchPos(i, n)
		t0 := time.Now()
		if i%2 == 0 {
			region(off)
			t1 := time.Now()
			bare(off)
			tRegion, tBare = tRegion+t1.Sub(t0), tBare+time.Since(t1)
		} else {
			bare(off)
			t1 := time.Now()
			region(off)
			tBare, tRegion = tBare+t1.Sub(t0), tRegion+time.Since(t1)
		}
	}
	mb := float64(n) * float64(b.N) / 1e6
	b.ReportMetric(mb/tRegion.Seconds(), "region-MB/s")
	b.ReportMetric(mb/tBare.Seconds(), "bare-MB/s")
	b.ReportMetric(tBare.Seconds()/tRegion.Seconds(), "region/bare")
}

// BenchmarkStdlibReadFrom: the standard library's own sendfile path,
// (*net.TCPConn).ReadFrom of a LimitedReader over the file (it sends from the
// file's offset, so each op seeks first).
func BenchmarkStdlibReadFrom(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			sf := benchSegmentFile(b)
			conn := benchConn(b)
			f := sf.File()
			b.SetBytes(size.n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.Seek(benchPos(i, size.n), io.SeekStart); err != nil {
					b.Fatal(err)
				}
				if n, err := conn.ReadFrom(&io.LimitedReader{R: f, N: size.n}); err != nil || n != size.n {
					b.Fatal(n, err)
				}
			}
		})
	}
}

// BenchmarkRegionBytes: Region.Bytes into a pooled buffer (pread), given back.
func BenchmarkRegionBytes(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			sf := benchSegmentFile(b)
			b.SetBytes(size.n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				buf, err := Region{File: sf, Pos: benchPos(i, size.n), Len: size.n}.Bytes(nil)
				if err != nil {
					b.Fatal(err)
				}
				PutBuffer(buf)
			}
		})
	}
}

// BenchmarkRegionMmap: Region.Mmap, one byte read from every page (so each
// page is faulted in, as a consumer of the bytes would), then Close.
func BenchmarkRegionMmap(b *testing.B) {
	page := os.Getpagesize()
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			sf := benchSegmentFile(b)
			b.SetBytes(size.n)
			b.ReportAllocs()
			b.ResetTimer()
			var sum byte
			for i := 0; i < b.N; i++ {
				m, err := Region{File: sf, Pos: benchPos(i, size.n), Len: size.n}.Mmap()
				if err != nil {
					b.Fatal(err)
				}
				p := m.Bytes()
				for j := 0; j < len(p); j += page {
					sum += p[j]
				}
				if err := m.Close(); err != nil {
					b.Fatal(err)
				}
			}
			benchSink = sum
		})
	}
}

// benchSink keeps the compiler from dropping the reads of mapped bytes.
var benchSink byte
