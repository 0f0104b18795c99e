package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

type perfConsumeOptions struct {
	topic             string
	numRecords        int64
	idle              time.Duration
	partitionMaxBytes int32
	fetchMaxBytes     int32
	cpuProfile        string
}

// perfConsumeResult is what `strata perf consume` reports (--output json
// keeps these names).
type perfConsumeResult struct {
	Topic         string  `json:"topic"`
	Records       int64   `json:"records"`
	Bytes         int64   `json:"bytes"` // keys and values
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"` // MiB (2^20 bytes) per second, as Kafka's perf tools
	FirstRecordMs float64 `json:"first_record_ms"`
}

// newPerfConsumeCmd is `strata perf consume`, like kafka-consumer-perf-test:
// it reads --num-records from the beginning of every partition of --topic.
// Its --timeout is the longest wait between two records (the perf test's
// --timeout), shadowing the global flag as in `strata consume`.
func newPerfConsumeCmd(g *globalOptions) *cobra.Command {
	var o perfConsumeOptions
	cmd := &cobra.Command{
		Use:   "consume --topic T --num-records N",
		Short: "Measure consumer throughput: records/s, MB/s and time to the first record",
		Long: `Read --num-records records from the beginning of every partition of --topic
with the Go client's Consumer (pipelined fetch sessions, one per leader
broker) and print records/s, MB/s (keys and values, MiB per second) and the
time from start to the first record, like kafka-consumer-perf-test.

The clock starts once the partitions are assigned (metadata is looked up
before). If --timeout passes without a record before --num-records have
been read, it prints what it measured and exits 1. --cpuprofile writes a CPU
profile of this process while it reads.`,
		Example: `  strata perf consume --topic bench --num-records 1000000
  strata perf consume --topic bench --num-records 100000 --output json`,
		Args: noArgsPerfConsume,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runPerfConsume(ctx, cmd, g, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.topic, "topic", "", "topic to read (required)")
	f.Int64Var(&o.numRecords, "num-records", 0, "records to read (required)")
	f.DurationVar(&o.idle, "timeout", 10*time.Second, "give up when no record has arrived for this long")
	f.Int32Var(&o.partitionMaxBytes, "partition-max-bytes", 0, "max.partition.fetch.bytes (0: the client default, 1 MiB)")
	f.Int32Var(&o.fetchMaxBytes, "fetch-max-bytes", 0, "fetch.max.bytes (0: the client default, 50 MiB)")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the client to this file while it reads (go tool pprof)")
	return cmd
}

func noArgsPerfConsume(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: %s takes no arguments, got %q (the topic goes in --topic)", errUsage, cmd.CommandPath(), args)
	}
	return nil
}

func runPerfConsume(ctx context.Context, cmd *cobra.Command, g *globalOptions, o *perfConsumeOptions) error {
	switch {
	case o.topic == "":
		return fmt.Errorf("%w: --topic is required", errUsage)
	case o.numRecords <= 0:
		return fmt.Errorf("%w: --num-records must be positive, got %d", errUsage, o.numRecords)
	case o.idle <= 0:
		return fmt.Errorf("%w: --timeout must be positive, got %s", errUsage, o.idle)
	case o.partitionMaxBytes < 0 || o.fetchMaxBytes < 0:
		return fmt.Errorf("%w: --partition-max-bytes and --fetch-max-bytes must not be negative", errUsage)
	}
	if err := g.validate(); err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	setup, cancel := context.WithTimeout(ctx, g.timeout)
	cons, err := openConsumer(setup, c, o.topic, -1, consumeStart{reset: client.OffsetResetEarliest, offset: -1, begin: true},
		client.ConsumerConfig{PartitionMaxBytes: o.partitionMaxBytes, FetchMaxBytes: o.fetchMaxBytes})
	cancel()
	if err != nil {
		return err
	}
	defer cons.Close()
	stopProfile, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	// openConsumer looked the beginnings up; Poll's first fetch is the
	// first network round trip timed.
	res, err := perfConsume(ctx, cons, o)
	res.Topic = o.topic
	if perr := g.print(cmd.OutOrStdout(), res, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "RECORDS\tMB\tSECONDS\tRECORDS/S\tMB/S\tFIRST RECORD MS")
		fmt.Fprintf(tw, "%d\t%.2f\t%.3f\t%.1f\t%.2f\t%.1f\n", res.Records, float64(res.Bytes)/(1<<20), res.Seconds, res.RecordsPerSec, res.MBPerSec, res.FirstRecordMs)
	}); perr != nil {
		return perr
	}
	return err
}

// perfConsume polls until o.numRecords records came and measures.
func perfConsume(ctx context.Context, cons *client.Consumer, o *perfConsumeOptions) (perfConsumeResult, error) {
	var res perfConsumeResult
	start := time.Now()
	last := start // the last record's arrival: an idle --timeout at the end is not counted
	var err error
	for res.Records < o.numRecords {
		pctx, cancel := context.WithTimeout(ctx, o.idle)
		var recs []client.Record
		recs, err = cons.Poll(pctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("interrupted after %d of %d records", res.Records, o.numRecords)
			} else if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("only %d of %d records arrived: none for --timeout %s (does %s hold that many records?)", res.Records, o.numRecords, o.idle, o.topic)
			}
			break
		}
		last = time.Now()
		if res.Records == 0 {
			res.FirstRecordMs = float64(last.Sub(start).Microseconds()) / 1000
		}
		for i := range recs {
			if res.Records == o.numRecords {
				break
			}
			res.Records++
			res.Bytes += int64(len(recs[i].Key) + len(recs[i].Value))
		}
	}
	res.Seconds = last.Sub(start).Seconds()
	if res.Seconds > 0 {
		res.RecordsPerSec = float64(res.Records) / res.Seconds
		res.MBPerSec = float64(res.Bytes) / (1 << 20) / res.Seconds
	}
	return res, err
}
