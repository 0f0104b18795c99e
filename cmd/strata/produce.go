package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/storage/record"
)

// producerFlags are the producer settings produce and perf produce share.
type producerFlags struct {
	acks            string
	compression     string
	batchSize       int
	linger          time.Duration
	deliveryTimeout time.Duration
	idempotence     bool
}

func (f *producerFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.acks, "acks", "all", "acknowledgement: all (every in-sync replica), 1 (the leader) or 0 (none)")
	fs.StringVar(&f.compression, "compression", "none", "batch compression: none, gzip, snappy, lz4 or zstd")
	fs.IntVar(&f.batchSize, "batch-size", 16<<10, "bytes at which a partition's batch is sent without lingering")
	fs.DurationVar(&f.linger, "linger", 5*time.Millisecond, "how long a batch that is not full waits for more records")
	fs.DurationVar(&f.deliveryTimeout, "delivery-timeout", 2*time.Minute, "how long a record may take to be acknowledged, retries included")
	fs.BoolVar(&f.idempotence, "idempotence", true, "idempotent producer: sequence numbers let several requests per partition be in flight while retries neither reorder nor duplicate; false: one request per partition at a time")
}

// config checks the flags (bad ones are usage errors, exit 2) and makes
// the producer configuration; Send blocks at most --timeout.
func (f *producerFlags) config(g *globalOptions) (client.ProducerConfig, error) {
	acks, err := client.ParseAcks(f.acks)
	if err != nil {
		return client.ProducerConfig{}, fmt.Errorf("%w: --%v", errUsage, err)
	}
	codec, err := record.ParseCodec(f.compression)
	if err != nil {
		return client.ProducerConfig{}, fmt.Errorf("%w: --compression %q: want none, gzip, snappy, lz4 or zstd", errUsage, f.compression)
	}
	if f.batchSize <= 0 {
		return client.ProducerConfig{}, fmt.Errorf("%w: --batch-size must be positive, got %d", errUsage, f.batchSize)
	}
	if f.linger < 0 || f.deliveryTimeout <= 0 {
		return client.ProducerConfig{}, fmt.Errorf("%w: --linger must be >= 0 and --delivery-timeout positive", errUsage)
	}
	linger := f.linger
	if linger == 0 {
		linger = -1 // the client's "no linger"
	}
	return client.ProducerConfig{Acks: acks, Codec: codec, BatchSize: f.batchSize, Linger: linger,
		DeliveryTimeout: f.deliveryTimeout, MaxBlock: g.timeout, DisableIdempotence: !f.idempotence}, nil
}

type produceOptions struct {
	producerFlags
	keySeparator string
	partition    int32
}

func newProduceCmd(g *globalOptions) *cobra.Command {
	var o produceOptions
	cmd := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Send one record per line of standard input",
		Long: `Send one record per line of standard input to TOPIC, like
kafka-console-producer. Without --key-separator the line is the value and the
record has no key; with it, the line is KEY SEP VALUE (split at the first SEP)
and a line without SEP is an error. Keyed records go to the partition Kafka's
clients would choose (murmur2 of the key), keyless ones to a sticky partition;
--partition sends every record to one partition.

Records are acknowledged per --acks (default all: every in-sync replica has
them); leader changes are retried through until --delivery-timeout. The exit
code is 0 only when every line was acknowledged; otherwise the first failure is
named (and no line after it is sent): 1 when the cluster refused or could not
take a record, 2 on bad usage. --timeout bounds waiting for the cluster's
metadata or for buffer space.`,
		Example: `  echo hello | strata produce demo
  printf 'user-1:login\nuser-2:logout\n' | strata produce demo --key-separator :
  strata produce demo --partition 0 --acks 1 < events.txt`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: produce takes one TOPIC, got %d arguments (usage: %s)", errUsage, len(args), cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return runProduce(ctx, cmd, g, &o, args[0])
		},
	}
	o.producerFlags.add(cmd)
	cmd.Flags().StringVar(&o.keySeparator, "key-separator", "", "split each line into KEY SEP VALUE at the first SEP (default: no key)")
	cmd.Flags().Int32Var(&o.partition, "partition", -1, "send every record to this partition (-1: chosen by key, or sticky)")
	return cmd
}

// pendingLine is a sent line whose outcome is not checked yet.
type pendingLine struct {
	line int
	f    *client.Future
}

// produceSummary is the --output json answer.
type produceSummary struct {
	Topic        string `json:"topic"`
	Acknowledged int    `json:"acknowledged"`
}

func runProduce(ctx context.Context, cmd *cobra.Command, g *globalOptions, o *produceOptions, topic string) error {
	cfg, err := o.config(g)
	if err != nil {
		return err
	}
	if o.partition < -1 {
		return fmt.Errorf("%w: --partition must be a partition number or -1, got %d", errUsage, o.partition)
	}
	c, p, err := g.producer(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	acked := 0
	var pending []pendingLine
	var firstErr error
	// check settles the lines whose outcome is known, in line order; with
	// wait it waits for all of them.
	check := func(wait bool) {
		for len(pending) > 0 && firstErr == nil {
			pl := pending[0]
			if !wait {
				select {
				case <-pl.f.Done():
				default:
					return
				}
			}
			if _, err := pl.f.Wait(context.Background()); err != nil {
				firstErr = fmt.Errorf("line %d not acknowledged: %w", pl.line, err)
				return
			}
			acked++
			pending = pending[1:]
		}
	}

	r := bufio.NewReaderSize(cmd.InOrStdin(), 64<<10)
	sep := []byte(o.keySeparator)
	for n := 1; firstErr == nil && ctx.Err() == nil; n++ {
		line, rerr := r.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			rec := &client.Record{Topic: topic, Partition: o.partition, Value: line}
			if len(sep) > 0 {
				k, v, ok := bytes.Cut(line, sep)
				if !ok {
					firstErr = fmt.Errorf("%w: line %d has no key separator %q (every line must be KEY%sVALUE with --key-separator)", errUsage, n, o.keySeparator, o.keySeparator)
					break
				}
				rec.Key, rec.Value = k, v
			}
			pending = append(pending, pendingLine{n, p.Send(ctx, rec)})
			check(false)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			firstErr = fmt.Errorf("reading standard input: %w", rerr)
		}
	}
	// Deliver what was sent (the producer retries through leader changes
	// up to --delivery-timeout), then report.
	fctx, cancel := context.WithTimeout(context.Background(), cfg.DeliveryTimeout+g.timeout)
	defer cancel()
	closeErr := p.Close(fctx)
	check(true)
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if firstErr == nil && closeErr != nil {
		firstErr = closeErr
	}
	if g.output == "json" {
		if err := g.print(cmd.OutOrStdout(), produceSummary{Topic: topic, Acknowledged: acked}, nil); err != nil {
			return err
		}
	}
	if firstErr != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "%d records acknowledged before the failure\n", acked)
		return firstErr // errUsage (a line without the separator) exits 2, the rest 1
	}
	return nil
}
