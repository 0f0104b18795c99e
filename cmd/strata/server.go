package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
	advertiseAddr  string
	quorum         string
	timeouts       string
	sessionTimeout time.Duration
	snapThreshold  uint64
	logLevel       string
}

func newServerCmd() *cobra.Command {
	var o serverOptions
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Strata node (today: a controller of the Raft metadata quorum)",
		Long: `Run a Strata node until SIGINT or SIGTERM.

Roles: "controller" runs one voter of the Raft quorum that holds the cluster
metadata; Raft and the ControllerService gRPC API share --controller-addr.
The broker role (and the combined controller,broker node of strata dev) is
built by the broker issue; until then only --roles controller is accepted.

On the first start of a data directory the voters in --quorum bootstrap the
cluster (the same --quorum on every voter); later starts reuse the Raft state
on disk. Every flag can also be given in --config FILE as "flag-name = value"
lines (# starts a comment); flags on the command line win.`,
		Example: `  strata server --node-id 1 --roles controller --data-dir /var/lib/strata/1 \
    --controller-addr 127.0.0.1:9093 \
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
	f.StringVar(&o.roles, "roles", "controller", "roles of this node: controller")
	f.StringVar(&o.dataDir, "data-dir", "", "data directory (Raft state in DIR/raft, DIR/meta.properties)")
	f.StringVar(&o.controllerAddr, "controller-addr", controller.DefaultAddr, "listen address for Raft and the ControllerService")
	f.StringVar(&o.advertiseAddr, "advertise-addr", "", "address other nodes use to reach this controller (default: --controller-addr)")
	f.StringVar(&o.quorum, "quorum", "", "controller voters: id@host:port,... (identical on every voter)")
	f.StringVar(&o.timeouts, "raft-timeouts", "default", `Raft timeout profile: "default" (hashicorp/raft's, ~1 s) or "tuned" (LAN, ~150 ms)`)
	f.DurationVar(&o.sessionTimeout, "broker-session-timeout", controller.DefaultSessionTimeout, "fence a broker after this long without a heartbeat (broker.session.timeout.ms)")
	f.Uint64Var(&o.snapThreshold, "snapshot-threshold", 8192, "Raft log entries between metadata snapshots")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func runServer(ctx context.Context, o serverOptions) error {
	if o.nodeID <= 0 {
		return fmt.Errorf("%w: --node-id must be a positive integer, got %d", errUsage, o.nodeID)
	}
	if o.dataDir == "" {
		return fmt.Errorf("%w: --data-dir is required", errUsage)
	}
	for _, r := range strings.Split(o.roles, ",") {
		switch strings.TrimSpace(r) {
		case "controller":
		case "broker":
			return fmt.Errorf("%w: --roles %q: the broker role is not built yet (broker issue); run --roles controller", errUsage, o.roles)
		default:
			return fmt.Errorf("%w: --roles %q: unknown role %q (want controller)", errUsage, o.roles, r)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q: %v", errUsage, o.logLevel, err)
	}
	timeouts, err := controller.TimeoutsProfile(o.timeouts)
	if err != nil {
		return fmt.Errorf("%w: --raft-timeouts: %v", errUsage, err)
	}
	var quorum []controller.Voter
	if o.quorum != "" {
		if quorum, err = controller.ParseQuorum(o.quorum); err != nil {
			return fmt.Errorf("%w: --quorum: %v", errUsage, err)
		}
	}
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return err
	}
	if err := checkMetaProperties(o.dataDir, o.nodeID); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	c, err := controller.New(controller.Config{
		NodeID:         o.nodeID,
		DataDir:        o.dataDir,
		Addr:           o.controllerAddr,
		AdvertiseAddr:  o.advertiseAddr,
		Quorum:         quorum,
		Timeouts:       timeouts,
		Snapshots:      controller.Snapshots{Threshold: o.snapThreshold},
		SessionTimeout: o.sessionTimeout,
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := c.Start(ctx); err != nil {
		c.Close()
		return err
	}
	logger.Info("strata server running", "node", o.nodeID, "roles", o.roles, "controller_addr", c.Addr(), "data_dir", o.dataDir)
	<-ctx.Done()
	logger.Info("strata server stopping", "node", o.nodeID)
	return c.Close()
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
