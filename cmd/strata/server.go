package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stratalog/strata/broker"
	"github.com/stratalog/strata/controller"
)

// errUsage marks a bad flag or config value: exit code 1 with the reason.
var errUsage = errors.New("invalid arguments")

type serverOptions struct {
	configFile     string
	nodeID         int32
	roles          string
	dataDir        string
	controllerAddr string
	brokerAddr     string
	brokerAdvert   string
	metricsAddr    string
	rack           string
	throttle       int64
	advertiseAddr  string
	quorum         string
	timeouts       string
	sessionTimeout time.Duration
	snapThreshold  uint64
	logLevel       string
	groups         broker.GroupConfig
	logFormat      string
}

func newServerCmd() *cobra.Command {
	var o serverOptions
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Strata node: a controller, a broker, or both",
		Long: `Run a Strata node until SIGINT or SIGTERM.

Roles (--roles, comma-separated):
  controller  one voter of the Raft quorum that holds the cluster metadata;
              Raft and the ControllerService gRPC API share --controller-addr
  broker      hosts partition replicas and serves BrokerService on
              --broker-addr; finds the controllers through --quorum

Every node serves HTTP on --metrics-addr:
  /metrics       Prometheus metrics of the node's roles (strata_broker_*,
                 strata_controller_*, strata_rpc_*) and the Go runtime
  /healthz       200 while the process runs
  /readyz        200 when every role is ready, else 503 with the reason:
                 a broker is registered, unfenced and caught up with the
                 metadata log; a controller is a voter of a quorum with a
                 known leader
  /debug/pprof/  Go profiles
Logs go to stderr through log/slog, as key=value text or JSON lines
(--log-format), each with the node id (node) and role; partition events
carry topic and partition.

SIGTERM shuts down in order: a broker first moves its partition leaderships
away (controlled shutdown), flushes its logs and marks them clean; then a
controller leaves.

On the first start of a data directory the voters in --quorum bootstrap the
cluster (the same --quorum on every voter); later starts reuse the Raft state
on disk. Every flag can also be given in --config FILE as "flag-name = value"
lines (# starts a comment); flags on the command line win.`,
		Example: `  strata server --node-id 1 --roles controller,broker --data-dir /var/lib/strata/1 \
    --controller-addr 127.0.0.1:9093 --broker-addr 127.0.0.1:9092 --metrics-addr 127.0.0.1:9644 \
    --quorum 1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.configFile != "" {
				if err := applyConfigFile(cmd.Flags(), o.configFile); err != nil {
					return err
				}
			}
			return runServer(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "file of flag-name = value lines")
	f.Int32Var(&o.nodeID, "node-id", 0, "this node's id (positive; the controller's Raft id)")
	f.StringVar(&o.roles, "roles", "controller,broker", "roles of this node: controller, broker or controller,broker")
	f.StringVar(&o.dataDir, "data-dir", "", "data directory (Raft state in DIR/raft, DIR/meta.properties)")
	f.StringVar(&o.controllerAddr, "controller-addr", controller.DefaultAddr, "listen address for Raft and the ControllerService")
	f.StringVar(&o.brokerAddr, "broker-addr", broker.DefaultAddr, "listen address of the broker's gRPC service (clients and replication)")
	f.StringVar(&o.brokerAdvert, "broker-advertise-addr", "", "address the broker registers for clients and other brokers (default: --broker-addr; set it when listening on 0.0.0.0)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:9644", "listen address for /metrics, /healthz, /readyz and /debug/pprof/ (empty: off)")
	f.StringVar(&o.rack, "rack", "", "the broker's rack, for rack-aware replica placement")
	f.Int64Var(&o.throttle, "replication-throttle", 0, "bytes/s cap on replication traffic of partitions being reassigned to this broker (0: none); the dynamic config follower.replication.throttled.rate (reassign execute --throttle) overrides it while set")
	f.StringVar(&o.advertiseAddr, "advertise-addr", "", "address other nodes use to reach this controller (default: --controller-addr)")
	f.StringVar(&o.quorum, "quorum", "", "controller voters: id@host:port,... (identical on every voter)")
	f.StringVar(&o.timeouts, "raft-timeouts", "default", `Raft timeout profile: "default" (hashicorp/raft's, ~1 s) or "tuned" (LAN, ~150 ms)`)
	f.DurationVar(&o.sessionTimeout, "broker-session-timeout", controller.DefaultSessionTimeout, "fence a broker after this long without a heartbeat (broker.session.timeout.ms)")
	f.Uint64Var(&o.snapThreshold, "snapshot-threshold", 8192, "Raft log entries between metadata snapshots")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	addGroupFlags(f, &o.groups)
	f.StringVar(&o.logFormat, "log-format", "text", "log line format: text or json")
	return cmd
}

// node is what one server process runs: a controller, a broker, or both.
type node struct {
	ctrl    *controller.Controller
	broker  *broker.Broker
	http    *http.Server
	log     *slog.Logger
	metrics *prometheus.Registry // this node's /metrics (not the global registry)
}

func runServer(ctx context.Context, o serverOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	n, err := startNode(ctx, o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	n.log.Info("strata server stopping", "node", o.nodeID)
	return n.close()
}

// startNode validates o, then starts the roles it names and the HTTP
// endpoints; bad flags are errUsage and start nothing.
func startNode(ctx context.Context, o serverOptions) (*node, error) {
	if o.nodeID <= 0 {
		return nil, fmt.Errorf("%w: --node-id must be a positive integer, got %d", errUsage, o.nodeID)
	}
	if o.dataDir == "" {
		return nil, fmt.Errorf("%w: --data-dir is required", errUsage)
	}
	var isCtrl, isBroker bool
	for _, r := range strings.Split(o.roles, ",") {
		switch strings.TrimSpace(r) {
		case "controller":
			isCtrl = true
		case "broker":
			isBroker = true
		default:
			return nil, fmt.Errorf("%w: --roles %q: unknown role %q (want controller, broker or both)", errUsage, o.roles, r)
		}
	}
	logger, err := newLogger(os.Stderr, o.logFormat, o.logLevel)
	if err != nil {
		return nil, err
	}
	timeouts, err := controller.TimeoutsProfile(o.timeouts)
	if err != nil {
		return nil, fmt.Errorf("%w: --raft-timeouts: %v", errUsage, err)
	}
	if o.throttle < 0 {
		return nil, fmt.Errorf("%w: --replication-throttle must be >= 0", errUsage)
	}
	if o.brokerAdvert != "" {
		if _, port, err := net.SplitHostPort(o.brokerAdvert); err != nil || port == "" || port == "0" {
			return nil, fmt.Errorf("%w: --broker-advertise-addr %q: want host:port with a port", errUsage, o.brokerAdvert)
		}
	}
	if o.quorum == "" {
		return nil, fmt.Errorf("%w: --quorum is required (id@host:port,... of the controller voters)", errUsage)
	}
	quorum, err := controller.ParseQuorum(o.quorum)
	if err != nil {
		return nil, fmt.Errorf("%w: --quorum: %v", errUsage, err)
	}
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return nil, err
	}
	if err := checkMetaProperties(o.dataDir, o.nodeID); err != nil {
		return nil, err
	}
	n := &node{log: logger, metrics: prometheus.NewRegistry()}
	n.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if isCtrl {
		n.ctrl, err = controller.New(controller.Config{
			NodeID: o.nodeID, DataDir: o.dataDir, Addr: o.controllerAddr, AdvertiseAddr: o.advertiseAddr,
			Quorum: quorum, Timeouts: timeouts, Snapshots: controller.Snapshots{Threshold: o.snapThreshold},
			SessionTimeout: o.sessionTimeout, Logger: n.log,
		})
		if err != nil {
			return nil, err
		}
		if err := n.ctrl.Start(ctx); err != nil {
			n.ctrl.Close()
			return nil, err
		}
		if err := n.ctrl.RegisterMetrics(n.metrics); err != nil {
			n.close()
			return nil, err
		}
	}
	if isBroker {
		var addrs []string
		for _, v := range quorum {
			addrs = append(addrs, v.Addr)
		}
		n.broker, err = broker.New(broker.Config{
			NodeID: o.nodeID, DataDir: o.dataDir, Addr: o.brokerAddr, AdvertiseAddr: o.brokerAdvert, Rack: o.rack,
			Controllers: addrs, Logger: n.log,
			Fetcher: broker.FetcherConfig{ThrottleBytesPerSec: o.throttle},
			Groups:  o.groups,
		})
		if err == nil {
			err = n.broker.Start(ctx)
		}
		if err == nil {
			err = n.broker.RegisterMetrics(n.metrics)
		}
		if err != nil {
			n.close()
			return nil, err
		}
	}
	if o.metricsAddr != "" {
		if err := n.serveHTTP(o.metricsAddr); err != nil {
			n.close()
			return nil, err
		}
	}
	n.log.Info("strata server running", "node", o.nodeID, "roles", o.roles, "controller_addr", o.controllerAddr,
		"broker_addr", o.brokerAddr, "metrics_addr", o.metricsAddr, "data_dir", o.dataDir)
	return n, nil
}

// ready reports whether every role of the node is ready: a controller is in
// a quorum with a known leader; a broker is registered, unfenced and caught
// up with the metadata log.
func (n *node) ready() (bool, string) {
	if n.ctrl != nil {
		if ok, why := n.ctrl.Ready(); !ok {
			return false, why
		}
	}
	if n.broker != nil && !n.broker.Ready() {
		return false, "broker: not registered, fenced (or no heartbeat answered within the session timeout), or behind the metadata log"
	}
	return true, "ready"
}

func (n *node) serveHTTP(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := n.ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go n.http.Serve(ln)
	return nil
}

// close stops the broker first (controlled shutdown needs the controllers),
// then the controller, then the HTTP endpoints.
func (n *node) close() error {
	var errs []error
	if n.broker != nil {
		errs = append(errs, n.broker.Close())
	}
	if n.ctrl != nil {
		errs = append(errs, n.ctrl.Close())
	}
	if n.http != nil {
		errs = append(errs, n.http.Close())
	}
	return errors.Join(errs...)
}

// checkMetaProperties writes <data-dir>/meta.properties on the first start and
// refuses a data directory that belongs to another node id.
func checkMetaProperties(dir string, nodeID int32) error {
	path := filepath.Join(dir, "meta.properties")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, fmt.Appendf(nil, "version=1\nnode.id=%d\n", nodeID), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "node.id="); ok {
			if id, err := strconv.ParseInt(v, 10, 32); err != nil || int32(id) != nodeID {
				return fmt.Errorf("%w: %s belongs to node %s, not --node-id %d", errUsage, path, v, nodeID)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: %s has no node.id line", errUsage, path)
}

// applyConfigFile sets every flag named in file that was not given on the
// command line. Lines are "name = value" or "name=value"; '#' comments.
func applyConfigFile(flags *pflag.FlagSet, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("%w: --config: %v", errUsage, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return fmt.Errorf("%w: %s:%d: want name = value, got %q", errUsage, file, n, line)
		}
		fl := flags.Lookup(name)
		if fl == nil || name == "config" {
			return fmt.Errorf("%w: %s:%d: unknown setting %q", errUsage, file, n, name)
		}
		if fl.Changed {
			continue // the command line wins
		}
		if err := flags.Set(name, value); err != nil {
			return fmt.Errorf("%w: %s:%d: %s: %v", errUsage, file, n, name, err)
		}
	}
	return sc.Err()
}
