package client_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
)

// TestGroupChurn: members join and leave at random while a producer
// writes; no partition is ever owned by two members (as their callbacks
// see it), and every record produced is processed by the group at least
// once (auto-commit commits only processed records). 8 s of churn; a
// minute with STRATA_LONG=1.
func TestGroupChurn(t *testing.T) {
	churn := 8 * time.Second
	if os.Getenv("STRATA_LONG") != "" {
		churn = time.Minute
	}
	_, cl := groupCluster(t)
	o := newOwners(t, &groupFake{})

	var mu sync.Mutex
	processed := map[string]int{}
	type running struct {
		g    *client.GroupConsumer
		stop context.CancelFunc
		done chan struct{}
	}
	var members []*running
	n := 0
	start := func() {
		n++
		g, err := client.NewGroupConsumer(cl, o.config(fmt.Sprint("m", n), client.GroupConsumerConfig{Group: "churn", Topics: []string{"orders"},
			AutoCommitInterval: 200 * time.Millisecond, Consumer: client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest}}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &running{g: g, stop: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			for {
				recs, err := g.Poll(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				for _, rec := range recs {
					processed[string(rec.Value)]++
				}
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond) // processing
			}
		}()
		members = append(members, r)
	}
	stopOne := func(i int) {
		r := members[i]
		members = append(members[:i], members[i+1:]...)
		r.stop()
		<-r.done
		if err := r.g.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	defer func() {
		for len(members) > 0 {
			stopOne(0)
		}
	}()

	p, err := client.NewProducer(cl, client.ProducerConfig{Linger: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pstop := context.WithCancel(context.Background())
	var produced []*client.Future
	var pwg sync.WaitGroup
	pwg.Go(func() {
		for i := 0; pctx.Err() == nil; i++ {
			produced = append(produced, p.Send(context.Background(), &client.Record{Topic: "orders", Partition: int32(i % 4), Value: fmt.Appendf(nil, "v%d", i)}))
			time.Sleep(time.Millisecond)
		}
	})

	start()
	joins, leaves := 1, 0
	for deadline := time.Now().Add(churn); time.Now().Before(deadline); {
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		if len(members) < 3 && (len(members) <= 1 || rand.IntN(2) == 0) {
			start()
			joins++
		} else {
			stopOne(rand.IntN(len(members)))
			leaves++
		}
	}
	pstop()
	pwg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i, f := range produced {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprintf("v%d", i)] = true
	}
	if len(members) == 0 {
		start()
	}
	for {
		mu.Lock()
		missing := 0
		for v := range want {
			if processed[v] == 0 {
				missing++
			}
		}
		dups := 0
		for _, c := range processed {
			dups += c - 1
		}
		mu.Unlock()
		if missing == 0 {
			t.Logf("%d records, %d joins, %d leaves: every record processed, %d processed again after a hand-over", len(want), joins, leaves, dups)
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d records never processed (%d joins, %d leaves)", missing, len(want), joins, leaves)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
