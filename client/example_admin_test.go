package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

// ExampleAdmin creates a topic, describes it and handles a per-topic error.
// (Compiled, not run: it needs a cluster, e.g. `strata dev`.)
func ExampleAdmin() {
	cl, err := client.New(client.Config{Bootstrap: []string{"127.0.0.1:9092"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	admin := client.NewAdmin(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Partitions and ReplicationFactor left at 0 take the cluster defaults.
	res, err := admin.CreateTopics(ctx, []client.NewTopic{
		{Name: "orders", Partitions: 6, ReplicationFactor: 3, Configs: map[string]string{"retention.ms": "86400000"}},
		{Name: "audit"},
	}, client.CreateTopicsOptions{})
	if err != nil {
		log.Fatal(err) // nothing was created: no controller answered, ...
	}
	for _, r := range res {
		var e *client.Error
		switch {
		case r.Err == nil:
			fmt.Printf("created %s: %d partitions x %d replicas\n", r.Name, r.Partitions, r.ReplicationFactor)
		case errors.As(r.Err, &e) && e.Code == pb.ErrorCode_TOPIC_ALREADY_EXISTS:
			fmt.Printf("%s exists already\n", r.Name)
		default:
			log.Fatal(r.Err) // e.g. INVALID_REPLICATION_FACTOR: more replicas than live brokers
		}
	}

	// Brokers learn of new topics from the metadata log a moment later.
	if err := admin.WaitForTopics(ctx, true, "orders", "audit"); err != nil {
		log.Fatal(err)
	}
	topics, err := admin.DescribeTopics(ctx, []string{"orders"}, client.DescribeTopicsOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range topics[0].Partitions {
		fmt.Printf("orders-%d leader %d replicas %v isr %v\n", p.Partition, p.Leader, p.Replicas, p.ISR)
	}
}
