package main

import (
	"math/rand/v2"
	"slices"
	"time"
)

// result has the JSON shape of `strata perf produce --output json`.
type result struct {
	Records       int64   `json:"records"`
	Errors        int64   `json:"errors"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	LatencyMs     latency `json:"latency_ms"`
}

type latency struct {
	Avg  float64 `json:"avg"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

const maxSamples = 500_000

// stats is one goroutine's tally (no lock: its owner writes it; it is
// read after the owner is done). The latency sample is a reservoir.
type stats struct {
	count, errs, bytes int64
	sum, max           float64
	seen               int64
	samples            []float64
	rng                *rand.Rand
}

func newStats(seed uint64) *stats { return &stats{rng: rand.New(rand.NewPCG(seed, 7))} }

func (s *stats) add(lat time.Duration, size int) {
	ms := float64(lat) / float64(time.Millisecond)
	s.count++
	s.bytes += int64(size)
	s.sum += ms
	s.max = max(s.max, ms)
	s.seen++
	if len(s.samples) < maxSamples {
		s.samples = append(s.samples, ms)
	} else if j := s.rng.Int64N(s.seen); j < maxSamples {
		s.samples[j] = ms
	}
}

// merge adds up per-goroutine tallies over seconds (latency percentiles
// from the union of the samples, each weighted alike: fine while the
// tallies saw similar counts, as equal producers do).
func merge(seconds float64, all ...*stats) *result {
	r := &result{Seconds: seconds}
	var samples []float64
	var sum float64
	var bytes int64
	for _, s := range all {
		r.Records += s.count
		r.Errors += s.errs
		bytes += s.bytes
		sum += s.sum
		r.LatencyMs.Max = max(r.LatencyMs.Max, s.max)
		samples = append(samples, s.samples...)
	}
	if seconds > 0 {
		r.RecordsPerSec = float64(r.Records) / seconds
		r.MBPerSec = float64(bytes) / (1 << 20) / seconds
	}
	if r.Records > 0 {
		r.LatencyMs.Avg = sum / float64(r.Records)
	}
	slices.Sort(samples)
	pct := func(q float64) float64 {
		if len(samples) == 0 {
			return 0
		}
		return samples[min(len(samples)-1, int(q*float64(len(samples))))]
	}
	r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.LatencyMs.P999 = pct(0.5), pct(0.95), pct(0.99), pct(0.999)
	return r
}
