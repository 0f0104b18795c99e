package controller_test

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/controller/controllertest"
	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// TestFetchMetadataReplay: a broker that replays the metadata log fetched
// from a follower (long-polling for the next entry) ends with the same image
// as the controllers, byte for byte.
func TestFetchMetadataReplay(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{})
	a := c.MustActive()
	startBrokers(t, c, 2)
	createTopic(t, c, "one", 2, 2)
	f := (a + 1) % c.Size()
	cl := c.Client(f)
	ctx := ctxT(t, 20*time.Second)
	// The follower applies what the leader committed.
	if _, err := c.Node(f).WaitForOffset(ctx, c.Node(a).Image().Offset()); err != nil {
		t.Fatal(err)
	}

	img := raftfsm.NewImage()
	fetch := func(wait int32) *pb.FetchMetadataResponse {
		t.Helper()
		r, err := cl.FetchMetadata(ctx, &pb.FetchMetadataRequest{BrokerId: 1, FromOffset: img.Offset() + 1, MaxWaitMs: wait, MaxBytes: 256})
		if err != nil {
			t.Fatal(err)
		}
		if s := r.GetSnapshot(); s != nil {
			if img, err = raftfsm.FromProto(s); err != nil {
				t.Fatal(err)
			}
		}
		if img, err = raftfsm.Replay(img, r.GetEntries()...); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Catch up in small pieces (max_bytes 256).
	for {
		r := fetch(0)
		if img.Offset() >= r.GetHighWaterOffset() {
			break
		}
	}
	// A long poll waits for the next write.
	done := make(chan *pb.FetchMetadataResponse, 1)
	go func() {
		r, err := cl.FetchMetadata(ctx, &pb.FetchMetadataRequest{BrokerId: 1, FromOffset: img.Offset() + 1, MaxWaitMs: 5000})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("long poll from %d answered before any write: %v", img.Offset()+1, r)
	default:
	}
	start := time.Now()
	createTopic(t, c, "two", 1, 1)
	r := <-done
	if len(r.GetEntries()) == 0 || time.Since(start) > 3*time.Second {
		t.Fatalf("long poll: %d entries after %v", len(r.GetEntries()), time.Since(start))
	}
	// An empty long poll times out with nothing.
	hw := r.GetHighWaterOffset()
	r2, err := cl.FetchMetadata(ctx, &pb.FetchMetadataRequest{FromOffset: hw + 1, MaxWaitMs: 50})
	if err != nil || len(r2.GetEntries()) != 0 || r2.GetSnapshot() != nil {
		t.Fatalf("empty poll: %v %v", err, r2)
	}
	for {
		r := fetch(0)
		if img.Offset() >= r.GetHighWaterOffset() {
			break
		}
	}
	want := c.Node(f).Image()
	if img.Offset() != want.Offset() {
		t.Fatalf("replayed to %d, controller at %d", img.Offset(), want.Offset())
	}
	b1, _ := proto.MarshalOptions{Deterministic: true}.Marshal(img.ToProto())
	b2, _ := proto.MarshalOptions{Deterministic: true}.Marshal(want.ToProto())
	if !bytes.Equal(b1, b2) {
		t.Fatal("replayed image differs from the controller's")
	}
}

// TestSingleVoter: a one-node quorum (what `strata dev` runs) elects itself
// and serves writes.
func TestSingleVoter(t *testing.T) {
	c := controllertest.NewCluster(t, controllertest.Options{Voters: 1})
	c.MustActive()
	startBrokers(t, c, 1)
	createTopic(t, c, "dev", 3, 1)
	c.Stop(0)
	c.Restart(0)
	c.MustActive()
	if tp := c.Node(0).Image().Topic("dev"); tp == nil || tp.NumPartitions() != 3 {
		t.Fatal("lost the topic across a restart")
	}
}
