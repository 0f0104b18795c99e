package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/broker/brokertest"
	"github.com/stratalog/strata/broker/wire"
	"github.com/stratalog/strata/client"
)

// Produce requests carry several batches per partition, for several
// topics, by reference (wire.ProduceRequest); a real broker stores them all,
// in order, at the offsets the futures report — with and without
// idempotence (which stamps producer fields into built batches).
func TestProducerSeveralBatchesPerRequest(t *testing.T) {
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 1})
	topics := []string{"zc-a", "zc-b"}
	for _, topic := range topics {
		c.CreateTopic(topic, 2, 1, nil)
	}
	for _, idem := range []bool{true, false} {
		t.Run(fmt.Sprintf("idempotent=%v", idem), func(t *testing.T) {
			cl := prodClient(t, c)
			// Small batches and a long linger: records pile up into many
			// batches per partition, sent together by Flush.
			p := prodNew(t, cl, client.ProducerConfig{BatchSize: 4 << 10, Linger: time.Minute, DisableIdempotence: !idem})
			var mu sync.Mutex
			maxBatches := 0
			client.SetOnRequest(p, func(req *wire.ProduceRequest) {
				mu.Lock()
				defer mu.Unlock()
				for _, tp := range req.Topics {
					for _, pp := range tp.Partitions {
						maxBatches = max(maxBatches, len(pp.Batches))
					}
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			type key struct {
				topic     string
				partition int32
			}
			sentVals := map[key][]string{}
			var futures []*client.Future
			var vals []string
			for i := range 400 {
				k := key{topics[i%2], int32(i/2) % 2}
				v := fmt.Sprintf("idem=%v-%d-%s", idem, i, string(make([]byte, 900)))
				futures = append(futures, p.Send(ctx, &client.Record{Topic: k.topic, Partition: k.partition, Value: []byte(v)}))
				vals = append(vals, v)
				sentVals[k] = append(sentVals[k], v)
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			offsets := map[key]map[int64]string{}
			for i, f := range futures {
				md, err := f.Wait(ctx)
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				k := key{md.Topic, md.Partition}
				if offsets[k] == nil {
					offsets[k] = map[int64]string{}
				}
				offsets[k][md.Offset] = vals[i]
			}
			mu.Lock()
			if maxBatches < 3 {
				t.Errorf("at most %d batches per partition in a request, want several", maxBatches)
			}
			mu.Unlock()
			for k, want := range offsets {
				got := readPartition(t, cl, k.topic, k.partition)
				for off, v := range want {
					if got[off] != v {
						t.Fatalf("%s-%d offset %d: stored %.20q, want %.20q", k.topic, k.partition, off, got[off], v)
					}
				}
			}
			for k, vs := range sentVals {
				if len(offsets[k]) != len(vs) {
					t.Fatalf("%s-%d: %d acknowledged, %d sent", k.topic, k.partition, len(offsets[k]), len(vs))
				}
			}
		})
	}
}
