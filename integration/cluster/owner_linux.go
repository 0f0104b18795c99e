package cluster

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// socketOwner finds which of pids owns the TCP socket whose local port is
// localPort and whose peer port is peerPort (loopback: both ends are on
// this host). It reads /proc/net/tcp{,6} for the socket's inode and then
// the pids' fd tables for "socket:[inode]". 0 when none of pids owns it
// (the test process itself, a CLI subprocess, or a socket already gone).
//
// This is how a proxy in front of a node tells a replication connection
// from broker 2 from one of a client: every process dials from 127.0.0.1,
// so the address alone can not say.
func socketOwner(localPort, peerPort int, pids []int) int {
	inode := socketInode(localPort, peerPort)
	if inode == "" {
		return 0
	}
	want := "socket:[" + inode + "]"
	for _, pid := range pids {
		fds := fmt.Sprintf("/proc/%d/fd", pid)
		entries, err := os.ReadDir(fds)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if link, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && link == want {
				return pid
			}
		}
	}
	return 0
}

// socketInode is the inode of the socket local:localPort <-> peer:peerPort,
// "" when there is none.
func socketInode(localPort, peerPort int) string {
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 {
				continue
			}
			if portOf(fields[1]) == localPort && portOf(fields[2]) == peerPort && fields[9] != "0" {
				f.Close()
				return fields[9]
			}
		}
		f.Close()
	}
	return ""
}

// portOf parses the port of a /proc/net/tcp address ("0100007F:1F90").
func portOf(hexAddr string) int {
	i := strings.LastIndexByte(hexAddr, ':')
	if i < 0 {
		return -1
	}
	p, err := strconv.ParseUint(hexAddr[i+1:], 16, 16)
	if err != nil {
		return -1
	}
	return int(p)
}
