// Package checker is the fault suite's workload and its Jepsen-style
// checker, in the spirit of Jepsen's queue and list-append tests:
// producers send unique values with acks=all while a nemesis acts, a
// monitor polls every partition's high watermark, and afterwards every
// partition is read twice from the earliest offset. Check then reports
// what was acknowledged, lost, duplicated, reordered, read differently
// twice, and any high watermark that went down.
package checker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/stratalog/strata/client"
)

// Op is one produce: a unique value sent to one partition.
type Op struct {
	Value     string
	Producer  int
	Partition int32
	Invoke    time.Time // before Send was called
	Complete  time.Time // when the outcome was seen (never before it happened)
	Acked     bool
	Offset    int64 // the acknowledged offset
	Err       error // the failure, when not acked (indeterminate: it may be in the log)
}

func (o *Op) String() string {
	out := fmt.Sprintf("%s -> p%d invoke %s", o.Value, o.Partition, o.Invoke.Format("15:04:05.000"))
	if o.Complete.IsZero() {
		return out + " (no outcome)"
	}
	if o.Acked {
		return out + fmt.Sprintf(" ack %s offset %d", o.Complete.Format("15:04:05.000"), o.Offset)
	}
	return out + fmt.Sprintf(" fail %s: %v", o.Complete.Format("15:04:05.000"), o.Err)
}

// WorkloadConfig configures the producers.
type WorkloadConfig struct {
	Topic      string
	Partitions int32
	Producers  int           // goroutines, default 3
	InFlight   int           // outstanding sends per producer, default 64
	Interval   time.Duration // between sends of one producer, default 3 ms
}

// Workload produces unique values until Stop.
type Workload struct {
	cfg  WorkloadConfig
	prod *client.Producer
	stop chan struct{}
	wg   sync.WaitGroup

	mu  sync.Mutex
	ops []*Op
}

// StartWorkload starts cfg.Producers goroutines sending through prod
// (acks=all is the caller's choice of ProducerConfig).
func StartWorkload(prod *client.Producer, cfg WorkloadConfig) *Workload {
	if cfg.Producers <= 0 {
		cfg.Producers = 3
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 64
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 3 * time.Millisecond
	}
	w := &Workload{cfg: cfg, prod: prod, stop: make(chan struct{})}
	for i := range cfg.Producers {
		w.wg.Add(1)
		go w.run(i)
	}
	return w
}

type pending struct {
	op *Op
	f  *client.Future
}

func (w *Workload) run(id int) {
	defer w.wg.Done()
	queue := make(chan pending, w.cfg.InFlight)
	var waiter sync.WaitGroup
	waiter.Add(1)
	go func() { // outcomes in send order: Complete is never early
		defer waiter.Done()
		for p := range queue {
			<-p.f.Done()
			md, err := p.f.Wait(context.Background())
			w.mu.Lock()
			p.op.Complete = time.Now()
			if err == nil {
				p.op.Acked, p.op.Offset = true, md.Offset
			} else {
				p.op.Err = err
			}
			w.mu.Unlock()
		}
	}()
	defer func() { close(queue); waiter.Wait() }()
	tick := time.NewTicker(w.cfg.Interval)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		op := &Op{Value: fmt.Sprintf("w%d-%d", id, seq), Producer: id,
			Partition: int32((seq + id) % int(w.cfg.Partitions)), Invoke: time.Now()}
		w.mu.Lock()
		w.ops = append(w.ops, op)
		w.mu.Unlock()
		f := w.prod.Send(context.Background(), &client.Record{Topic: w.cfg.Topic, Partition: op.Partition, Value: []byte(op.Value)})
		select {
		case queue <- pending{op, f}:
		case <-w.stop:
			queue <- pending{op, f} // the waiter drains it
			return
		}
	}
}

// Acked is the number of acknowledged ops so far.
func (w *Workload) Acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, o := range w.ops {
		if o.Acked {
			n++
		}
	}
	return n
}

// WaitAcked waits until at least n more ops than now are acknowledged.
func (w *Workload) WaitAcked(ctx context.Context, n int) error {
	target := w.Acked() + n
	for w.Acked() < target {
		select {
		case <-ctx.Done():
			return fmt.Errorf("checker: %d acks, waited for %d: %w", w.Acked(), target, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Stop stops sending and waits for the outcome of every op sent (the
// producer's DeliveryTimeout bounds that), then closes the producer.
func (w *Workload) Stop(ctx context.Context) error {
	close(w.stop)
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.New("checker: producers still waiting for outcomes")
	}
	w.prod.Close(ctx)
	<-done
	return err
}

// Ops returns a copy of every op, by invoke time.
func (w *Workload) Ops() []Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Op, len(w.ops))
	for i, o := range w.ops {
		out[i] = *o
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Invoke.Before(out[j].Invoke) })
	return out
}
