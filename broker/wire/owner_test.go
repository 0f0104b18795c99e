package wire

import (
	"bytes"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// counter is a release function that counts its calls and fails the test
// on a second one.
type counter struct {
	t     testing.TB
	calls atomic.Int32
}

func (c *counter) release() {
	if c.calls.Add(1) > 1 {
		c.t.Errorf("release ran %d times", c.calls.Load())
	}
}

func (c *counter) n() int { return int(c.calls.Load()) }

func bigResponse(parts int, n int) *pb.FetchResponse {
	m := &pb.FetchResponse{Topics: []*pb.FetchTopicResult{{Topic: "t"}}}
	for i := range parts {
		m.Topics[0].Partitions = append(m.Topics[0].Partitions, &pb.FetchPartitionResult{
			Partition: int32(i), HighWatermark: 100, Records: bytes.Repeat([]byte{byte(i)}, n),
		})
	}
	return m
}

// Release runs once, after gRPC has freed the last records buffer — not
// before.
func TestReleaseAfterLastFree(t *testing.T) {
	m := bigResponse(3, 10<<10)
	c1, c2 := &counter{t: t}, &counter{t: t}
	Attach(m, c1.release)
	Attach(m, c2.release)
	out, err := Codec{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if attached() != 0 {
		t.Fatalf("registry holds %d entries after Marshal", attached())
	}
	// gRPC frees buffer by buffer as its writer consumes them.
	for i, b := range out {
		if c1.n() != 0 {
			t.Fatalf("released before buffer %d of %d was freed", i, len(out))
		}
		b.Free()
	}
	if c1.n() != 1 || c2.n() != 1 {
		t.Fatalf("releases ran %d and %d times, want 1 each", c1.n(), c2.n())
	}
	Discard(m) // taken by the codec: nothing left to run
	if c1.n() != 1 {
		t.Fatal("Discard after Marshal released again")
	}
}

// A buffer gRPC keeps a second reference to (its Reader does) is released
// only when both are gone.
func TestReleaseWaitsForEveryReference(t *testing.T) {
	m := bigResponse(1, 4<<10)
	c := &counter{t: t}
	Attach(m, c.release)
	out, err := Codec{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out.Ref()
	out.Free()
	if c.n() != 0 {
		t.Fatal("released while a reference remained")
	}
	r := out.Reader() // takes references; frees each buffer as it is read
	out.Free()
	if c.n() != 0 {
		t.Fatal("released while the reader held the buffers")
	}
	got := make([]byte, r.Remaining())
	if _, err := r.Read(got); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if c.n() != 1 {
		t.Fatalf("released %d times after the reader finished, want 1", c.n())
	}
}

// Records small enough to be copied inline are released by Marshal itself.
func TestReleaseInlineAtOnce(t *testing.T) {
	m := bigResponse(2, 100)
	c := &counter{t: t}
	Attach(m, c.release)
	out, err := Codec{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if c.n() != 1 {
		t.Fatalf("inline-only message: released %d times by Marshal, want 1", c.n())
	}
	out.Free()
	if c.n() != 1 {
		t.Fatal("released again on Free")
	}
}

func TestReleaseOnMarshalError(t *testing.T) {
	m := bigResponse(1, 8<<10)
	m.Topics[0].Topic = "\xff"
	c := &counter{t: t}
	Attach(m, c.release)
	if _, err := (Codec{}).Marshal(m); err == nil {
		t.Fatal("Marshal succeeded on invalid UTF-8")
	}
	if c.n() != 1 {
		t.Fatalf("released %d times after a failed Marshal, want 1", c.n())
	}
}

func TestDiscard(t *testing.T) {
	m := &pb.SubscribeResponse{}
	c := &counter{t: t}
	Attach(m, c.release)
	Discard(m)
	Discard(m)
	if c.n() != 1 {
		t.Fatalf("released %d times, want 1", c.n())
	}
	out, err := Codec{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out.Free()
	if c.n() != 1 {
		t.Fatal("Marshal after Discard released again")
	}
	var nilMsg *pb.FetchResponse
	c2 := &counter{t: t}
	Attach(nilMsg, c2.release)
	if c2.n() != 1 {
		t.Fatal("Attach to nil did not release at once")
	}
}

// A message dropped without being encoded is released by the runtime
// cleanup after a garbage collection.
func TestReleaseWhenDropped(t *testing.T) {
	c := &counter{t: t}
	func() {
		m := bigResponse(1, 4<<10)
		Attach(m, c.release)
	}()
	waitReleased(t, c, 1)
	if attached() != 0 {
		t.Fatalf("registry holds %d entries", attached())
	}
}

// waitReleased runs the GC until c has counted want releases (bounded).
func waitReleased(t testing.TB, c *counter, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.n() < want {
		if time.Now().After(deadline) {
			t.Fatalf("released %d times, want %d", c.n(), want)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if c.n() != want {
		t.Fatalf("released %d times, want %d", c.n(), want)
	}
}
