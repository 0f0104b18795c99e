//go:build !linux

package storage

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// haveSendfile reports whether Region.WriteTo sends to sockets with sendfile:
// only on Linux. Elsewhere every transport copies through a pooled buffer.
const haveSendfile = false

// SendFile writes n bytes of f, starting at pos, to conn. This portable
// version copies through a pooled buffer; on Linux it is sendfile(2). See the
// Linux version for the contract.
func SendFile(conn *net.TCPConn, f *os.File, pos, n int64) (int64, error) {
	if pos < 0 || n < 0 {
		return 0, fmt.Errorf("storage: sendfile [%d,+%d): %w", pos, n, ErrRegionOutOfBounds)
	}
	return copyRange(conn, f, pos, n)
}

// errNoSendfile: sendfile is not available; the caller copies instead.
var errNoSendfile = errors.New("storage: sendfile not supported on this platform")

func sendFile(syscall.RawConn, *os.File, int64, int64) (int64, error) {
	return 0, errNoSendfile
}
