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
	topic        string
	numRecords   int64
	recordSize   int
	throughput   float64
	interval     time.Duration
	producers    int
	duration     time.Duration
	maxInFlight  int
	bufferMemory int
	cpuProfile   string
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
--throughput caps the rate in records/s (-1: no cap): with a cap the
percentiles are the latency at a fixed rate. --duration stops sending after
that long (with or without --num-records). --producers runs that many
independent producers (each with its own connections), sharing the records
and the rate. --max-in-flight and --buffer-memory bound what one producer has
unacknowledged (requests per broker; bytes of records, about 41 bytes more
than the value each). With --output json the totals are one JSON object on
stdout and progress goes to stderr. Exit 1 if any record failed (the first
error is named). --cpuprofile writes a CPU profile of this process (the
client) while it sends, for go tool pprof.`,
		Example: `  strata perf produce --topic bench --num-records 1000000 --record-size 1024
  strata perf produce --topic bench --num-records 100000 --record-size 100 --throughput 10000 --acks 1
  strata perf produce --topic bench --duration 10s --record-size 1024 --producers 4
  strata perf produce --topic bench --num-records 300000 --record-size 1024 --cpuprofile client.pprof
  go tool pprof -top strata client.pprof`,
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
	f.Int64Var(&o.numRecords, "num-records", 0, "number of records to produce (0 with --duration: no count limit)")
	f.IntVar(&o.recordSize, "record-size", 0, "bytes per record value")
	f.Float64Var(&o.throughput, "throughput", -1, "cap in records/s, all producers together (-1: as fast as possible)")
	f.DurationVar(&o.interval, "reporting-interval", 5*time.Second, "how often to print a progress line")
	f.IntVar(&o.producers, "producers", 1, "independent producers sending in parallel")
	f.DurationVar(&o.duration, "duration", 0, "stop sending after this long (0: when --num-records are sent)")
	f.IntVar(&o.maxInFlight, "max-in-flight", 0, "Produce requests outstanding to one broker, per producer (0: the client default, 5)")
	f.IntVar(&o.bufferMemory, "buffer-memory", 0, "bytes of unacknowledged records one producer holds before Send waits (0: the client default, 32 MiB)")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the client to this file while it sends (go tool pprof)")
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
// and a uniform sample of latencies (reservoir sampling, at most
// perfMaxSamples) for the percentiles.
type perfStats struct {
	mu       sync.Mutex
	start    time.Time
	samples  []float64
	seen     int64 // latencies offered to the sample
	rng      *rand.Rand
	count    int64
	errs     int64
	bytes    int64
	latSum   float64
	latMax   float64
	firstErr error
	w        struct {
		start          time.Time
		count, bytes   int64
		latSum, latMax float64
	}
}

const perfMaxSamples = 500_000

func newPerfStats() *perfStats {
	s := &perfStats{start: time.Now(), rng: rand.New(rand.NewPCG(1, 2))}
	s.w.start = s.start
	return s
}

func (s *perfStats) record(lat time.Duration, size int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(lat, size, err)
}

// recordBatch records the records of one batch, sent at starts and
// acknowledged (or failed) together at at: one lock for the batch rather
// than one per record.
func (s *perfStats) recordBatch(at time.Time, starts []time.Time, size int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range starts {
		s.recordLocked(at.Sub(st), size, err)
	}
}

func (s *perfStats) recordLocked(lat time.Duration, size int, err error) {
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
	s.sampleLocked(ms)
}

// sampleLocked offers one latency to the reservoir.
func (s *perfStats) sampleLocked(ms float64) {
	s.seen++
	if len(s.samples) < perfMaxSamples {
		s.samples = append(s.samples, ms)
		return
	}
	if j := s.rng.Int64N(s.seen); j < perfMaxSamples {
		s.samples[j] = ms
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
	r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.LatencyMs.P999 = percentiles(s.samples)
	return r
}

// percentiles sorts a copy of samples and reads p50, p95, p99 and p99.9
// (nearest rank; zeros when empty).
func percentiles(samples []float64) (p50, p95, p99, p999 float64) {
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	pct := func(q float64) float64 {
		if len(sorted) == 0 {
			return 0
		}
		return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
	}
	return pct(0.5), pct(0.95), pct(0.99), pct(0.999)
}

// ackGroup is the records of one batch (futures sharing a Done channel):
// one goroutine waits for the batch and times them all.
type ackGroup struct {
	mu      sync.Mutex
	done    bool
	at      time.Time
	err     error
	pending []time.Time // send times
}

// ackGroups finds a record's ackGroup by its batch's Done channel. Groups
// whose batch is acknowledged are pruned once the map has doubled since the
// last prune, so a prune costs O(1) per group however many batches are in
// flight. (Pruning at a fixed size scanned the whole map for every new
// batch once more than that many were unacknowledged — 32 MiB of 16 KiB
// batches is 2048 — and took a third of the client's CPU.)
type ackGroups struct {
	m       map[<-chan struct{}]*ackGroup
	pruneAt int
	scanned int // groups looked at by prunes (tests)
}

const ackGroupsMinPrune = 1024

func newAckGroups() *ackGroups {
	return &ackGroups{m: map[<-chan struct{}]*ackGroup{}, pruneAt: ackGroupsMinPrune}
}

// get returns done's group, making it (isNew) if there is none.
func (g *ackGroups) get(done <-chan struct{}) (grp *ackGroup, isNew bool) {
	if grp = g.m[done]; grp != nil {
		return grp, false
	}
	if len(g.m) >= g.pruneAt {
		for ch, old := range g.m {
			g.scanned++
			old.mu.Lock()
			if old.done {
				delete(g.m, ch)
			}
			old.mu.Unlock()
		}
		g.pruneAt = max(ackGroupsMinPrune, 2*len(g.m))
	}
	grp = &ackGroup{}
	g.m[done] = grp
	return grp, true
}

// validate checks the flags: bad ones are usage errors (exit 2).
func (o *perfProduceOptions) validate() error {
	switch {
	case o.topic == "":
		return fmt.Errorf("%w: --topic is required", errUsage)
	case o.numRecords < 0 || (o.numRecords == 0 && o.duration <= 0):
		return fmt.Errorf("%w: --num-records must be positive (or 0 with a --duration), got %d", errUsage, o.numRecords)
	case o.duration < 0:
		return fmt.Errorf("%w: --duration must not be negative, got %s", errUsage, o.duration)
	case o.recordSize <= 0:
		return fmt.Errorf("%w: --record-size must be positive, got %d", errUsage, o.recordSize)
	case o.throughput == 0 || o.throughput < -1:
		return fmt.Errorf("%w: --throughput must be positive or -1 (no cap), got %v", errUsage, o.throughput)
	case o.interval <= 0:
		return fmt.Errorf("%w: --reporting-interval must be positive", errUsage)
	case o.producers <= 0 || o.producers > 1024:
		return fmt.Errorf("%w: --producers must be 1 to 1024, got %d", errUsage, o.producers)
	case o.maxInFlight < 0 || o.bufferMemory < 0:
		return fmt.Errorf("%w: --max-in-flight and --buffer-memory must not be negative", errUsage)
	}
	return nil
}

func runPerfProduce(ctx context.Context, cmd *cobra.Command, g *globalOptions, o *perfProduceOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	cfg, err := o.config(g)
	if err != nil {
		return err
	}
	cfg.MaxInFlight, cfg.BufferMemory = o.maxInFlight, o.bufferMemory
	type opened struct {
		c *client.Client
		p *client.Producer
	}
	var ps []opened
	defer func() {
		for _, op := range ps {
			op.p.Close(context.Background())
			op.c.Close()
		}
	}()
	for range o.producers {
		c, p, err := g.producer(cfg)
		if err != nil {
			return err
		}
		ps = append(ps, opened{c, p})
	}

	value := make([]byte, o.recordSize)
	for i := range value {
		value[i] = 'A' + byte(rand.IntN(26))
	}
	progressOut := cmd.OutOrStdout()
	if g.output == "json" {
		progressOut = cmd.ErrOrStderr()
	}

	stopProfile, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	stats := newPerfStats()
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

	var deadline time.Time
	if o.duration > 0 {
		deadline = stats.start.Add(o.duration)
	}
	rate := o.throughput
	if rate > 0 {
		rate /= float64(o.producers)
	}
	var (
		wg      sync.WaitGroup
		sentMu  sync.Mutex
		sent    int64
		sendErr error
	)
	for k, op := range ps {
		quota := int64(0) // 0: no count limit
		if o.numRecords > 0 {
			quota = o.numRecords / int64(o.producers)
			if int64(k) < o.numRecords%int64(o.producers) {
				quota++
			}
			if quota == 0 {
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := perfSend(ctx, op.p, o.topic, value, stats, quota, rate, deadline)
			sentMu.Lock()
			sent += n
			if err != nil && sendErr == nil {
				sendErr = err
			}
			sentMu.Unlock()
		}()
	}
	wg.Wait()
	end := time.Now()
	close(stopProgress)
	<-progressDone
	r := stats.result(end)
	if sendErr != nil {
		return sendErr
	}

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

// perfSend is one producer's loop: quota records (0: no limit) until
// deadline (zero: none), at rate records/s (<= 0: no cap), each timed from
// Send to its acknowledgement. It returns what it sent once every record
// has its outcome; an error only for a flush that failed.
func perfSend(ctx context.Context, p *client.Producer, topic string, value []byte, stats *perfStats, quota int64, rate float64, deadline time.Time) (int64, error) {
	var waiters sync.WaitGroup
	groups := newAckGroups()
	size := len(value)
	begin := time.Now()
	sent := int64(0)
send:
	for ; (quota == 0 || sent < quota) && ctx.Err() == nil; sent++ {
		if rate > 0 {
			due := begin.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				time.Sleep(d)
			}
		}
		start := time.Now()
		if !deadline.IsZero() && !start.Before(deadline) {
			break
		}
		f := p.Send(ctx, &client.Record{Topic: topic, Partition: client.AnyPartition, Value: value})
		done := f.Done()
		select {
		case <-done: // failed at once (or acknowledged already)
			_, err := f.Wait(ctx)
			stats.record(time.Since(start), size, err)
			if err != nil && sent == 0 {
				sent++
				break send // the first record failed: no such topic, no cluster
			}
			continue
		default:
		}
		grp, isNew := groups.get(done)
		if isNew {
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
				stats.recordBatch(at, pend, size, err)
			}()
		}
		grp.mu.Lock()
		if grp.done {
			grp.mu.Unlock()
			stats.record(grp.at.Sub(start), size, grp.err)
		} else {
			grp.pending = append(grp.pending, start)
			grp.mu.Unlock()
		}
	}
	if err := p.Flush(context.Background()); err != nil {
		return sent, err
	}
	waiters.Wait()
	return sent, nil
}
