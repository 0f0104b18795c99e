package checker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/stratalog/strata/client"
)

// HWSample is one high watermark seen by the monitor.
type HWSample struct {
	At          time.Time
	Partition   int32
	HW          int64
	LeaderEpoch int32
}

// HWRegression is a high watermark lower than one seen before it.
type HWRegression struct {
	Before, After HWSample
}

func (r HWRegression) String() string {
	return fmt.Sprintf("p%d HW %d (epoch %d, %s) then %d (epoch %d, %s)", r.After.Partition,
		r.Before.HW, r.Before.LeaderEpoch, r.Before.At.Format("15:04:05.000"),
		r.After.HW, r.After.LeaderEpoch, r.After.At.Format("15:04:05.000"))
}

// HWMonitor polls every partition's high watermark (ListOffsets latest,
// answered by the leader) and keeps the regressions.
type HWMonitor struct {
	stop chan struct{}
	done chan struct{}

	mu          sync.Mutex
	max         map[int32]HWSample
	samples     int
	regressions []HWRegression
}

// StartHWMonitor polls every interval until Stop.
func StartHWMonitor(admin *client.Admin, topic string, partitions int32, interval time.Duration) *HWMonitor {
	m := &HWMonitor{stop: make(chan struct{}), done: make(chan struct{}), max: map[int32]HWSample{}}
	specs := map[client.TopicPartition]client.OffsetSpec{}
	for p := range partitions {
		specs[client.TopicPartition{Topic: topic, Partition: p}] = client.OffsetLatest
	}
	go func() {
		defer close(m.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			res, err := admin.ListOffsets(ctx, specs)
			cancel()
			if err != nil {
				continue
			}
			at := time.Now()
			for _, r := range res {
				if r.Err == nil {
					m.observe(HWSample{At: at, Partition: r.Partition, HW: r.Offset, LeaderEpoch: r.LeaderEpoch})
				}
			}
		}
	}()
	return m
}

func (m *HWMonitor) observe(s HWSample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples++
	prev, ok := m.max[s.Partition]
	if ok && s.HW < prev.HW {
		m.regressions = append(m.regressions, HWRegression{Before: prev, After: s})
		return
	}
	m.max[s.Partition] = s
}

// Stop stops polling and returns the number of samples and the regressions.
func (m *HWMonitor) Stop() (int, []HWRegression) {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.samples, append([]HWRegression(nil), m.regressions...)
}

// Entry is one record read back.
type Entry struct {
	Offset int64
	Value  string
}

// Read is every partition of a topic read from its earliest offset up to
// its high watermark at the start of the read.
type Read struct {
	Start map[int32]int64   // log start offsets
	End   map[int32]int64   // high watermarks read up to
	Parts map[int32][]Entry // by partition, in offset order
}

// ReadAll reads every partition of topic from the earliest offset to the
// high watermark with a fresh consumer of cl.
func ReadAll(ctx context.Context, cl *client.Client, topic string, partitions int32) (*Read, error) {
	admin := client.NewAdmin(cl)
	r := &Read{Start: map[int32]int64{}, End: map[int32]int64{}, Parts: map[int32][]Entry{}}
	var tps []client.TopicPartition
	for p := range partitions {
		tps = append(tps, client.TopicPartition{Topic: topic, Partition: p})
	}
	for _, spec := range []client.OffsetSpec{client.OffsetEarliest, client.OffsetLatest} {
		specs := map[client.TopicPartition]client.OffsetSpec{}
		for _, tp := range tps {
			specs[tp] = spec
		}
		res, err := admin.ListOffsets(ctx, specs)
		if err != nil {
			return nil, fmt.Errorf("checker: list offsets: %w", err)
		}
		for _, x := range res {
			if x.Err != nil {
				return nil, fmt.Errorf("checker: list offsets of p%d: %w", x.Partition, x.Err)
			}
			if spec == client.OffsetEarliest {
				r.Start[x.Partition] = x.Offset
			} else {
				r.End[x.Partition] = x.Offset
			}
		}
	}
	cons, err := client.NewConsumer(cl, client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest, FetchMaxWait: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	defer cons.Close()
	if err := cons.Assign(tps...); err != nil {
		return nil, err
	}
	if err := cons.SeekToBeginning(tps...); err != nil {
		return nil, err
	}
	left := 0
	for _, tp := range tps {
		if r.End[tp.Partition] > r.Start[tp.Partition] {
			left++
		} else {
			cons.Pause(tp)
		}
	}
	for left > 0 {
		recs, err := cons.Poll(ctx)
		if err != nil {
			return nil, fmt.Errorf("checker: read: %w", err)
		}
		for _, rec := range recs {
			end := r.End[rec.Partition]
			if rec.Offset >= end {
				continue // past the HW of the start of the read: the next read's business
			}
			r.Parts[rec.Partition] = append(r.Parts[rec.Partition], Entry{Offset: rec.Offset, Value: string(rec.Value)})
			if rec.Offset == end-1 {
				left--
				cons.Pause(client.TopicPartition{Topic: topic, Partition: rec.Partition})
			}
		}
	}
	return r, nil
}
