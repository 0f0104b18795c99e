package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

type perfEndToEndOptions struct {
	producerFlags
	topic      string
	numRecords int64
	recordSize int
	throughput float64
	duration   time.Duration
	idle       time.Duration
}

// e2eStampSize is the bytes at the front of each value that hold its send
// time (Unix nanoseconds, little endian).
const e2eStampSize = 8

// newPerfEndToEndCmd is `strata perf end-to-end`, like Kafka's
// EndToEndLatency tool: one producer at a fixed rate and one consumer in
// the same process; each record carries its send time, and the latency is
// from Send to the consumer's Poll returning it.
func newPerfEndToEndCmd(g *globalOptions) *cobra.Command {
	var o perfEndToEndOptions
	cmd := &cobra.Command{
		Use:   "end-to-end --topic T --throughput R --record-size B (--num-records N | --duration D)",
		Short: "Measure produce-to-consume latency at a fixed rate",
		Long: `Start a consumer at the end of every partition of --topic, then produce
records of --record-size bytes at --throughput records/s (sticky
partitioning) until --num-records are sent or --duration passes. Each value
starts with its send time; the consumer takes the difference when Poll hands
the record over. Prints records/s received and the latency avg / p50 / p95 /
p99 / p99.9 / max (ms). Both ends run in this process, so one clock.

Exit 1 if a record failed or did not arrive within --timeout of the last
one (what was measured is printed first).`,
		Example: `  strata perf end-to-end --topic bench --throughput 5000 --record-size 1024 --duration 10s`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runPerfEndToEnd(ctx, cmd, g, &o)
		},
	}
	o.producerFlags.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.topic, "topic", "", "topic to produce to and consume from (must exist)")
	f.Int64Var(&o.numRecords, "num-records", 0, "records to send (0 with --duration: no count limit)")
	f.IntVar(&o.recordSize, "record-size", 0, "bytes per record value (at least 8: the send time)")
	f.Float64Var(&o.throughput, "throughput", 0, "records/s to send (required)")
	f.DurationVar(&o.duration, "duration", 0, "stop sending after this long (0: when --num-records are sent)")
	f.DurationVar(&o.idle, "consumer-timeout", 10*time.Second, "give up when no record has arrived for this long after the last send")
	return cmd
}

func (o *perfEndToEndOptions) validate() error {
	switch {
	case o.topic == "":
		return fmt.Errorf("%w: --topic is required", errUsage)
	case o.numRecords < 0 || (o.numRecords == 0 && o.duration <= 0):
		return fmt.Errorf("%w: --num-records must be positive (or 0 with a --duration), got %d", errUsage, o.numRecords)
	case o.duration < 0:
		return fmt.Errorf("%w: --duration must not be negative, got %s", errUsage, o.duration)
	case o.recordSize < e2eStampSize:
		return fmt.Errorf("%w: --record-size must be at least %d (the send time), got %d", errUsage, e2eStampSize, o.recordSize)
	case !(o.throughput > 0):
		return fmt.Errorf("%w: --throughput must be positive (end-to-end latency is measured at a fixed rate), got %v", errUsage, o.throughput)
	case o.idle <= 0:
		return fmt.Errorf("%w: --consumer-timeout must be positive, got %s", errUsage, o.idle)
	}
	return nil
}

func runPerfEndToEnd(ctx context.Context, cmd *cobra.Command, g *globalOptions, o *perfEndToEndOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	cfg, err := o.config(g)
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	setup, cancel := context.WithTimeout(ctx, g.timeout)
	cons, err := openConsumer(setup, c, o.topic, -1, consumeStart{reset: client.OffsetResetLatest, offset: -1}, client.ConsumerConfig{})
	cancel()
	if err != nil {
		return err
	}
	defer cons.Close()
	pc, p, err := g.producer(cfg)
	if err != nil {
		return err
	}
	defer pc.Close()
	defer p.Close(context.Background())

	stats := newPerfStats()
	sctx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	sent := make(chan e2eSent, 1)
	go func() {
		n, err := e2eSend(sctx, p, o, stats)
		sent <- e2eSent{n, err}
	}()
	received, outcome, err := e2eReceive(ctx, cons, o.idle, stats, sent)
	if outcome == nil { // the consumer gave up first: stop the producer and wait for it
		stopSending()
		out := <-sent
		outcome = &out
	}
	r := stats.result(time.Now())
	r.Records = received
	w := cmd.OutOrStdout()
	if g.output == "json" {
		if perr := g.print(w, r, nil); perr != nil {
			return perr
		}
	} else {
		fmt.Fprintf(w, "%d records end to end, %.1f records/sec (%.2f MB/sec), %.2f ms avg latency, %.2f ms max latency, %.2f ms 50th, %.2f ms 95th, %.2f ms 99th, %.2f ms 99.9th.\n",
			r.Records, r.RecordsPerSec, r.MBPerSec, r.LatencyMs.Avg, r.LatencyMs.Max, r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.LatencyMs.P999)
	}
	if outcome.err != nil {
		return outcome.err
	}
	return err
}

// e2eSent is the producer's outcome: records acknowledged, the first failure.
type e2eSent struct {
	acked int64
	err   error
}

// e2eSend produces at the fixed rate, each value stamped with its send
// time, and returns the number acknowledged once every record has its
// outcome (the first failure as the error).
func e2eSend(ctx context.Context, p *client.Producer, o *perfEndToEndOptions, stats *perfStats) (int64, error) {
	value := make([]byte, o.recordSize)
	for i := range value {
		value[i] = 'A' + byte(rand.IntN(26))
	}
	futures := make(chan *client.Future, 4096)
	var (
		acked    int64
		firstErr error
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() { // outcomes, in send order
		defer wg.Done()
		for f := range futures {
			if _, err := f.Wait(context.Background()); err != nil {
				stats.record(0, 0, err) // counts the error
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			acked++
		}
	}()
	begin := time.Now()
	var deadline time.Time
	if o.duration > 0 {
		deadline = begin.Add(o.duration)
	}
	for i := int64(0); (o.numRecords == 0 || i < o.numRecords) && ctx.Err() == nil; i++ {
		due := begin.Add(time.Duration(float64(i) / o.throughput * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		binary.LittleEndian.PutUint64(value, uint64(now.UnixNano()))
		futures <- p.Send(ctx, &client.Record{Topic: o.topic, Partition: client.AnyPartition, Value: value})
	}
	close(futures)
	wg.Wait()
	return acked, firstErr
}

// e2eReceive polls until every acknowledged record (the count comes on
// sent once the producer is done) has arrived, timing each by its stamp.
// It returns the producer's outcome if it got it.
func e2eReceive(ctx context.Context, cons *client.Consumer, idle time.Duration, stats *perfStats, sent <-chan e2eSent) (int64, *e2eSent, error) {
	var received int64
	var outcome *e2eSent
	last := time.Now()
	for outcome == nil || received < outcome.acked {
		if outcome == nil {
			select {
			case out := <-sent:
				outcome = &out
				last = time.Now() // the idle clock starts at the last send
				continue
			default:
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		recs, err := cons.Poll(pctx)
		cancel()
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return received, outcome, fmt.Errorf("interrupted after %d records", received)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				return received, outcome, err
			}
			if outcome != nil && now.Sub(last) > idle {
				return received, outcome, fmt.Errorf("only %d of %d acknowledged records arrived: none for --consumer-timeout %s", received, outcome.acked, idle)
			}
			continue
		}
		last = now
		for i := range recs {
			v := recs[i].Value
			if len(v) < e2eStampSize {
				continue // not ours
			}
			sentAt := time.Unix(0, int64(binary.LittleEndian.Uint64(v)))
			stats.record(now.Sub(sentAt), len(v), nil)
			received++
		}
	}
	return received, outcome, nil
}
