// Command jsbench is the JetStream side of scripts/bench/compare.sh: the
// same workloads `strata perf` runs, against NATS JetStream with the
// nats.go client (async publish with a bounded window).
//
//	jsbench -mode setup   -streams N -replicas R        (re)create N file streams
//	jsbench -mode pub     -producers P -size B -window W [-rate R] (-n N | -duration D)
//	jsbench -mode e2e     -size B -rate R (-n N | -duration D)
//	jsbench -mode consume                                 replay every stream from the start
//
// Stream i is named PREFIX-i and takes subject PREFIX.i; producer k sends
// its j-th message to stream (k+j) mod N. Results are one JSON object on
// stdout with the field names of `strata perf ... --output json`
// (records, errors, seconds, records_per_sec, mb_per_sec (MiB/s),
// latency_ms {avg, p50, p95, p99, p99_9, max}).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

type options struct {
	mode      string
	servers   string
	prefix    string
	streams   int
	replicas  int
	producers int
	size      int
	window    int
	n         int64
	duration  time.Duration
	rate      float64
	timeout   time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "", "setup, pub, e2e or consume")
	flag.StringVar(&o.servers, "servers", nats.DefaultURL, "NATS URLs, comma-separated")
	flag.StringVar(&o.prefix, "prefix", "bench", "stream name and subject prefix")
	flag.IntVar(&o.streams, "streams", 1, "number of streams")
	flag.IntVar(&o.replicas, "replicas", 1, "stream replicas (setup)")
	flag.IntVar(&o.producers, "producers", 1, "publishers, each on its own connection (pub)")
	flag.IntVar(&o.size, "size", 1024, "message payload bytes")
	flag.IntVar(&o.window, "window", 256, "async publishes in flight per publisher (PublishAsyncMaxPending)")
	flag.Int64Var(&o.n, "n", 0, "messages to publish (0 with -duration: no count limit)")
	flag.DurationVar(&o.duration, "duration", 0, "stop publishing after this long")
	flag.Float64Var(&o.rate, "rate", 0, "messages/s, all publishers together (0: as fast as the window allows; e2e: required)")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound on setup requests and on waiting for acks or messages")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "jsbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, &o)
	if res != nil {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jsbench:", err)
		os.Exit(1)
	}
}

func (o *options) validate() error {
	switch {
	case o.streams < 1:
		return fmt.Errorf("-streams must be positive, got %d", o.streams)
	case o.producers < 1:
		return fmt.Errorf("-producers must be positive, got %d", o.producers)
	case o.size < 8:
		return fmt.Errorf("-size must be at least 8 (e2e stamps the send time), got %d", o.size)
	case o.window < 1:
		return fmt.Errorf("-window must be positive, got %d", o.window)
	case o.rate < 0:
		return fmt.Errorf("-rate must not be negative")
	case o.timeout <= 0:
		return fmt.Errorf("-timeout must be positive")
	}
	switch o.mode {
	case "setup", "consume":
	case "pub", "e2e":
		if o.n < 0 || (o.n == 0 && o.duration <= 0) {
			return errors.New("-n must be positive, or 0 with a -duration")
		}
		if o.mode == "e2e" && o.rate <= 0 {
			return errors.New("-mode e2e needs a -rate")
		}
	default:
		return fmt.Errorf("-mode %q: want setup, pub, e2e or consume", o.mode)
	}
	return nil
}

func run(ctx context.Context, o *options) (*result, error) {
	switch o.mode {
	case "setup":
		return nil, setup(ctx, o)
	case "pub":
		return publish(ctx, o)
	case "e2e":
		return endToEnd(ctx, o)
	default:
		return consume(ctx, o)
	}
}

func connect(o *options, name string) (*nats.Conn, error) {
	return nats.Connect(o.servers, nats.Name(name), nats.Timeout(o.timeout), nats.MaxReconnects(-1))
}

func streamName(o *options, i int) string { return fmt.Sprintf("%s-%d", o.prefix, i) }
func subject(o *options, i int) string    { return fmt.Sprintf("%s.%d", o.prefix, i) }
