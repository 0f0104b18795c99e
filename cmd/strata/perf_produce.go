package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

type perfProduceOptions struct {
	producerFlags
	topic      string
	numRecords int64
	recordSize int
	throughput float64
	interval   time.Duration
}

func newPerfProduceCmd(g *globalOptions) *cobra.Command {
	var o perfProduceOptions
	cmd := &cobra.Command{
		Use:   "produce --topic T --num-records N --record-size B",
		Short: "Produce N records of B bytes as fast as allowed; print throughput and latency",
		Long: `Produce --num-records records of --record-size random bytes (no key, sticky
partitioning) to an existing topic, like kafka-producer-perf-test: a progress
line every --reporting-interval, then the totals — records/s, MB/s (MiB) and
the send-to-acknowledgement latency avg / p50 / p95 / p99 / p99.9 / max.
--throughput caps the rate in records/s (-1: no cap). With --output json the
totals are one JSON object on stdout and progress goes to stderr. Exit 1 if
any record failed (the first error is named).`,
		Example: `  strata perf produce --topic bench --num-records 1000000 --record-size 1024
  strata perf produce --topic bench --num-records 100000 --record-size 100 --throughput 10000 --acks 1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return runPerfProduce(ctx, cmd, g, &o)
		},
	}
	o.producerFlags.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.topic, "topic", "", "topic to produce to (must exist)")
	f.Int64Var(&o.numRecords, "num-records", 0, "number of records to produce")
	f.IntVar(&o.recordSize, "record-size", 0, "bytes per record value")
	f.Float64Var(&o.throughput, "throughput", -1, "cap in records/s (-1: as fast as possible)")
	f.DurationVar(&o.interval, "reporting-interval", 5*time.Second, "how often to print a progress line")
	return cmd
}

// perfResult is the totals (the --output json answer).
type perfResult struct {
	Records       int64       `json:"records"`
	Errors        int64       `json:"errors"`
	Seconds       float64     `json:"seconds"`
	RecordsPerSec float64     `json:"records_per_sec"`
	MBPerSec      float64     `json:"mb_per_sec"`
	LatencyMs     perfLatency `json:"latency_ms"`
}

type perfLatency struct {
	Avg  float64 `json:"avg"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// perfStats adds up acknowledgements: totals, a window for progress lines,
// and a sample of latencies (at most maxSamples, evenly spread) for the
// percentiles, as kafka-producer-perf-test does.
type perfStats struct {
	mu          sync.Mutex
	start       time.Time
	sampleEvery int64
	samples     []float64
	count, errs int64
	bytes       int64
	latSum      float64
	latMax      float64
	firstErr    error
	w           struct {
		start          time.Time
		count, bytes   int64
		latSum, latMax float64
	}
}

const perfMaxSamples = 500_000

func newPerfStats(n int64) *perfStats {
	s := &perfStats{start: time.Now(), sampleEvery: max(1, n/perfMaxSamples)}
	s.w.start = s.start
	return s
}

func (s *perfStats) record(iter int64, lat time.Duration, size int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	ms := float64(lat) / float64(time.Millisecond)
	s.count++
	s.bytes += int64(size)
	s.latSum += ms
	s.latMax = max(s.latMax, ms)
	s.w.count++
	s.w.bytes += int64(size)
	s.w.latSum += ms
	s.w.latMax = max(s.w.latMax, ms)
	if iter%s.sampleEvery == 0 {
		s.samples = append(s.samples, ms)
	}
}

// progress prints the window's line and starts a new window.
func (s *perfStats) progress(w io.Writer) {
	s.mu.Lock()
	now := time.Now()
	el := now.Sub(s.w.start).Seconds()
	c, b, sum, mx := s.w.count, s.w.bytes, s.w.latSum, s.w.latMax
	s.w.start, s.w.count, s.w.bytes, s.w.latSum, s.w.latMax = now, 0, 0, 0, 0
	s.mu.Unlock()
	avg := 0.0
	if c > 0 {
		avg = sum / float64(c)
	}
	fmt.Fprintf(w, "%d records sent, %.1f records/sec (%.2f MB/sec), %.1f ms avg latency, %.1f ms max latency.\n",
		c, float64(c)/el, float64(b)/el/(1<<20), avg, mx)
}

func (s *perfStats) result(end time.Time) perfResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	el := end.Sub(s.start).Seconds()
	r := perfResult{Records: s.count, Errors: s.errs, Seconds: el,
		RecordsPerSec: float64(s.count) / el, MBPerSec: float64(s.bytes) / el / (1 << 20)}
	if s.count > 0 {
		r.LatencyMs.Avg = s.latSum / float64(s.count)
	}
	r.LatencyMs.Max = s.latMax
	sorted := slices.Clone(s.samples)
	slices.Sort(sorted)
	pct := func(q float64) float64 {
		if len(sorted) == 0 {
			return 0
		}
		return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
	}
	r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.LatencyMs.P999 = pct(0.5), pct(0.95), pct(0.99), pct(0.999)
	return r
}

// ackGroup is the records of one batch (futures sharing a Done channel):
// one goroutine waits for the batch and times them all.
type ackGroup struct {
	mu      sync.Mutex
	done    bool
	at      time.Time
	err     error
	pending []perfPending
}

type perfPending struct {
	iter  int64
	start time.Time
}

func runPerfProduce(ctx context.Context, cmd *cobra.Command, g *globalOptions, o *perfProduceOptions) error {
	switch {
	case o.topic == "":
		return fmt.Errorf("%w: --topic is required", errUsage)
	case o.numRecords <= 0:
		return fmt.Errorf("%w: --num-records must be positive, got %d", errUsage, o.numRecords)
	case o.recordSize <= 0:
		return fmt.Errorf("%w: --record-size must be positive, got %d", errUsage, o.recordSize)
	case o.throughput == 0 || o.throughput < -1:
		return fmt.Errorf("%w: --throughput must be positive or -1 (no cap), got %v", errUsage, o.throughput)
	case o.interval <= 0:
		return fmt.Errorf("%w: --reporting-interval must be positive", errUsage)
	}
	cfg, err := o.config(g)
	if err != nil {
		return err
	}
	c, p, err := g.producer(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	defer p.Close(context.Background())

	value := make([]byte, o.recordSize)
	for i := range value {
		value[i] = 'A' + byte(rand.IntN(26))
	}
	progressOut := cmd.OutOrStdout()
	if g.output == "json" {
		progressOut = cmd.ErrOrStderr()
	}

	stats := newPerfStats(o.numRecords)
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(o.interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				stats.progress(progressOut)
			case <-stopProgress:
				return
			}
		}
	}()

	var waiters sync.WaitGroup
	groups := map[<-chan struct{}]*ackGroup{}
	sent := int64(0)
send:
	for ; sent < o.numRecords && ctx.Err() == nil; sent++ {
		if o.throughput > 0 {
			due := stats.start.Add(time.Duration(float64(sent) / o.throughput * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				time.Sleep(d)
			}
		}
		start := time.Now()
		f := p.Send(ctx, &client.Record{Topic: o.topic, Partition: client.AnyPartition, Value: value})
		done := f.Done()
		select {
		case <-done: // failed at once (or acknowledged already)
			_, err := f.Wait(ctx)
			stats.record(sent, time.Since(start), o.recordSize, err)
			if err != nil && sent == 0 {
				sent++
				break send // the first record failed: no such topic, no cluster
			}
			continue
		default:
		}
		grp := groups[done]
		if grp == nil {
			if len(groups) >= 1024 {
				for ch, old := range groups {
					old.mu.Lock()
					if old.done {
						delete(groups, ch)
					}
					old.mu.Unlock()
				}
			}
			grp = &ackGroup{}
			groups[done] = grp
			waiters.Add(1)
			go func() {
				defer waiters.Done()
				_, err := f.Wait(context.Background())
				at := time.Now()
				grp.mu.Lock()
				grp.done, grp.at, grp.err = true, at, err
				pend := grp.pending
				grp.pending = nil
				grp.mu.Unlock()
				for _, pp := range pend {
					stats.record(pp.iter, at.Sub(pp.start), o.recordSize, err)
				}
			}()
		}
		grp.mu.Lock()
		if grp.done {
			grp.mu.Unlock()
			stats.record(sent, grp.at.Sub(start), o.recordSize, grp.err)
		} else {
			grp.pending = append(grp.pending, perfPending{sent, start})
			grp.mu.Unlock()
		}
	}
	if err := p.Flush(context.Background()); err != nil {
		return err
	}
	waiters.Wait()
	end := time.Now()
	close(stopProgress)
	<-progressDone
	r := stats.result(end)

	w := cmd.OutOrStdout()
	if g.output == "json" {
		if err := g.print(w, r, nil); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "%d records sent, %.1f records/sec (%.2f MB/sec), %.2f ms avg latency, %.2f ms max latency, %.2f ms 50th, %.2f ms 95th, %.2f ms 99th, %.2f ms 99.9th.\n",
			r.Records, r.RecordsPerSec, r.MBPerSec, r.LatencyMs.Avg, r.LatencyMs.Max, r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.LatencyMs.P999)
	}
	if r.Errors > 0 {
		return fmt.Errorf("%d of %d records failed; the first: %w", r.Errors, sent, stats.firstErr)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted after %d records: %w", sent, ctx.Err())
	}
	return nil
}
