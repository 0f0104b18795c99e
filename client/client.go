package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// DefaultBootstrap is the broker a client contacts first by default.
const DefaultBootstrap = "127.0.0.1:9092"

// Config is what every client (producer, consumer, admin) shares.
type Config struct {
	// Bootstrap lists brokers (host:port) to learn the cluster from; any one
	// that answers will do. Default DefaultBootstrap.
	Bootstrap []string
	// RequestTimeout bounds one RPC (default 30 s).
	RequestTimeout time.Duration
	// MetadataMaxAge refreshes the cached metadata at least this often
	// (metadata.max.age.ms; default 5 min).
	MetadataMaxAge time.Duration
	// Dialer replaces net.Dialer (tests cut links with it).
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if len(c.Bootstrap) == 0 {
		c.Bootstrap = []string{DefaultBootstrap}
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.MetadataMaxAge <= 0 {
		c.MetadataMaxAge = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// PartitionInfo is one partition as the cluster metadata has it.
type PartitionInfo struct {
	Topic       string
	Partition   int32
	Leader      int32 // -1: no leader right now
	LeaderEpoch int32
	Replicas    []int32
	ISR         []int32
	Offline     []int32
}

// BrokerInfo is one live broker.
type BrokerInfo struct {
	ID   int32
	Addr string // host:port
	Rack string
}

// Metadata is a snapshot of the cluster as one broker saw it.
type Metadata struct {
	ClusterID   string
	Offset      int64 // the broker's metadata offset: newer answers win
	Brokers     map[int32]BrokerInfo
	Controllers []string
	Topics      map[string][]PartitionInfo // by partition index
	fetched     time.Time
}

// Leader is the partition's leader and epoch, or an error saying why not.
func (m *Metadata) Leader(topic string, partition int32) (BrokerInfo, int32, error) {
	parts, ok := m.Topics[topic]
	if !ok {
		return BrokerInfo{}, 0, &Error{Code: pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, Message: "unknown topic " + strconv.Quote(topic)}
	}
	if partition < 0 || int(partition) >= len(parts) {
		return BrokerInfo{}, 0, &Error{Code: pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION,
			Message: fmt.Sprintf("topic %q has %d partitions, no partition %d", topic, len(parts), partition)}
	}
	p := parts[partition]
	b, ok := m.Brokers[p.Leader]
	if p.Leader < 0 || !ok {
		return BrokerInfo{}, 0, &Error{Code: pb.ErrorCode_LEADER_NOT_AVAILABLE, Retriable: true,
			Message: fmt.Sprintf("%s-%d has no live leader right now", topic, partition)}
	}
	return b, p.LeaderEpoch, nil
}

// Client is the connection state producers, consumers and admins share:
// the metadata cache and one gRPC connection per broker and controller.
// It is safe for concurrent use.
type Client struct {
	cfg Config

	mu struct {
		sync.Mutex
		meta  *Metadata
		conns map[string]*grpc.ClientConn
	}
	refresh sync.Mutex // one metadata refresh at a time
}

// New makes a client; it connects lazily. Close it when done.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	for _, a := range cfg.Bootstrap {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, &Error{Code: pb.ErrorCode_INVALID_REQUEST, Message: fmt.Sprintf("bootstrap address %q: want host:port", a)}
		}
	}
	c := &Client{cfg: cfg}
	c.mu.conns = map[string]*grpc.ClientConn{}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for a, cc := range c.mu.conns {
		errs = append(errs, cc.Close())
		delete(c.mu.conns, a)
	}
	return errors.Join(errs...)
}

func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.mu.conns[addr]; cc != nil {
		return cc, nil
	}
	opts := append(wire.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
	if c.cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(c.cfg.Dialer))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	c.mu.conns[addr] = cc
	return cc, nil
}

// Broker returns a BrokerService client for addr.
func (c *Client) Broker(addr string) (pb.BrokerServiceClient, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewBrokerServiceClient(cc), nil
}

// FetchCallOptions are the call options of a Fetch: the zero-copy codec.
func FetchCallOptions() []grpc.CallOption { return []grpc.CallOption{wire.CallOption()} }

// Metadata returns the cached metadata, refreshing it when it is older than
// MetadataMaxAge or missing.
func (c *Client) Metadata(ctx context.Context) (*Metadata, error) {
	c.mu.Lock()
	m := c.mu.meta
	c.mu.Unlock()
	if m != nil && time.Since(m.fetched) < c.cfg.MetadataMaxAge {
		return m, nil
	}
	return c.RefreshMetadata(ctx)
}

// RefreshMetadata asks the known brokers (then the bootstrap list) for the
// cluster metadata and keeps the newest answer. Call it after
// NOT_LEADER_OR_FOLLOWER and the like.
func (c *Client) RefreshMetadata(ctx context.Context) (*Metadata, error) {
	c.refresh.Lock()
	defer c.refresh.Unlock()
	c.mu.Lock()
	old := c.mu.meta
	c.mu.Unlock()
	var addrs []string
	if old != nil {
		for _, b := range old.Brokers {
			addrs = append(addrs, b.Addr)
		}
	}
	addrs = append(addrs, c.cfg.Bootstrap...)
	var lastErr error
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			continue
		}
		seen[a] = true
		bc, err := c.Broker(a)
		if err != nil {
			lastErr = err
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, min(c.cfg.RequestTimeout, 5*time.Second))
		resp, err := bc.Metadata(rctx, &pb.MetadataRequest{})
		cancel()
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		m := metadataFrom(resp)
		if old != nil && m.Offset < old.Offset {
			continue // an older view than we have
		}
		c.mu.Lock()
		c.mu.meta = m
		c.mu.Unlock()
		return m, nil
	}
	if old != nil && lastErr == nil {
		return old, nil
	}
	return nil, &Error{Code: pb.ErrorCode_BROKER_NOT_AVAILABLE, Retriable: true,
		Message: fmt.Sprintf("no broker of %v answered (last error: %v); check --bootstrap and that the cluster is up", c.cfg.Bootstrap, lastErr)}
}

func metadataFrom(resp *pb.MetadataResponse) *Metadata {
	m := &Metadata{ClusterID: resp.ClusterId, Offset: resp.MetadataOffset, Brokers: map[int32]BrokerInfo{},
		Controllers: resp.ControllerAddresses, Topics: map[string][]PartitionInfo{}, fetched: time.Now()}
	for _, b := range resp.Brokers {
		m.Brokers[b.NodeId] = BrokerInfo{ID: b.NodeId, Addr: net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))), Rack: b.Rack}
	}
	for _, t := range resp.Topics {
		if t.ErrorCode != pb.ErrorCode_NONE {
			continue
		}
		parts := make([]PartitionInfo, len(t.Partitions))
		for _, p := range t.Partitions {
			if int(p.Partition) < len(parts) {
				parts[p.Partition] = PartitionInfo{Topic: t.Name, Partition: p.Partition, Leader: p.LeaderId, LeaderEpoch: p.LeaderEpoch,
					Replicas: p.Replicas, ISR: p.Isr, Offline: p.OfflineReplicas}
			}
		}
		m.Topics[t.Name] = parts
	}
	return m
}

// LeaderClient returns a BrokerService client for the partition's leader,
// refreshing the metadata once if the partition or its leader is unknown.
func (c *Client) LeaderClient(ctx context.Context, topic string, partition int32) (pb.BrokerServiceClient, int32, error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return nil, 0, err
	}
	b, epoch, err := m.Leader(topic, partition)
	if err != nil {
		if m, err = c.RefreshMetadata(ctx); err != nil {
			return nil, 0, err
		}
		if b, epoch, err = m.Leader(topic, partition); err != nil {
			return nil, 0, err
		}
	}
	bc, err := c.Broker(b.Addr)
	return bc, epoch, err
}

// Controller runs fn against the active controller (found through the
// addresses the brokers report), following NOT_CONTROLLER answers.
func (c *Client) Controller(ctx context.Context, fn func(context.Context, pb.ControllerServiceClient) error) error {
	m, err := c.Metadata(ctx)
	if err != nil {
		return err
	}
	if len(m.Controllers) == 0 {
		return &Error{Code: pb.ErrorCode_BROKER_NOT_AVAILABLE, Message: "the brokers reported no controller addresses"}
	}
	addrs := m.Controllers
	var lastErr error
	next := "" // the active controller a NOT_CONTROLLER answer named
	for attempt := 0; attempt < 3*len(addrs)+3 && ctx.Err() == nil; attempt++ {
		addr := next
		if addr == "" {
			addr = addrs[attempt%len(addrs)]
		}
		next = ""
		cc, err := c.conn(addr)
		if err != nil {
			lastErr = err
			continue
		}
		err = fn(ctx, pb.NewControllerServiceClient(cc))
		if err == nil {
			return nil
		}
		lastErr = err
		var e *Error
		if !errors.As(FromError(err), &e) {
			return err // a context error
		}
		switch {
		case e.Code == pb.ErrorCode_NOT_CONTROLLER && e.leaderAddr != "" && e.leaderAddr != addr:
			next = e.leaderAddr
		case e.Retriable:
			time.Sleep(50 * time.Millisecond)
		default:
			return e
		}
	}
	if ctx.Err() != nil {
		return FromError(ctx.Err())
	}
	return FromError(lastErr)
}
