package controller

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Defaults of Config.
const (
	DefaultAddr                = "127.0.0.1:9093"
	DefaultSessionTimeout      = 9 * time.Second // broker.session.timeout.ms
	DefaultProducerIDBlockSize = 1000
	DefaultApplyTimeout        = 10 * time.Second
	DefaultMaxFetchRecords     = 1000
)

// Config configures one controller node.
type Config struct {
	NodeID  int32  // this node's id; its Raft server id is the decimal string
	DataDir string // Raft state lives under <DataDir>/raft
	// Addr is the one port (Raft + ControllerService) to listen on; ignored
	// when Listener is set. Default 127.0.0.1:9093.
	Addr string
	// AdvertiseAddr is the address other voters and clients reach this node
	// at; default the listener's address.
	AdvertiseAddr string
	// Quorum is the bootstrap voter set (from --quorum). Used on the first
	// start only, when there is no Raft state on disk; it must be identical on
	// every voter. A node not in Quorum starts without bootstrapping and
	// waits to be added with AddVoter.
	Quorum []Voter

	// Listener, when set, is used instead of listening on Addr (tests pass a
	// port-0 listener). The controller closes it.
	Listener net.Listener
	// Dialer opens Raft connections to other voters; default DefaultDialer.
	Dialer Dialer

	Timeouts  Timeouts  // zero fields take DefaultTimeouts
	Snapshots Snapshots // zero fields take the defaults on Snapshots

	// SessionTimeout is broker.session.timeout.ms: a broker without a
	// heartbeat this long is fenced. Default 9 s.
	SessionTimeout time.Duration
	// ProducerIDBlockSize is how many producer ids one AllocateProducerIds
	// hands out. Default 1000.
	ProducerIDBlockSize int64
	// ApplyTimeout bounds a proposal when the request has no deadline.
	ApplyTimeout time.Duration
	// MaxFetchRecords caps the records of one FetchMetadata answer.
	MaxFetchRecords int

	Logger       *slog.Logger // default slog.Default()
	RaftLogLevel string       // hclog level for hashicorp/raft's own lines; default "warn"
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("controller: invalid config")

func (c Config) withDefaults() (Config, error) {
	if c.NodeID <= 0 {
		return c, fmt.Errorf("%w: node id %d is not positive", ErrConfig, c.NodeID)
	}
	if c.DataDir == "" {
		return c, fmt.Errorf("%w: no data dir", ErrConfig)
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Dialer == nil {
		c.Dialer = DefaultDialer
	}
	d := DefaultTimeouts()
	if c.Timeouts.Heartbeat == 0 {
		c.Timeouts.Heartbeat = d.Heartbeat
	}
	if c.Timeouts.Election == 0 {
		c.Timeouts.Election = d.Election
	}
	if c.Timeouts.LeaderLease == 0 {
		c.Timeouts.LeaderLease = d.LeaderLease
	}
	if c.Timeouts.Commit == 0 {
		c.Timeouts.Commit = d.Commit
	}
	c.Snapshots = c.Snapshots.withDefaults()
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.SessionTimeout < 0 {
		return c, fmt.Errorf("%w: negative session timeout", ErrConfig)
	}
	if c.ProducerIDBlockSize == 0 {
		c.ProducerIDBlockSize = DefaultProducerIDBlockSize
	}
	if c.ProducerIDBlockSize < 0 {
		return c, fmt.Errorf("%w: negative producer id block size", ErrConfig)
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = DefaultApplyTimeout
	}
	if c.MaxFetchRecords <= 0 {
		c.MaxFetchRecords = DefaultMaxFetchRecords
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
