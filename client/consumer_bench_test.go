package client

import (
	"context"
	"testing"
	"time"

	"github.com/stratalog/strata/broker/brokertest"
	"github.com/stratalog/strata/storage/record"
)

// BenchmarkConsumer reads 8 MiB of 1 KiB records (one partition, one
// in-process broker) from the beginning per iteration: Poll's throughput
// with the client-side decode and one copy per record. fetches/op counts
// the Fetch requests sent.
//
//	go test -run '^$' -bench BenchmarkConsumer -benchtime 20x ./client/
func BenchmarkConsumer(b *testing.B) {
	const records, size = 8192, 1024
	cl := brokertest.NewCluster(b, brokertest.Options{Brokers: 1})
	cl.CreateTopic("bench", 1, 1, nil)
	c, err := New(Config{Bootstrap: cl.Bootstrap()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	value := make([]byte, size)
	bld := record.NewBuilder(record.BatchOptions{})
	for i := 0; i < records; i += 64 {
		bld.Reset(record.BatchOptions{})
		for range 64 {
			bld.Append(time.Now().UnixMilli(), nil, value, nil)
		}
		batch, _ := bld.Build()
		if _, err := ctProduceBatch(c, "bench", 0, batch, 20*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	tp := TopicPartition{"bench", 0}
	cons, err := NewConsumer(c, ConsumerConfig{AutoOffsetReset: OffsetResetEarliest})
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close()
	cons.Assign(tp)
	ctx := context.Background()
	b.SetBytes(records * size)
	b.ReportAllocs()
	for b.Loop() {
		cons.Seek(tp, 0)
		n := 0
		for n < records {
			recs, err := cons.Poll(ctx)
			if err != nil {
				b.Fatal(err)
			}
			n += len(recs)
		}
	}
	b.ReportMetric(float64(cons.fetches.Load())/float64(b.N), "fetches/op")
}
