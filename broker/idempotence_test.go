package broker_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage/record"
)

// idemBatchOf is a batch of values from producer pid at (epoch, seq).
func idemBatchOf(t *testing.T, pid int64, epoch int16, seq int32, values ...string) []byte {
	t.Helper()
	b := record.NewBuilder(record.BatchOptions{Idempotent: true, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq})
	for _, v := range values {
		if err := b.Append(time.Now().UnixMilli(), nil, []byte(v), nil); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

// TestIdempotentProduceAcrossFailover: producer ids are unique across
// brokers; a leader refuses batches out of sequence (after waiting for the
// gap to fill) and from an older epoch; and a resend of a batch the dead
// leader had replicated is answered by the new leader with its original
// offset, so the log holds it once.
func TestIdempotentProduceAcrossFailover(t *testing.T) {
	c := newTestCluster(t, 1, 3)
	c.CreateTopic("idem", 1, 3, map[string]string{"min.insync.replicas": "2"})
	leader := c.leaderOf("idem", 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ids := map[int64]bool{}
	for _, id := range c.Running() {
		for range 3 {
			r, err := c.client(id).InitProducerId(ctx, &pb.InitProducerIdRequest{})
			if err != nil {
				t.Fatalf("InitProducerId on %d: %v", id, err)
			}
			if ids[r.ProducerId] || r.ProducerEpoch != 0 {
				t.Fatalf("producer id %d epoch %d handed out twice or with an epoch", r.ProducerId, r.ProducerEpoch)
			}
			ids[r.ProducerId] = true
		}
	}
	r, err := c.client(leader).InitProducerId(ctx, &pb.InitProducerIdRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pid := r.ProducerId

	want := func(res *pb.ProducePartitionResult, err error, code pb.ErrorCode, offset int64) {
		t.Helper()
		if err != nil || res.ErrorCode != code || (code == pb.ErrorCode_NONE && res.BaseOffset != offset) {
			t.Fatalf("produce: %v %v, want %v at %d", res, err, code, offset)
		}
	}
	lc := c.client(leader)
	b0 := idemBatchOf(t, pid, 0, 0, "a", "b")
	b1 := idemBatchOf(t, pid, 0, 2, "c")
	res, err := produce(ctx, lc, "idem", 0, -1, b0)
	want(res, err, pb.ErrorCode_NONE, 0)
	// A gap: refused after the leader waited for the missing batch.
	start := time.Now()
	res, err = produce(ctx, lc, "idem", 0, -1, idemBatchOf(t, pid, 0, 5, "x"))
	want(res, err, pb.ErrorCode_OUT_OF_ORDER_SEQUENCE_NUMBER, 0)
	if time.Since(start) < 250*time.Millisecond {
		t.Fatalf("out-of-sequence batch refused after %v, without waiting for the gap", time.Since(start))
	}
	// A batch ahead of its sequence waits for the one before it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := produce(ctx, lc, "idem", 0, -1, idemBatchOf(t, pid, 0, 3, "d"))
		if err != nil || res.ErrorCode != pb.ErrorCode_NONE || res.BaseOffset != 3 {
			t.Errorf("batch sent before its predecessor: %v %v", res, err)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	res, err = produce(ctx, lc, "idem", 0, -1, b1)
	want(res, err, pb.ErrorCode_NONE, 2)
	<-done
	// A resend to the same leader.
	res, err = produce(ctx, lc, "idem", 0, -1, b1)
	want(res, err, pb.ErrorCode_NONE, 2)

	// The leader dies; the resend goes to the new one, which rebuilds the
	// producer's state from its replica of the log.
	c.Kill(leader)
	next := c.leaderOf("idem", 0, 2)
	nc := c.client(next)
	res, err = produce(ctx, nc, "idem", 0, -1, b1)
	want(res, err, pb.ErrorCode_NONE, 2)
	res, err = produce(ctx, nc, "idem", 0, -1, b0)
	want(res, err, pb.ErrorCode_NONE, 0)
	res, err = produce(ctx, nc, "idem", 0, -1, idemBatchOf(t, pid, 0, 4, "e"))
	want(res, err, pb.ErrorCode_NONE, 4)
	// A new epoch starts at 0 and fences the old one.
	res, err = produce(ctx, nc, "idem", 0, -1, idemBatchOf(t, pid, 1, 0, "f"))
	want(res, err, pb.ErrorCode_NONE, 5)
	res, err = produce(ctx, nc, "idem", 0, -1, idemBatchOf(t, pid, 0, 5, "g"))
	want(res, err, pb.ErrorCode_INVALID_PRODUCER_EPOCH, 0)
	// A producer the partition has never seen must start at 0.
	res, err = produce(ctx, nc, "idem", 0, -1, idemBatchOf(t, pid+1, 0, 3, "h"))
	want(res, err, pb.ErrorCode_UNKNOWN_PRODUCER_ID, 0)

	got := consume(t, nc, "idem", 0, false)
	wantLog := map[int64]string{0: "a", 1: "b", 2: "c", 3: "d", 4: "e", 5: "f"}
	if len(got) != len(wantLog) {
		t.Fatalf("log %v, want %v", got, wantLog)
	}
	for off, v := range wantLog {
		if got[off] != v {
			t.Fatalf("log %v, want %v", got, wantLog)
		}
	}
}
