//go:build linux

package storage

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// haveSendfile reports whether Region.WriteTo sends to sockets with sendfile.
const haveSendfile = true

// maxSendfileChunk bounds the bytes asked of one sendfile call (the kernel
// caps a call at about 2 GiB anyway); a call returns early when the socket
// buffer is full.
const maxSendfileChunk = 4 << 20

// SendFile writes n bytes of f, starting at pos, to conn with sendfile(2): the
// bytes go from the page cache to the socket without a copy through user
// space, and f's file offset is neither used nor moved. It returns the number
// of bytes written, n unless there is an error. Should the file system not
// support sendfile, it copies through a pooled buffer instead. It honours
// conn's write
// deadline (the error then wraps os.ErrDeadlineExceeded), waits in the
// runtime's poller when the socket buffer is full, and fails with an error
// wrapping io.ErrUnexpectedEOF if f ends before pos+n.
//
// The caller keeps f open for the duration, typically by holding a
// SegmentFile reference. (Even a concurrent f.Close cannot make the descriptor
// number be reused under the call: it holds the os.File's own reference.)
func SendFile(conn *net.TCPConn, f *os.File, pos, n int64) (int64, error) {
	if pos < 0 || n < 0 {
		return 0, fmt.Errorf("storage: sendfile [%d,+%d): %w", pos, n, ErrRegionOutOfBounds)
	}
	if n == 0 {
		return 0, nil
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	written, err := sendFile(rc, f, pos, n)
	if errors.Is(err, errNoSendfile) {
		return copyRange(conn, f, pos, n)
	}
	return written, err
}

// sendFile sends [pos, pos+n) of f to the stream socket behind dst.
func sendFile(dst syscall.RawConn, f *os.File, pos, n int64) (int64, error) {
	src, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var written int64
	var serr error
	if err := src.Control(func(sfd uintptr) {
		written, serr = sendLoop(dst, int(sfd), pos, n)
	}); err != nil {
		return written, err
	}
	return written, serr
}

// errNoSendfile: sendfile refused the pair of descriptors before sending
// anything (ENOSYS, EINVAL, EOPNOTSUPP: a file system without it); the caller
// copies instead.
var errNoSendfile = errors.New("storage: sendfile not supported for this file")

// sendLoop calls sendfile until n bytes are sent. The callback given to
// dst.Write runs with the socket's descriptor held; returning false from it
// on EAGAIN parks the goroutine in the poller until the socket is writable or
// the write deadline passes, and RawConn.Write then calls it again.
func sendLoop(dst syscall.RawConn, sfd int, pos, n int64) (int64, error) {
	var written int64
	var serr error
	err := dst.Write(func(dfd uintptr) bool {
		for written < n {
			chunk := min(n-written, maxSendfileChunk)
			off := pos + written
			m, err := unix.Sendfile(int(dfd), sfd, &off, int(chunk))
			if m > 0 {
				written += int64(m)
			}
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // socket buffer full: wait for the poller
			case written == 0 && (err == unix.ENOSYS || err == unix.EINVAL || err == unix.EOPNOTSUPP):
				serr = errNoSendfile
				return true
			case err != nil:
				serr = os.NewSyscallError("sendfile", err)
				return true
			case m == 0:
				serr = io.ErrUnexpectedEOF // the file ends before pos+n
				return true
			}
		}
		return true
	})
	if err != nil {
		return written, err
	}
	return written, serr
}
