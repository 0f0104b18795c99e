package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/stratalog/strata/client"
)

// A consumer that reads partitions 0 and 1 of "orders" from the beginning
// and stops once no record has come for five seconds.
func ExampleConsumer() {
	c, err := client.New(client.Config{Bootstrap: []string{"127.0.0.1:9092"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	cons, err := client.NewConsumer(c, client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest})
	if err != nil {
		log.Fatal(err)
	}
	defer cons.Close()
	if err := cons.Assign(client.TopicPartition{Topic: "orders", Partition: 0}, client.TopicPartition{Topic: "orders", Partition: 1}); err != nil {
		log.Fatal(err)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		recs, err := cons.Poll(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return // idle
		}
		if err != nil {
			log.Fatal(err) // e.g. an *client.Error with OFFSET_OUT_OF_RANGE
		}
		// The next fetch is already under way while these are processed.
		for _, r := range recs {
			fmt.Printf("%s-%d@%d %s=%s\n", r.Topic, r.Partition, r.Offset, r.Key, r.Value)
		}
	}
}

// Replaying the last hour of a partition.
func ExampleConsumer_SeekToTimestamp() {
	c, err := client.New(client.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	cons, err := client.NewConsumer(c, client.ConsumerConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer cons.Close()
	tp := client.TopicPartition{Topic: "orders", Partition: 0}
	cons.Assign(tp)
	ctx := context.Background()
	if err := cons.SeekToTimestamp(ctx, tp, time.Now().Add(-time.Hour)); err != nil {
		log.Fatal(err)
	}
	pos, _ := cons.Position(ctx, tp)
	fmt.Println("replaying from offset", pos)
}
