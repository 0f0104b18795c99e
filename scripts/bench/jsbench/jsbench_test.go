package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestMerge(t *testing.T) {
	a, b := newStats(1), newStats(2)
	for i := 1; i <= 100; i++ {
		a.add(time.Duration(i)*time.Millisecond, 1000)
		b.add(time.Duration(100+i)*time.Millisecond, 1000)
	}
	b.errs = 3
	r := merge(2, a, b)
	if r.Records != 200 || r.Errors != 3 || r.RecordsPerSec != 100 {
		t.Fatalf("%+v", r)
	}
	if want := 200 * 1000.0 / (1 << 20) / 2; r.MBPerSec != want {
		t.Errorf("MB/s %v, want %v", r.MBPerSec, want)
	}
	if r.LatencyMs.P50 != 101 || r.LatencyMs.P99 != 199 || r.LatencyMs.P999 != 200 || r.LatencyMs.Max != 200 || r.LatencyMs.Avg != 100.5 {
		t.Errorf("latency %+v", r.LatencyMs)
	}
	// The reservoir keeps maxSamples, uniformly.
	s := newStats(3)
	for i := range 2 * maxSamples {
		s.add(time.Duration(i)*time.Microsecond, 1)
	}
	if len(s.samples) != maxSamples {
		t.Fatalf("%d samples", len(s.samples))
	}
	if p50 := merge(1, s).LatencyMs.P50; p50 < 475 || p50 > 525 {
		t.Errorf("p50 %v ms, want about 500", p50)
	}
	if r := merge(0); r.Records != 0 || r.RecordsPerSec != 0 || r.LatencyMs.P99 != 0 {
		t.Errorf("empty %+v", r)
	}
}

func TestValidate(t *testing.T) {
	ok := options{mode: "pub", streams: 1, producers: 1, size: 100, window: 10, n: 5, timeout: time.Second}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		change func(*options)
		msg    string
	}{
		{func(o *options) { o.mode = "bogus" }, "-mode"},
		{func(o *options) { o.streams = 0 }, "-streams"},
		{func(o *options) { o.producers = 0 }, "-producers"},
		{func(o *options) { o.size = 7 }, "-size"},
		{func(o *options) { o.window = 0 }, "-window"},
		{func(o *options) { o.n = 0 }, "-n"},
		{func(o *options) { o.mode = "e2e" }, "-rate"},
		{func(o *options) { o.rate = -1 }, "-rate"},
	} {
		o := ok
		tc.change(&o)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v, want an error naming %s", o, err, tc.msg)
		}
	}
	d := ok
	d.n, d.duration = 0, time.Second
	if err := d.validate(); err != nil {
		t.Errorf("-duration without -n: %v", err)
	}
}

func TestCounterAndWaitFor(t *testing.T) {
	o := &options{timeout: 300 * time.Millisecond}
	c := newCounter()
	for range 5 {
		c.add()
	}
	// want known after the messages came: done at once.
	if err := waitFor(context.Background(), o, c, 5); err != nil {
		t.Fatal(err)
	}
	// want known before: done when the last one comes.
	c = newCounter()
	go func() {
		for range 3 {
			time.Sleep(10 * time.Millisecond)
			c.add()
		}
	}()
	if err := waitFor(context.Background(), o, c, 3); err != nil {
		t.Fatal(err)
	}
	// Nothing more comes: an error naming what arrived, after the timeout.
	c = newCounter()
	for range 3 {
		c.add()
	}
	start := time.Now()
	err := waitFor(context.Background(), o, c, 4)
	if err == nil || !strings.Contains(err.Error(), "only 3 of 4") {
		t.Fatalf("%v", err)
	}
	if el := time.Since(start); el < o.timeout {
		t.Errorf("gave up after %s, before the timeout", el)
	}
}
