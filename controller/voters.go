package controller

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"
)

// Voter is one member of the controller quorum: `id@host:port`.
type Voter struct {
	ID   int32
	Addr string // host:port of the controller's one port
}

func (v Voter) String() string { return fmt.Sprintf("%d@%s", v.ID, v.Addr) }

// ServerID is the Raft server id of a node: its id in decimal.
func ServerID(id int32) raft.ServerID { return raft.ServerID(strconv.FormatInt(int64(id), 10)) }

// ParseServerID is the inverse of ServerID.
func ParseServerID(id raft.ServerID) (int32, error) {
	n, err := strconv.ParseInt(string(id), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("controller: raft server id %q is not a node id", id)
	}
	return int32(n), nil
}

// Errors of ParseQuorum; every one is wrapped in a *QuorumError.
var (
	ErrQuorumEmpty       = errors.New("controller: quorum is empty")
	ErrQuorumEntry       = errors.New("controller: quorum entry is not id@host:port")
	ErrQuorumID          = errors.New("controller: quorum node id is not a positive 32-bit integer")
	ErrQuorumAddr        = errors.New("controller: quorum address is not host:port")
	ErrQuorumDuplicateID = errors.New("controller: quorum names a node id twice")
	ErrQuorumDuplicateAd = errors.New("controller: quorum names an address twice")
)

// QuorumError says which entry of a --quorum value is malformed and why.
type QuorumError struct {
	Entry string // the offending entry as given
	Err   error  // one of the ErrQuorum* sentinels
}

func (e *QuorumError) Error() string {
	if e.Entry == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%v: %q", e.Err, e.Entry)
}

func (e *QuorumError) Unwrap() error { return e.Err }

// ParseQuorum parses a `--quorum` value: comma-separated `id@host:port`
// entries, ids positive and distinct, addresses distinct. Surrounding spaces
// are ignored. The order is kept (it is the bootstrap configuration's order).
func ParseQuorum(s string) ([]Voter, error) {
	if strings.TrimSpace(s) == "" {
		return nil, &QuorumError{Err: ErrQuorumEmpty}
	}
	var out []Voter
	ids := map[int32]bool{}
	addrs := map[string]bool{}
	for _, raw := range strings.Split(s, ",") {
		e := strings.TrimSpace(raw)
		idStr, addr, ok := strings.Cut(e, "@")
		if !ok || idStr == "" || addr == "" {
			return nil, &QuorumError{Entry: e, Err: ErrQuorumEntry}
		}
		id, err := strconv.ParseInt(idStr, 10, 32)
		if err != nil || id <= 0 {
			return nil, &QuorumError{Entry: e, Err: ErrQuorumID}
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return nil, &QuorumError{Entry: e, Err: ErrQuorumAddr}
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return nil, &QuorumError{Entry: e, Err: ErrQuorumAddr}
		}
		if ids[int32(id)] {
			return nil, &QuorumError{Entry: e, Err: ErrQuorumDuplicateID}
		}
		if addrs[addr] {
			return nil, &QuorumError{Entry: e, Err: ErrQuorumDuplicateAd}
		}
		ids[int32(id)] = true
		addrs[addr] = true
		out = append(out, Voter{ID: int32(id), Addr: addr})
	}
	return out, nil
}

// FormatQuorum is the inverse of ParseQuorum.
func FormatQuorum(vs []Voter) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return strings.Join(parts, ",")
}

// raftConfiguration is the bootstrap configuration: every voter, in order.
func raftConfiguration(vs []Voter) raft.Configuration {
	var c raft.Configuration
	for _, v := range vs {
		c.Servers = append(c.Servers, raft.Server{
			Suffrage: raft.Voter,
			ID:       ServerID(v.ID),
			Address:  raft.ServerAddress(v.Addr),
		})
	}
	return c
}
