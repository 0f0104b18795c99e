package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/broker/wire"
	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/raftfsm"
	"github.com/stratalog/strata/storage"
)

// DefaultAddr is the broker's default gRPC address (DESIGN.md §8).
const DefaultAddr = "127.0.0.1:9092"

// ListenerName is the one listener a broker registers.
const ListenerName = "PLAINTEXT"

// Config configures one broker.
type Config struct {
	NodeID  int32
	DataDir string // logs in <DataDir>/logs, checkpoints beside
	// Addr is the gRPC listen address (clients and replication); ignored
	// when Listener is set. AdvertiseAddr is what it registers (default:
	// the listener's address).
	Addr          string
	AdvertiseAddr string
	Rack          string
	// Controllers are the controller voters' addresses (from --quorum).
	Controllers []string
	// Listener and Dialer let tests inject loopback listeners and cut links.
	Listener net.Listener
	Dialer   func(ctx context.Context, addr string) (net.Conn, error)

	// Log is the default log config; topic configs override it.
	Log storage.Config
	// MinInsyncReplicas is the broker default of min.insync.replicas.
	MinInsyncReplicas int
	// ReplicaLagTimeMax is replica.lag.time.max.ms (default 30 s).
	ReplicaLagTimeMax time.Duration
	// Fetcher configures the replica fetchers.
	Fetcher FetcherConfig
	// MetadataMaxWait is the FetchMetadata long-poll wait (default 500 ms).
	MetadataMaxWait time.Duration
	// ShutdownTimeout bounds the controlled shutdown (default 30 s).
	ShutdownTimeout time.Duration
	// Groups configures the consumer group coordinator.
	Groups GroupConfig

	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.NodeID <= 0 {
		return c, fmt.Errorf("broker: node id %d is not positive", c.NodeID)
	}
	if c.DataDir == "" {
		return c, errors.New("broker: no data dir")
	}
	if len(c.Controllers) == 0 {
		return c, errors.New("broker: no controller addresses")
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Log == (storage.Config{}) {
		c.Log = storage.DefaultConfig()
	}
	if err := c.Log.Validate(); err != nil {
		return c, err
	}
	if c.MinInsyncReplicas <= 0 {
		c.MinInsyncReplicas = 1
	}
	if c.ReplicaLagTimeMax <= 0 {
		c.ReplicaLagTimeMax = 30 * time.Second
	}
	if c.MetadataMaxWait <= 0 {
		c.MetadataMaxWait = 500 * time.Millisecond
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Broker is one broker process: it registers with the controller quorum,
// follows the metadata log, leads and follows partition replicas, and serves
// BrokerService.
type Broker struct {
	cfg  Config
	log  *slog.Logger
	addr string
	ln   net.Listener

	ctrl     *ctrlClient
	logs     *storage.Manager
	fetchers *FetcherManager
	srv      *grpc.Server

	incarnation []byte
	epoch       atomic.Int64                  // broker epoch, 0 until registered
	image       atomic.Pointer[raftfsm.Image] // latest applied metadata
	fenced      atomic.Bool
	heartbeatOK atomic.Int64 // unix nanos of the last heartbeat the controller answered
	sessionEst  atomic.Int64 // the session timeout the controller implies (4 heartbeat intervals), nanos
	caughtUp    atomic.Bool
	replicas    *replicaManager
	svc         *service
	groups      *coordinator
	metrics     *brokerMetrics
	isr         chan *ISRProposal // proposals for the ISR sender

	imageCh         chan struct{} // closed and replaced on each new image
	imageMu         sync.Mutex
	wantShutdown    atomic.Bool
	shutdownGranted chan struct{}

	producerIDs producerIDs // InitProducerId's blocks

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New validates cfg, opens the logs under DataDir and binds the port.
func New(cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("node", cfg.NodeID, "role", "broker")
	logs, err := storage.OpenManager(cfg.DataDir, cfg.Log, storage.ManagerOptions{Logger: logger})
	if err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			logs.Close()
			return nil, fmt.Errorf("broker: listen %s: %w", cfg.Addr, err)
		}
	}
	addr := cfg.AdvertiseAddr
	if addr == "" {
		addr = ln.Addr().String()
	}
	inc := make([]byte, 16)
	rand.Read(inc)
	b := &Broker{
		cfg: cfg, log: logger, addr: addr, ln: ln,
		ctrl:            newCtrlClient(cfg.Controllers, cfg.Dialer),
		logs:            logs,
		incarnation:     inc,
		isr:             make(chan *ISRProposal, 1024),
		imageCh:         make(chan struct{}),
		shutdownGranted: make(chan struct{}),
	}
	b.image.Store(raftfsm.NewImage())
	b.replicas = newReplicaManager(b)
	b.metrics = newBrokerMetrics(b) // before any component that adds collectors
	b.groups = newCoordinator(b, cfg.Groups)
	b.fetchers = NewFetcherManager(cfg.NodeID, b.epoch.Load, b.dialBroker, cfg.Fetcher, logger, b.onFollowerAppend)
	return b, nil
}

// Addr is the broker's advertised gRPC address.
func (b *Broker) Addr() string { return b.addr }

// ID is the broker's node id.
func (b *Broker) ID() int32 { return b.cfg.NodeID }

// Epoch is the broker epoch of the current registration (0 before).
func (b *Broker) Epoch() int64 { return b.epoch.Load() }

// Image is the latest metadata image the broker applied.
func (b *Broker) Image() *raftfsm.Image { return b.image.Load() }

// Ready reports whether the broker is registered, unfenced and caught up
// with the metadata log (its /readyz). Unfenced means the active controller
// said so within the session timeout: a broker whose heartbeats go
// unanswered that long must assume it has been fenced.
func (b *Broker) Ready() bool {
	if b.epoch.Load() <= 0 || b.fenced.Load() || !b.caughtUp.Load() {
		return false
	}
	return time.Since(time.Unix(0, b.heartbeatOK.Load())) < time.Duration(b.sessionEst.Load())
}

// Start registers with the controller quorum, starts following the metadata
// log, and serves BrokerService. ctx bounds the registration only.
func (b *Broker) Start(ctx context.Context) error {
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.srv = grpc.NewServer(append(wire.ServerOptions(), grpc.MaxRecvMsgSize(b.cfg.Log.MaxBatchBytes*16+(1<<20)), wire.ServerOption())...)
	registerService(b)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := b.srv.Serve(b.ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			b.log.Warn("broker: grpc serve", "err", err)
		}
	}()
	if err := b.register(ctx); err != nil {
		b.stop(false)
		return err
	}
	b.wg.Add(5)
	go func() { defer b.wg.Done(); b.groups.expireLoop() }()
	go func() { defer b.wg.Done(); b.followMetadata() }()
	go func() { defer b.wg.Done(); b.heartbeatLoop() }()
	go func() { defer b.wg.Done(); b.isrLoop() }()
	go func() { defer b.wg.Done(); b.maintenanceLoop() }()
	b.log.Info("broker: started", "addr", b.addr, "epoch", b.epoch.Load())
	return nil
}

// Close shuts the broker down in a controlled way: it asks the controller to
// move its leaderships away (waiting up to ShutdownTimeout), then stops
// serving, flushes its logs and marks them cleanly shut down.
func (b *Broker) Close() error {
	if b.ctx != nil && b.epoch.Load() > 0 {
		b.wantShutdown.Store(true)
		b.heartbeatOK.Store(time.Now().UnixNano()) // the wait for a reachable quorum starts now
		deadline := time.After(b.cfg.ShutdownTimeout)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
	wait:
		for {
			select {
			case <-b.shutdownGranted:
				break wait
			case <-deadline:
				b.log.Warn("broker: controlled shutdown timed out; stopping anyway")
				break wait
			case <-tick.C:
				// No active controller to move the leaderships (the quorum
				// is gone too, as when a whole cluster stops): nothing can
				// be moved, so waiting longer helps no one.
				if time.Since(time.Unix(0, b.heartbeatOK.Load())) > unreachableQuorumWait {
					b.log.Warn("broker: no active controller answers; stopping without a controlled shutdown")
					break wait
				}
			}
		}
	}
	return b.stop(true)
}

// unreachableQuorumWait is how long a controlled shutdown waits without any
// heartbeat getting through before it gives up.
const unreachableQuorumWait = 5 * time.Second

// Kill stops the broker abruptly, as a crash would: no controlled shutdown,
// no flush, no clean-shutdown marker (tests).
func (b *Broker) Kill() error { return b.stop(false) }

func (b *Broker) stop(clean bool) error {
	var err error
	b.once.Do(func() {
		if b.cancel != nil {
			b.cancel()
		}
		if b.srv != nil {
			b.srv.Stop()
		} else {
			b.ln.Close()
		}
		b.fetchers.Close()
		if b.svc != nil {
			b.svc.shutdown()
		}
		b.wg.Wait()
		b.ctrl.close()
		b.replicas.closeConns()
		if clean {
			err = b.logs.Close()
		} else {
			err = b.logs.Abandon()
		}
	})
	return err
}

// dialBroker opens a BrokerService client to another broker.
func (b *Broker) dialBroker(ctx context.Context, id int32, addr string) (pb.BrokerServiceClient, error) {
	return b.replicas.brokerClient(id, addr)
}

// brokerAddr is the registered address of a broker in the image.
func brokerAddr(img *raftfsm.Image, id int32) (string, bool) {
	br := img.Broker(id)
	if br == nil {
		return "", false
	}
	l, ok := br.Listener(ListenerName)
	if !ok {
		return "", false
	}
	return net.JoinHostPort(l.Host, strconv.Itoa(int(l.Port))), true
}

// waitImage returns a channel closed when a newer image is published.
func (b *Broker) waitImage() <-chan struct{} {
	b.imageMu.Lock()
	defer b.imageMu.Unlock()
	return b.imageCh
}

func (b *Broker) publishImage(img *raftfsm.Image) {
	b.image.Store(img)
	b.imageMu.Lock()
	close(b.imageCh)
	b.imageCh = make(chan struct{})
	b.imageMu.Unlock()
}

// LogEndOffset is this broker's local log end offset of a partition, -1 when
// it hosts no replica of it.
func (b *Broker) LogEndOffset(topic string, partition int32) int64 {
	if p := b.replicas.get(topic, partition); p != nil {
		return p.Log().LogEndOffset()
	}
	return -1
}

// LogStartOffset is this broker's local log start offset of a partition, -1
// when it hosts no replica of it.
func (b *Broker) LogStartOffset(topic string, partition int32) int64 {
	if p := b.replicas.get(topic, partition); p != nil {
		return p.Log().LogStartOffset()
	}
	return -1
}
