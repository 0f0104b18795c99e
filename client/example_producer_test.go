package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/stratalog/strata/client"
)

// Send records asynchronously from any number of goroutines, wait for the
// outcome of each, and close the producer (which flushes) at the end.
func ExampleProducer() {
	c, err := client.New(client.Config{Bootstrap: []string{"127.0.0.1:9092"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	p, err := client.NewProducer(c, client.ProducerConfig{
		Acks:   client.AcksAll, // the default
		Linger: 10 * time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	defer p.Close(ctx)

	// Keyed: the partition Kafka's clients would pick for "user-42".
	f := p.Send(ctx, &client.Record{Topic: "demo", Partition: client.AnyPartition, Key: []byte("user-42"), Value: []byte("hello")})
	md, err := f.Wait(ctx)
	if err != nil {
		log.Fatal(err) // an *client.Error says what the cluster refused and why
	}
	fmt.Printf("stored at %s-%d@%d\n", md.Topic, md.Partition, md.Offset)

	// Synchronous, to an explicit partition.
	if _, err := p.SendSync(ctx, &client.Record{Topic: "demo", Partition: 0, Value: []byte("world")}); err != nil {
		log.Fatal(err)
	}
}
