package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

type consumeOptions struct {
	fromBeginning bool
	offset        string
	timestamp     string
	partition     int32
	maxMessages   int64
	idle          time.Duration
	printKey      bool
	printOffset   bool
	group         string
}

// newConsumeCmd is `strata consume`. Its --timeout is the idle timeout of
// kafka-console-consumer's --timeout-ms, as the CLI contract words it: a
// local flag of that name shadows the global (persistent) --timeout for this
// command only, and the client's request timeout keeps its default.
func newConsumeCmd(g *globalOptions) *cobra.Command {
	var o consumeOptions
	cmd := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print a topic's records, one value per line",
		Long: `Print the records of a topic (every partition, or --partition P), one value
per line, like kafka-console-consumer.

Where it starts: new records only (the partitions' ends when it starts) by
default; --from-beginning, --offset O (with --partition; also earliest or
latest) or --timestamp T (RFC 3339, or milliseconds since the Unix epoch:
the first record at or after it) say otherwise.

It exits 0 after --max-messages records, once no record has arrived for
--timeout (for this command --timeout is that idle timeout; 0, the default,
waits forever), or on Ctrl-C, printing how many records it processed to
stderr. An --offset outside the partition's log exits 1 naming the range.

--print-offset prefixes each line with Partition:P<TAB>Offset:O<TAB>;
--print-key with the key and a tab (null for a null key). With --output json
each record is one JSON object per line: topic, partition, offset,
timestamp (ms), key, value, headers (bytes as UTF-8 strings, invalid
sequences replaced; null for null).

With --group G it reads as a member of consumer group G instead: the
group's coordinator assigns it a share of the topic's partitions (all of them
if it is the only member; run several to split the records between them),
each partition starting at the group's committed offset, or where
--from-beginning / the default (the end) says when the group has none. It
commits the offsets of the records it printed every 5 s, before it gives a
partition up and when it exits, so the next member resumes after them.
--partition, --offset and --timestamp do not go with --group (the group
decides the partitions and offsets; move them with strata groups
reset-offsets).`,
		Example: `  strata consume orders --from-beginning --max-messages 10
  strata consume orders --partition 2 --offset 1500 --print-offset
  strata consume orders --timestamp 2026-11-21T09:00:00Z --timeout 5s --print-key
  strata consume orders --group billing --from-beginning`,
		Args: oneTopicArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runConsume(ctx, cmd, g, &o, args[0])
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.fromBeginning, "from-beginning", false, "start at the beginning of the log")
	f.StringVar(&o.offset, "offset", "", "start at this offset of --partition (a number, earliest or latest)")
	f.StringVar(&o.timestamp, "timestamp", "", "start at the first record at or after this time (RFC 3339 or Unix ms)")
	f.Int32Var(&o.partition, "partition", -1, "read only this partition (-1: every partition)")
	f.Int64Var(&o.maxMessages, "max-messages", 0, "exit after this many records (0: no limit)")
	f.DurationVar(&o.idle, "timeout", 0, "exit once no record has arrived for this long (0: wait forever)")
	f.BoolVar(&o.printKey, "print-key", false, "print each record's key and a tab before its value")
	f.BoolVar(&o.printOffset, "print-offset", false, "print each record's partition and offset before it")
	f.StringVar(&o.group, "group", "", "read as a member of this consumer group (partitions and offsets from the group; commits what it prints)")
	return cmd
}

// oneTopicArg wants exactly one positional argument, the topic; anything
// else is bad usage (exit 2).
func oneTopicArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: %s takes one TOPIC, got %d arguments %q (usage: %s)", errUsage, cmd.CommandPath(), len(args), args, cmd.UseLine())
	}
	return nil
}

// cmdContext is the command's context, or Background when run without one.
func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// consumeStart is where the consumer starts each partition.
type consumeStart struct {
	reset  string // ConsumerConfig.AutoOffsetReset
	offset int64  // >= 0: Seek there
	ts     time.Time
	hasTS  bool
	begin  bool // SeekToBeginning
}

func (o *consumeOptions) start() (consumeStart, error) {
	set := 0
	for _, b := range []bool{o.fromBeginning, o.offset != "", o.timestamp != ""} {
		if b {
			set++
		}
	}
	if set > 1 {
		return consumeStart{}, fmt.Errorf("%w: --from-beginning, --offset and --timestamp exclude each other: pick one", errUsage)
	}
	if o.group != "" {
		switch {
		case strings.TrimSpace(o.group) == "":
			return consumeStart{}, fmt.Errorf("%w: --group is blank: name the consumer group", errUsage)
		case o.partition >= 0:
			return consumeStart{}, fmt.Errorf("%w: --partition does not go with --group: the group's coordinator assigns the partitions", errUsage)
		case o.offset != "":
			return consumeStart{}, fmt.Errorf("%w: --offset does not go with --group: a group starts at its committed offsets (move them with strata groups reset-offsets)", errUsage)
		case o.timestamp != "":
			return consumeStart{}, fmt.Errorf("%w: --timestamp does not go with --group: a group starts at its committed offsets (strata groups reset-offsets --to-datetime moves them)", errUsage)
		}
	}
	if o.maxMessages < 0 {
		return consumeStart{}, fmt.Errorf("%w: --max-messages must be 0 (no limit) or positive, got %d", errUsage, o.maxMessages)
	}
	if o.idle < 0 {
		return consumeStart{}, fmt.Errorf("%w: --timeout must be 0 (wait forever) or positive, got %s", errUsage, o.idle)
	}
	if o.partition < -1 {
		return consumeStart{}, fmt.Errorf("%w: --partition must be a partition number, got %d", errUsage, o.partition)
	}
	s := consumeStart{reset: client.OffsetResetLatest, offset: -1}
	switch {
	case o.fromBeginning:
		s.reset, s.begin = client.OffsetResetEarliest, true
	case o.offset == "earliest":
		s.reset, s.begin = client.OffsetResetEarliest, true
	case o.offset == "latest":
	case o.offset != "":
		n, err := strconv.ParseInt(o.offset, 10, 64)
		if err != nil || n < 0 {
			return s, fmt.Errorf("%w: --offset %q: want a non-negative offset, earliest or latest", errUsage, o.offset)
		}
		if o.partition < 0 {
			return s, fmt.Errorf("%w: --offset %d needs --partition (an offset means something in one partition only)", errUsage, n)
		}
		s.reset, s.offset = client.OffsetResetNone, n
	case o.timestamp != "":
		t, err := parseTimestamp(o.timestamp)
		if err != nil {
			return s, fmt.Errorf("%w: --timestamp %q: want RFC 3339 (2026-11-21T09:00:00Z) or milliseconds since the Unix epoch", errUsage, o.timestamp)
		}
		s.ts, s.hasTS = t, true
	}
	return s, nil
}

func parseTimestamp(s string) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 {
		return time.UnixMilli(ms), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// openConsumer checks the topic, assigns the partitions and positions them.
// cfg's AutoOffsetReset is s's.
func openConsumer(ctx context.Context, c *client.Client, topic string, partition int32, s consumeStart, cfg client.ConsumerConfig) (*client.Consumer, error) {
	m, err := c.RefreshMetadata(ctx)
	if err != nil {
		return nil, err
	}
	parts, ok := m.Topics[topic]
	if !ok {
		return nil, &client.Error{Code: pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION,
			Message: fmt.Sprintf("topic %q does not exist: check the name (strata topics list) or create it (strata topics create %s)", topic, topic)}
	}
	var tps []client.TopicPartition
	if partition >= 0 {
		if int(partition) >= len(parts) {
			return nil, &client.Error{Code: pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION,
				Message: fmt.Sprintf("topic %q has partitions 0 to %d, no partition %d", topic, len(parts)-1, partition)}
		}
		tps = append(tps, client.TopicPartition{Topic: topic, Partition: partition})
	} else {
		for i := range parts {
			tps = append(tps, client.TopicPartition{Topic: topic, Partition: int32(i)})
		}
	}
	cfg.AutoOffsetReset = s.reset
	cons, err := client.NewConsumer(c, cfg)
	if err != nil {
		return nil, err
	}
	err = func() error {
		if err := cons.Assign(tps...); err != nil {
			return err
		}
		for _, tp := range tps {
			switch {
			case s.begin:
				err = cons.SeekToBeginning(tp)
			case s.offset >= 0:
				err = cons.Seek(tp, s.offset)
			case s.hasTS:
				err = cons.SeekToTimestamp(ctx, tp, s.ts)
			default:
				err = cons.SeekToEnd(tp)
			}
			if err != nil {
				return err
			}
			// Look the position up now, so "the end" is the end when the
			// command started.
			if s.offset < 0 {
				if _, err := cons.Position(ctx, tp); err != nil {
					return err
				}
			}
		}
		return nil
	}()
	if err != nil {
		cons.Close()
		return nil, err
	}
	return cons, nil
}

func runConsume(ctx context.Context, cmd *cobra.Command, g *globalOptions, o *consumeOptions, topic string) error {
	s, err := o.start()
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	if o.group != "" {
		return runGroupConsume(ctx, cmd, g, o, c, topic, s.reset)
	}
	setup, cancel := context.WithTimeout(ctx, g.timeout)
	cons, err := openConsumer(setup, c, topic, o.partition, s, client.ConsumerConfig{})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted
		}
		return err
	}
	defer cons.Close()

	w := bufio.NewWriter(cmd.OutOrStdout())
	n, err := printRecords(ctx, w, g, o, cons.Poll, nil, nil)
	w.Flush()
	fmt.Fprintf(cmd.ErrOrStderr(), "Processed a total of %d messages\n", n)
	return err
}

// printRecords polls and prints records until --max-messages are printed,
// the idle --timeout passes or ctx ends (neither is an error). printed runs
// after each record is written, tick after each poll's records are flushed;
// either may be nil. It answers how many records it printed.
func printRecords(ctx context.Context, w *bufio.Writer, g *globalOptions, o *consumeOptions,
	poll func(context.Context) ([]client.Record, error), printed func(*client.Record), tick func()) (int64, error) {
	var n int64
	for o.maxMessages == 0 || n < o.maxMessages {
		pctx, pcancel := ctx, context.CancelFunc(func() {})
		if o.idle > 0 {
			pctx, pcancel = context.WithTimeout(ctx, o.idle)
		}
		recs, err := poll(pctx)
		pcancel()
		if err != nil {
			if ctx.Err() != nil || (o.idle > 0 && errors.Is(err, context.DeadlineExceeded)) {
				return n, nil // interrupted, or idle for --timeout
			}
			return n, err
		}
		for i := range recs {
			if err := writeRecord(w, g.output == "json", o, &recs[i]); err != nil {
				return n, err
			}
			n++
			if printed != nil {
				printed(&recs[i])
			}
			if o.maxMessages > 0 && n == o.maxMessages {
				break
			}
		}
		if err := w.Flush(); err != nil {
			return n, err
		}
		if tick != nil {
			tick()
		}
	}
	return n, nil
}

// consumedRecord is a record in --output json.
type consumedRecord struct {
	Topic     string           `json:"topic"`
	Partition int32            `json:"partition"`
	Offset    int64            `json:"offset"`
	Timestamp int64            `json:"timestamp"`
	Key       *string          `json:"key"`
	Value     *string          `json:"value"`
	Headers   []consumedHeader `json:"headers,omitempty"`
}

type consumedHeader struct {
	Key   string  `json:"key"`
	Value *string `json:"value"`
}

func nullable(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func writeRecord(w io.Writer, asJSON bool, o *consumeOptions, r *client.Record) error {
	if asJSON {
		cr := consumedRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(),
			Key: nullable(r.Key), Value: nullable(r.Value)}
		for _, h := range r.Headers {
			cr.Headers = append(cr.Headers, consumedHeader{Key: h.Key, Value: nullable(h.Value)})
		}
		b, err := json.Marshal(cr)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	var sb strings.Builder
	if o.printOffset {
		fmt.Fprintf(&sb, "Partition:%d\tOffset:%d\t", r.Partition, r.Offset)
	}
	if o.printKey {
		if r.Key == nil {
			sb.WriteString("null")
		} else {
			sb.Write(r.Key)
		}
		sb.WriteByte('\t')
	}
	if r.Value == nil {
		sb.WriteString("null")
	} else {
		sb.Write(r.Value)
	}
	sb.WriteByte('\n')
	_, err := io.WriteString(w, sb.String())
	return err
}

// groupCommitInterval is how often consume --group commits what it printed.
const groupCommitInterval = 5 * time.Second

// printedOffsets are the positions after the records consume --group
// printed, per partition: what it commits. OnRevoked (on the group's
// heartbeat goroutine) takes the given-up partitions out.
type printedOffsets struct {
	mu   sync.Mutex
	next map[client.TopicPartition]int64
}

func (p *printedOffsets) take(tps []client.TopicPartition) map[client.TopicPartition]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[client.TopicPartition]int64{}
	for _, tp := range tps {
		if off, ok := p.next[tp]; ok {
			out[tp] = off
			delete(p.next, tp)
		}
	}
	return out
}

// commit commits the printed offsets of the partitions the member still owns.
func (p *printedOffsets) commit(ctx context.Context, gc *client.GroupConsumer) error {
	offs := p.take(gc.Assignment())
	if len(offs) == 0 {
		return nil
	}
	if err := gc.Commit(ctx, offs); err != nil {
		p.mu.Lock()
		for tp, off := range offs { // keep them for the next try unless newer ones came
			if _, ok := p.next[tp]; !ok {
				p.next[tp] = off
			}
		}
		p.mu.Unlock()
		return err
	}
	return nil
}

// runGroupConsume is consume --group: a GroupConsumer subscribed to topic
// that commits the offsets of the records it printed (not of records a
// Poll returned past --max-messages): every groupCommitInterval, before
// giving partitions up, and on exit.
func runGroupConsume(ctx context.Context, cmd *cobra.Command, g *globalOptions, o *consumeOptions, c *client.Client, topic, reset string) error {
	setup, cancel := context.WithTimeout(ctx, g.timeout)
	m, err := c.RefreshMetadata(setup)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if _, ok := m.Topics[topic]; !ok {
		return &client.Error{Code: pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION,
			Message: fmt.Sprintf("topic %q does not exist: check the name (strata topics list) or create it (strata topics create %s)", topic, topic)}
	}
	printed := &printedOffsets{next: map[client.TopicPartition]int64{}}
	var member atomic.Pointer[client.GroupConsumer] // for OnRevoked, which runs on the member's goroutine
	gc, err := client.NewGroupConsumer(c, client.GroupConsumerConfig{
		Group: o.group, Topics: []string{topic}, ClientID: "strata-consume", DisableAutoCommit: true,
		OnRevoked: func(ctx context.Context, tps []client.TopicPartition) {
			gc := member.Load()
			if offs := printed.take(tps); len(offs) > 0 && gc != nil {
				if err := gc.Commit(ctx, offs); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "strata: committing the offsets of partitions given up: %v\n", err)
				}
			}
		},
		OnLost:   func(_ context.Context, tps []client.TopicPartition) { printed.take(tps) },
		Consumer: client.ConsumerConfig{AutoOffsetReset: reset},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	member.Store(gc)

	w := bufio.NewWriter(cmd.OutOrStdout())
	lastCommit := time.Now()
	n, loopErr := printRecords(ctx, w, g, o, gc.Poll, func(r *client.Record) {
		printed.mu.Lock()
		printed.next[client.TopicPartition{Topic: r.Topic, Partition: r.Partition}] = r.Offset + 1
		printed.mu.Unlock()
	}, func() {
		if time.Since(lastCommit) < groupCommitInterval {
			return
		}
		lastCommit = time.Now()
		cctx, ccancel := context.WithTimeout(ctx, g.timeout)
		if err := printed.commit(cctx, gc); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "strata: committing offsets (trying again later): %v\n", err)
		}
		ccancel()
	})
	w.Flush()
	fmt.Fprintf(cmd.ErrOrStderr(), "Processed a total of %d messages\n", n)
	// Commit and leave even after Ctrl-C (the command's context is done
	// then): bounded by --timeout, 10 s at most.
	cctx, ccancel := context.WithTimeout(context.Background(), min(g.timeout, 10*time.Second))
	defer ccancel()
	commitErr := printed.commit(cctx, gc)
	closeErr := gc.Close()
	if loopErr != nil {
		return loopErr
	}
	if commitErr != nil {
		return fmt.Errorf("committing the offsets of the printed records: %w", commitErr)
	}
	return closeErr
}
