package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/stratalog/strata/client"
)

// A member of group "billing" reading "orders": run several copies and the
// partitions split between them. Auto-commit commits what earlier Polls
// returned; Close commits the rest and leaves the group at once.
func ExampleGroupConsumer() {
	c, err := client.New(client.Config{Bootstrap: []string{"127.0.0.1:9092"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	g, err := client.NewGroupConsumer(c, client.GroupConsumerConfig{
		Group:  "billing",
		Topics: []string{"orders"},
		OnAssigned: func(_ context.Context, tps []client.TopicPartition) {
			log.Printf("now reading %v", tps)
		},
		OnRevoked: func(_ context.Context, tps []client.TopicPartition) {
			log.Printf("handing over %v (their positions are committed)", tps)
		},
		Consumer: client.ConsumerConfig{AutoOffsetReset: client.OffsetResetEarliest},
	})
	if err != nil {
		log.Fatal(err) // a bad config: an *client.Error
	}
	defer g.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	for {
		recs, err := g.Poll(ctx)
		if errors.Is(err, context.Canceled) {
			return // Ctrl-C: the deferred Close commits and leaves
		}
		if err != nil {
			log.Fatal(err) // e.g. GROUP_MAX_SIZE_REACHED
		}
		for _, r := range recs {
			fmt.Printf("%s-%d@%d %s\n", r.Topic, r.Partition, r.Offset, r.Value)
		}
	}
}

// Committing by hand after processing, for at-least-once without
// auto-commit.
func ExampleGroupConsumer_CommitSync() {
	c, _ := client.New(client.Config{})
	defer c.Close()
	g, err := client.NewGroupConsumer(c, client.GroupConsumerConfig{Group: "billing", TopicRegex: "orders-.*", DisableAutoCommit: true})
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	ctx := context.Background()
	for {
		recs, err := g.Poll(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for _, r := range recs {
			_ = r // process
		}
		if err := g.CommitSync(ctx); err != nil {
			log.Printf("commit: %v", err) // e.g. fenced: the partitions were lost; the records come again elsewhere
		}
	}
}
