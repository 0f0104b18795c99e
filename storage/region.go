package storage

// File regions: the zero-copy read path.
//
// The log answers a read with a Region, a byte range [pos, pos+len) of one
// segment file. The bytes are the stored record batches, unchanged; a
// transport turns the region into bytes on a socket without decoding it, in
// one of three ways:
//
//	Region.WriteTo(conn)   sendfile(2) from the page cache to a stream socket
//	                       (TCP or unix), or a pooled-buffer copy for any
//	                       other io.Writer
//	Region.Bytes(dst)      pread(2) into dst or a pooled buffer
//	Region.Mmap()          a read-only mapping of the span (MappedRegion)
//
// Lifetime. A segment file is shared by its writer and any number of readers
// through a SegmentFile, a reference-counted *os.File. The owner (the log)
// holds the first reference. Deletion (retention, truncation, compaction)
// renames the file and calls CloseWhenUnused: from then on no new operation
// can start, operations already running finish, and the descriptor is closed
// when the last of them releases its reference. So a descriptor number is
// never closed, and never reused by another open, under a running sendfile or
// pread, and a reader that comes too late gets ErrSegmentDeleted — a clean
// error, never a crash.
//
// A Region holds no reference of its own: each operation (WriteTo, Bytes,
// Mmap) acquires one for as long as it uses the descriptor and releases it
// before returning. A Region is therefore a plain value that needs no Release
// and may be dropped at any time; the price is that two operations on the
// same region (or two regions of one fetch response) can see the segment
// deleted in between. A caller that must send several regions all-or-nothing
// with respect to deletion can Acquire the SegmentFile itself and call
// SendFile on File() while it holds the reference.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	// ErrRegionOutOfBounds: a region does not lie within its file — it was
	// built past the end of the file, or the file was truncated under it.
	ErrRegionOutOfBounds = errors.New("storage: region out of bounds")
	// ErrRegionMapped: a file cannot be truncated while regions of it are
	// mapped (a mapped page past the new end would fault with SIGBUS).
	ErrRegionMapped = errors.New("storage: region mapped")
)

// SegmentFile is a reference-counted handle on an open segment file. It
// guarantees that the descriptor stays open while anyone uses it, and that
// once CloseWhenUnused is called it is closed exactly once, when the last
// user lets go.
//
// Contract:
//   - OpenSegmentFile gives the caller (the owner) one reference; the owner
//     gives it up with CloseWhenUnused (or Close), never with Release.
//   - Every other user calls Acquire before touching the descriptor and
//     Release exactly once afterwards, if and only if Acquire returned true.
//   - After CloseWhenUnused, Acquire returns false; the descriptor is closed
//     when the reference count drops to zero, and Done is closed then.
//
// The writer may write through File() directly (it holds the owner's
// reference); it should truncate through Truncate, which refuses to shrink the
// file under a live mapping.
//
// Reading the state takes no lock: Acquire and Release are one atomic
// compare-and-swap each, so readers of sealed segments never block each
// other or the writer.
type SegmentFile struct {
	f    *os.File
	name string

	// state is the reference count in the low bits, with closingBit set
	// once CloseWhenUnused was called. The descriptor is closed by whoever
	// moves state to exactly closingBit (closing, no references).
	state atomic.Int64
	// mu orders Mmap against Truncate (see Truncate). It is held for
	// counting only, never across a system call.
	mu struct {
		sync.Mutex
		mapped     int  // live MappedRegions
		truncating bool // a Truncate is between its check and its ftruncate
	}

	done     chan struct{} // closed once f is closed
	closeErr error         // the result of f.Close; read only after done
}

const (
	closingBit = int64(1) << 62
	refMask    = closingBit - 1
)

// OpenSegmentFile wraps an open file. The SegmentFile takes ownership of f:
// from now on f is closed only by the SegmentFile, and the caller must not
// call f.Close (except to abandon a SegmentFile that no one else has seen).
func OpenSegmentFile(f *os.File) *SegmentFile {
	sf := &SegmentFile{f: f, done: make(chan struct{})}
	if f != nil { // a nil f gives a SegmentFile whose every operation fails
		sf.name = f.Name()
	}
	sf.state.Store(1) // the owner's reference
	return sf
}

// Name returns the name the file was opened with. It does not follow
// renames (deletion renames the file to .deleted before closing it).
func (sf *SegmentFile) Name() string { return sf.name }

// File returns the underlying file. Use it only while holding a reference —
// the owner's (before CloseWhenUnused) or one from Acquire — and never close
// it directly.
func (sf *SegmentFile) File() *os.File { return sf.f }

// Size returns the file's current size (fstat). It fails with
// ErrSegmentDeleted (wrapped) once the file is closing.
func (sf *SegmentFile) Size() (int64, error) {
	if !sf.Acquire() {
		return 0, fmt.Errorf("storage: size of %s: %w", sf.name, ErrSegmentDeleted)
	}
	defer sf.Release()
	fi, err := sf.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("storage: size of %s: %w", sf.name, err)
	}
	return fi.Size(), nil
}

// Acquire takes a reference on the descriptor. It returns false, and takes
// nothing, once CloseWhenUnused has been called. Each true return must be
// matched by exactly one Release.
func (sf *SegmentFile) Acquire() bool {
	for {
		s := sf.state.Load()
		if s&closingBit != 0 {
			return false
		}
		if sf.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// Release gives back a reference taken by Acquire. If the file is closing
// and this was the last reference, Release closes the descriptor (a close
// takes no disk I/O beyond what the kernel does for the last close of a
// file). An unmatched Release when no reference is held is ignored.
func (sf *SegmentFile) Release() {
	for {
		s := sf.state.Load()
		if s&refMask == 0 {
			return // unbalanced Release: nothing to give back
		}
		if sf.state.CompareAndSwap(s, s-1) {
			if s-1 == closingBit {
				sf.closeNow()
			}
			return
		}
	}
}

// CloseWhenUnused gives up the owner's reference and marks the file closing:
// Acquire fails from now on and the descriptor is closed as soon as no
// operation uses it — at once if none does. It does not wait; use Done or
// Close to wait. Deletion calls it after renaming the file away. Calling it
// again has no effect.
func (sf *SegmentFile) CloseWhenUnused() {
	for {
		s := sf.state.Load()
		if s&closingBit != 0 {
			return
		}
		n := closingBit
		if s&refMask > 0 {
			n = (s - 1) | closingBit
		}
		if sf.state.CompareAndSwap(s, n) {
			if n == closingBit {
				sf.closeNow()
			}
			return
		}
	}
}

// Close calls CloseWhenUnused and waits until the descriptor is closed or ctx
// is done. It returns the error of closing the file, or ctx's error (the file
// is then still closed later, when its last user releases it).
func (sf *SegmentFile) Close(ctx context.Context) error {
	sf.CloseWhenUnused()
	select {
	case <-sf.done:
		return sf.closeErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done returns a channel that is closed once the descriptor has been closed.
func (sf *SegmentFile) Done() <-chan struct{} { return sf.done }

func (sf *SegmentFile) closeNow() {
	sf.closeErr = sf.f.Close()
	close(sf.done)
}

// refs reports the number of references held, the owner's included.
func (sf *SegmentFile) refs() int64 { return sf.state.Load() & refMask }

// WriteAt writes p at off (pwrite; io.WriterAt). It returns ErrClosed
// (wrapped) once CloseWhenUnused has been called, instead of touching a closed
// descriptor. A write error is returned as is; making it stick is the
// segment's business. The file must not have been opened with O_APPEND (Linux
// then ignores off).
func (sf *SegmentFile) WriteAt(p []byte, off int64) (int, error) {
	if !sf.Acquire() {
		return 0, fmt.Errorf("storage: write %s: %w", sf.name, ErrClosed)
	}
	defer sf.Release()
	return sf.f.WriteAt(p, off)
}

// Sync flushes the file to stable storage (fsync).
func (sf *SegmentFile) Sync() error {
	if !sf.Acquire() {
		return fmt.Errorf("storage: sync %s: %w", sf.name, ErrClosed)
	}
	defer sf.Release()
	return sf.f.Sync()
}

// Truncate sets the file's size (ftruncate). It is refused with
// ErrRegionMapped while any region of the file is mapped, since touching a
// mapped page past a new end would kill the process with SIGBUS; the writer
// should truncate through here, not through File(). Regions read by pread or
// sendfile need no such guard: a read past the new end returns
// ErrRegionOutOfBounds. The log never truncates a sealed segment in place; it
// truncates only the active segment (recovery, follower truncation).
func (sf *SegmentFile) Truncate(size int64) error {
	if size < 0 {
		return fmt.Errorf("storage: truncate %s to %d: %w", sf.name, size, ErrRegionOutOfBounds)
	}
	if !sf.Acquire() {
		return fmt.Errorf("storage: truncate %s: %w", sf.name, ErrClosed)
	}
	defer sf.Release()
	// A mapping counted before this check makes us refuse; one attempted
	// while truncating is set is refused by Mmap; one counted after we
	// clear it sees the new size in its fstat.
	sf.mu.Lock()
	if sf.mu.mapped > 0 || sf.mu.truncating {
		n := sf.mu.mapped
		sf.mu.Unlock()
		return fmt.Errorf("storage: truncate %s to %d: %d mappings: %w", sf.name, size, n, ErrRegionMapped)
	}
	sf.mu.truncating = true
	sf.mu.Unlock()
	err := sf.f.Truncate(size)
	sf.mu.Lock()
	sf.mu.truncating = false
	sf.mu.Unlock()
	if err != nil {
		return fmt.Errorf("storage: truncate %s to %d: %w", sf.name, size, err)
	}
	return nil
}

// mapBegin counts a mapping about to be made; false while truncating.
func (sf *SegmentFile) mapBegin() bool {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.mu.truncating {
		return false
	}
	sf.mu.mapped++
	return true
}

// mapEnd uncounts a mapping that was unmapped or never made.
func (sf *SegmentFile) mapEnd() {
	sf.mu.Lock()
	sf.mu.mapped--
	sf.mu.Unlock()
}

// Region is the byte range [Pos, Pos+Len) of a segment file: the bytes of one
// or more record batches, as stored. The zero Region is empty.
//
// A Region is a plain value. It holds no reference on its file: every method
// acquires one for its own duration (see the package comment on lifetime),
// so a Region needs no release and may simply be dropped. The log builds
// regions within the file's size at the time; nothing is checked when a
// Region is built as a literal, everything when it is used:
//   - once File has been handed to CloseWhenUnused, methods fail with an
//     error wrapping ErrSegmentDeleted (the reader looks the offset up again);
//   - if the region is malformed (negative, or no File) or extends past the
//     end of the file (built wrongly, or the file was truncated under it),
//     they fail with one wrapping ErrRegionOutOfBounds;
//   - an empty region never touches its file: its methods succeed with
//     nothing to do, even on a deleted segment.
//
// No method panics or faults on any of these.
type Region struct {
	File *SegmentFile
	Pos  int64 // start position in the file
	Len  int64 // length in bytes
}

// NewRegion returns the region [pos, pos+n) of f after checking it against
// the file's current size: it fails with ErrRegionOutOfBounds unless
// 0 <= pos, 0 <= n and pos+n <= size, and with ErrSegmentDeleted if f is
// already closing. It costs an fstat; the log, which knows its sizes, may
// build a Region literal instead.
func NewRegion(f *SegmentFile, pos, n int64) (Region, error) {
	r := Region{File: f, Pos: pos, Len: n}
	if err := r.check("make"); err != nil {
		return Region{}, err
	}
	if n == 0 {
		return r, nil
	}
	size, err := f.Size()
	if err != nil {
		return Region{}, err
	}
	if n > size-pos {
		return Region{}, fmt.Errorf("storage: region %s (file size %d): %w", r, size, ErrRegionOutOfBounds)
	}
	return r, nil
}

// End returns the position just past the region.
func (r Region) End() int64 { return r.Pos + r.Len }

// Slice returns the sub-region [off, off+n) of r, offsets relative to r's
// start. It fails with ErrRegionOutOfBounds unless it lies within r.
func (r Region) Slice(off, n int64) (Region, error) {
	if off < 0 || n < 0 || off > r.Len || n > r.Len-off {
		return Region{}, fmt.Errorf("storage: slice [%d,+%d) of region %s: %w", off, n, r, ErrRegionOutOfBounds)
	}
	return Region{File: r.File, Pos: r.Pos + off, Len: n}, nil
}

// String describes the region for logs and errors: name[pos,+len).
func (r Region) String() string {
	name := ""
	if r.File != nil {
		name = r.File.name
	}
	return fmt.Sprintf("%s[%d,+%d)", name, r.Pos, r.Len)
}

// check validates the region's shape (not its bounds against the file).
func (r Region) check(op string) error {
	if r.Pos < 0 || r.Len < 0 || r.Pos > math.MaxInt64-r.Len || (r.File == nil && r.Len > 0) {
		return fmt.Errorf("storage: %s region %s: %w", op, r, ErrRegionOutOfBounds)
	}
	return nil
}

// acquire checks the region and takes a reference for one operation on a
// non-empty region. On success the caller must r.File.Release().
func (r Region) acquire(op string) error {
	if err := r.check(op); err != nil {
		return err
	}
	if !r.File.Acquire() {
		return fmt.Errorf("storage: %s region %s: %w", op, r, ErrSegmentDeleted)
	}
	return nil
}

// Bytes reads the region with pread. It reads into dst[:Len] if dst has the
// capacity, else into a buffer from GetBuffer; either way the caller owns the
// returned slice and may give it to PutBuffer when done with it. On error it
// returns nil (a buffer it took from the pool goes back).
func (r Region) Bytes(dst []byte) ([]byte, error) {
	if r.Len == 0 {
		return dst[:0], nil
	}
	if int64(int(r.Len)) != r.Len {
		return nil, fmt.Errorf("storage: read region %s: larger than memory: %w", r, ErrRegionOutOfBounds)
	}
	if err := r.acquire("read"); err != nil {
		return nil, err
	}
	defer r.File.Release()
	pooled := int64(cap(dst)) < r.Len
	var buf []byte
	if pooled {
		buf = GetBuffer(int(r.Len))
	} else {
		buf = dst[:r.Len]
	}
	if _, err := r.File.f.ReadAt(buf, r.Pos); err != nil {
		if pooled {
			PutBuffer(buf)
		}
		return nil, r.readErr("read", err)
	}
	return buf, nil
}

// readErr wraps an error from reading the file; an early end of file means the
// region reaches past the end of the file.
func (r Region) readErr(op string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("storage: %s region %s: past end of file: %w", op, r, ErrRegionOutOfBounds)
	}
	return fmt.Errorf("storage: %s region %s: %w", op, r, err)
}

// WriteTo writes the region's bytes to w and returns how many it wrote
// (io.WriterTo). To a stream socket — *net.TCPConn, a *net.UnixConn of
// network "unix", or any other syscall.Conn whose descriptor is a SOCK_STREAM
// socket — it uses sendfile(2) on Linux, so the bytes go from the page cache
// to the socket without passing through user space; the socket's write
// deadline applies (the error then wraps os.ErrDeadlineExceeded). To any other
// writer, or from a file system without sendfile, it copies through a pooled
// buffer.
//
// If it fails after writing some bytes (n > 0), the stream is cut mid-region
// and the caller must close the connection rather than write more to it.
func (r Region) WriteTo(w io.Writer) (int64, error) {
	if r.Len == 0 {
		return 0, nil
	}
	if err := r.acquire("send"); err != nil {
		return 0, err
	}
	defer r.File.Release()
	var n int64
	var err error
	rc := streamSocket(w)
	if rc != nil {
		n, err = sendFile(rc, r.File.f, r.Pos, r.Len)
	}
	if rc == nil || errors.Is(err, errNoSendfile) {
		n, err = copyRange(w, r.File.f, r.Pos, r.Len)
	}
	if err != nil {
		return n, r.readErr("send", err)
	}
	return n, nil
}

// streamSocket returns the raw connection of w if sendfile can write to it: a
// stream socket, on a platform with sendfile. Else nil.
func streamSocket(w io.Writer) syscall.RawConn {
	if !haveSendfile {
		return nil
	}
	switch c := w.(type) {
	case *net.TCPConn:
		if rc, err := c.SyscallConn(); err == nil {
			return rc
		}
		return nil
	case *net.UnixConn:
		if a, ok := c.LocalAddr().(*net.UnixAddr); ok && a != nil && a.Net == "unix" {
			if rc, err := c.SyscallConn(); err == nil {
				return rc
			}
		}
		return nil
	case syscall.Conn:
		rc, err := c.SyscallConn()
		if err != nil {
			return nil
		}
		var typ int
		var serr error
		if err := rc.Control(func(fd uintptr) {
			typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
		}); err != nil || serr != nil || typ != unix.SOCK_STREAM {
			return nil // not a socket (ENOTSOCK), or not a stream
		}
		return rc
	}
	return nil
}

// copyChunk is the buffer size of the copying path.
const copyChunk = 256 << 10

// copyRange copies [pos, pos+n) of f to w through a pooled buffer. If f ends
// early, the bytes before its end are written and the error wraps
// io.ErrUnexpectedEOF, as with sendfile.
func copyRange(w io.Writer, f *os.File, pos, n int64) (int64, error) {
	buf := GetBuffer(int(min(n, copyChunk)))
	defer PutBuffer(buf)
	var written int64
	for written < n {
		chunk := buf[:min(n-written, int64(len(buf)))]
		k, rerr := f.ReadAt(chunk, pos+written)
		if k > 0 {
			m, err := w.Write(chunk[:k])
			written += int64(m)
			if err != nil {
				return written, err
			}
			if m < k {
				return written, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return written, io.ErrUnexpectedEOF
		}
		if rerr != nil {
			return written, rerr
		}
	}
	return written, nil
}

// Mmap maps the region read-only and returns the mapping, whose Bytes are
// exactly the region's bytes (the mapping itself starts at the page boundary
// at or below Pos). The caller must Close it, and must not touch those bytes
// after Close: the memory is gone, and that would crash.
//
// Deletion cannot fault a mapped reader: a mapping stays valid after the file
// is closed and unlinked — Linux keeps the inode until the last mapping goes.
// Truncation is the danger: touching a mapped page that lies wholly past the
// end of the file raises SIGBUS. It is ruled out by construction: Mmap checks
// (fstat) that the region lies within the file, the log never truncates a
// sealed segment in place, and SegmentFile.Truncate refuses to run while any
// region of the file is mapped. Truncating a mapped file behind
// SegmentFile's back (File().Truncate, another process) is not guarded.
func (r Region) Mmap() (*MappedRegion, error) {
	if r.Len == 0 {
		return &MappedRegion{}, nil
	}
	if int64(int(r.Len)) != r.Len {
		return nil, fmt.Errorf("storage: map region %s: larger than memory: %w", r, ErrRegionOutOfBounds)
	}
	if err := r.acquire("map"); err != nil {
		return nil, err
	}
	defer r.File.Release()
	if !r.File.mapBegin() {
		return nil, fmt.Errorf("storage: map region %s: file being truncated: %w", r, ErrRegionOutOfBounds)
	}
	m, err := r.mmap()
	if err != nil {
		r.File.mapEnd()
		return nil, err
	}
	return m, nil
}

// mmap checks the size and maps; called counted (mapBegin) and holding a
// reference.
func (r Region) mmap() (*MappedRegion, error) {
	fi, err := r.File.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("storage: map region %s: %w", r, err)
	}
	if r.Len > fi.Size()-r.Pos {
		return nil, fmt.Errorf("storage: map region %s (file size %d): %w", r, fi.Size(), ErrRegionOutOfBounds)
	}
	page := int64(os.Getpagesize())
	start := r.Pos &^ (page - 1) // mmap's offset must be page aligned
	skip := r.Pos - start
	rc, err := r.File.f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("storage: map region %s: %w", r, err)
	}
	var data []byte
	var merr error
	if err := rc.Control(func(fd uintptr) {
		data, merr = unix.Mmap(int(fd), start, int(skip+r.Len), unix.PROT_READ, unix.MAP_SHARED)
	}); err != nil {
		return nil, fmt.Errorf("storage: map region %s: %w", r, err)
	}
	if merr != nil {
		return nil, fmt.Errorf("storage: map region %s: %w", r, os.NewSyscallError("mmap", merr))
	}
	return &MappedRegion{data: data, b: data[skip : skip+r.Len : skip+r.Len], file: r.File}, nil
}

// MappedRegion is a region mapped into memory by Region.Mmap. Bytes may be
// read from several goroutines; Close must come after every reader is done.
// The mapping does not hold the file open: it outlives a deletion.
type MappedRegion struct {
	data   []byte // the whole mapping, from a page boundary; nil if empty
	b      []byte // the region within it
	file   *SegmentFile
	closed atomic.Bool
}

// Bytes returns the region's bytes, valid until Close. They are read-only:
// writing to them crashes the process.
func (m *MappedRegion) Bytes() []byte { return m.b }

// Len returns the region's length.
func (m *MappedRegion) Len() int { return len(m.b) }

// Close unmaps the region. The bytes from Bytes must not be used afterwards.
// Calling Close again does nothing and returns nil (the memory is unmapped
// once only, so a second Close cannot unmap a later mapping at the same
// address).
func (m *MappedRegion) Close() error {
	if m.data == nil || !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := unix.Munmap(m.data)
	m.file.mapEnd()
	if err != nil {
		return fmt.Errorf("storage: unmap region of %s: %w", m.file.name, os.NewSyscallError("munmap", err))
	}
	return nil
}

// Buffer pool. Buffers come in power-of-two size classes from 4 KiB to
// 16 MiB; larger requests are allocated and left to the GC. The pools hold a
// pointer to a buffer's first byte (not a slice), so that putting a buffer
// back allocates nothing; the pointer keeps the whole array alive.
const (
	minBufferShift = 12 // 4 KiB
	maxBufferShift = 24 // 16 MiB
)

var bufferPools [maxBufferShift - minBufferShift + 1]sync.Pool

// bufferClass returns the smallest class index whose size is >= n.
func bufferClass(n int) int {
	c := 0
	for size := 1 << minBufferShift; size < n; size <<= 1 {
		c++
	}
	return c
}

// GetBuffer returns a buffer of length n, from a pool when n is at most
// 16 MiB. Its contents are unspecified. Give it back with PutBuffer when done.
func GetBuffer(n int) []byte {
	if n <= 0 {
		return nil
	}
	if n > 1<<maxBufferShift {
		return make([]byte, n)
	}
	c := bufferClass(n)
	size := 1 << (minBufferShift + c)
	if p, ok := bufferPools[c].Get().(*byte); ok {
		return unsafe.Slice(p, size)[:n]
	}
	return make([]byte, n, size)
}

// PutBuffer gives a buffer back to the pool. Any slice may be given (one not
// from GetBuffer is pooled by its capacity, or dropped); the caller must not
// use b, or any slice sharing its array, afterwards.
func PutBuffer(b []byte) {
	c := cap(b)
	if c < 1<<minBufferShift || c > 1<<maxBufferShift {
		return
	}
	// The largest class that fits within the capacity.
	class := bufferClass(c)
	if 1<<(minBufferShift+class) > c {
		class--
	}
	bufferPools[class].Put(unsafe.SliceData(b[:c]))
}
