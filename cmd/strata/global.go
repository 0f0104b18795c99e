package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

// globalOptions are the flags every client command takes (DESIGN.md §8).
type globalOptions struct {
	bootstrap string
	output    string
	timeout   time.Duration
}

func (g *globalOptions) addFlags(cmd *cobra.Command) {
	def := os.Getenv("STRATA_BOOTSTRAP")
	if def == "" {
		def = client.DefaultBootstrap
	}
	f := cmd.PersistentFlags()
	f.StringVar(&g.bootstrap, "bootstrap", def, "brokers to bootstrap from, host:port[,host:port] (env STRATA_BOOTSTRAP)")
	f.StringVar(&g.output, "output", "table", "output format: table or json")
	f.DurationVar(&g.timeout, "timeout", 30*time.Second, "how long a command may wait for the cluster")
}

// validate checks the global flags; a bad one is a usage error (exit 2).
func (g *globalOptions) validate() error {
	if g.output != "table" && g.output != "json" {
		return fmt.Errorf("%w: --output %q: want table or json", errUsage, g.output)
	}
	if g.timeout <= 0 {
		return fmt.Errorf("%w: --timeout must be positive", errUsage)
	}
	if strings.TrimSpace(g.bootstrap) == "" {
		return fmt.Errorf("%w: --bootstrap is empty", errUsage)
	}
	return nil
}

// client makes a client for the bootstrap brokers.
func (g *globalOptions) client() (*client.Client, error) {
	if err := g.validate(); err != nil {
		return nil, err
	}
	var addrs []string
	for _, a := range strings.Split(g.bootstrap, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	c, err := client.New(client.Config{Bootstrap: addrs, RequestTimeout: g.timeout})
	if err != nil {
		return nil, fmt.Errorf("%w: --bootstrap: %v", errUsage, err)
	}
	return c, nil
}

// producer makes a client and a producer on it; the caller closes the
// producer (Close flushes) and then the client.
func (g *globalOptions) producer(cfg client.ProducerConfig) (*client.Client, *client.Producer, error) {
	c, err := g.client()
	if err != nil {
		return nil, nil, err
	}
	p, err := client.NewProducer(c, cfg)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, p, nil
}

// print writes v as JSON with --output json, else calls table with a
// tabwriter (flushed after).
func (g *globalOptions) print(w io.Writer, v any, table func(tw *tabwriter.Writer)) error {
	if g.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}
