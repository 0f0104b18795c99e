package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// setup deletes the streams PREFIX-0.. that exist and creates -streams
// file streams with -replicas, no limits.
func setup(ctx context.Context, o *options) error {
	nc, err := connect(o, "jsbench-setup")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	names := js.StreamNames(ctx)
	var old []string
	for n := range names.Name() {
		old = append(old, n)
	}
	if err := names.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return fmt.Errorf("listing streams: %w", err)
	}
	for _, n := range old {
		if err := js.DeleteStream(ctx, n); err != nil {
			return fmt.Errorf("deleting stream %s: %w", n, err)
		}
	}
	for i := range o.streams {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name:     streamName(o, i),
			Subjects: []string{subject(o, i)},
			Storage:  jetstream.FileStorage,
			Replicas: o.replicas,
		})
		if err != nil {
			return fmt.Errorf("creating stream %s (R%d): %w", streamName(o, i), o.replicas, err)
		}
	}
	return nil
}
