package main

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/broker"
	"github.com/stratalog/strata/controller"
)

func newDevCmd() *cobra.Command {
	o := serverOptions{
		nodeID:         1,
		roles:          "controller,broker",
		dataDir:        "./data",
		controllerAddr: controller.DefaultAddr,
		brokerAddr:     broker.DefaultAddr,
		metricsAddr:    "127.0.0.1:9644",
		quorum:         "1@" + controller.DefaultAddr,
		timeouts:       "tuned",
		sessionTimeout: controller.DefaultSessionTimeout,
		snapThreshold:  8192,
		logLevel:       "warn",
		logFormat:      "text",
	}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a one-node cluster (controller and broker in one process) for a laptop",
		Long: `Run a one-node Strata cluster: one process with the controller and broker roles,
on the defaults of DESIGN.md §8 (broker 127.0.0.1:9092, controller 127.0.0.1:9093,
metrics 127.0.0.1:9644), data in ./data, until SIGINT or SIGTERM. It is
strata server --node-id 1 --roles controller,broker --quorum 1@127.0.0.1:9093
with the tuned Raft timeouts, so it is ready in well under two seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			start := time.Now()
			o.quorum = "1@" + o.controllerAddr
			n, err := startNode(ctx, o)
			if err != nil {
				return err
			}
			if err := waitReady(ctx, n, 30*time.Second); err != nil {
				n.close()
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "strata dev: ready in %d ms — broker %s, controller %s, metrics http://%s, data %s\n",
				time.Since(start).Milliseconds(), o.brokerAddr, o.controllerAddr, o.metricsAddr, o.dataDir)
			<-ctx.Done()
			fmt.Fprintln(cmd.OutOrStdout(), "strata dev: stopping")
			return n.close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", o.dataDir, "data directory")
	f.StringVar(&o.brokerAddr, "broker-addr", o.brokerAddr, "broker gRPC address")
	f.StringVar(&o.controllerAddr, "controller-addr", o.controllerAddr, "controller address (Raft and ControllerService)")
	f.StringVar(&o.metricsAddr, "metrics-addr", o.metricsAddr, "address of /metrics, /healthz, /readyz, /debug/pprof/")
	f.StringVar(&o.logLevel, "log-level", o.logLevel, "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", o.logFormat, "log line format: text or json")
	return cmd
}

// waitReady polls the node's readiness until it is ready or the time is up.
func waitReady(ctx context.Context, n *node, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ok, why := n.ready()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %s", limit, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
