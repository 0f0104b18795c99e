package wire

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// splitProduce is m as a ProduceRequest, each partition's records cut into
// a random number of batches (none, one, several, empty ones among them),
// unknown fields carried over. Every field of the generated messages must be
// mirrored here: one that is not makes the equality test below fail.
func splitProduce(r *rand.Rand, m *pb.ProduceRequest) *ProduceRequest {
	w := &ProduceRequest{Acks: m.Acks, TimeoutMs: m.TimeoutMs, Unknown: m.ProtoReflect().GetUnknown()}
	for _, t := range m.Topics {
		wt := ProduceTopic{}
		if t != nil { // proto.Marshal encodes a nil element as an empty message
			wt = ProduceTopic{Topic: t.Topic, Unknown: t.ProtoReflect().GetUnknown()}
		}
		for _, p := range t.GetPartitions() {
			wp := ProducePartition{}
			if p != nil {
				wp = ProducePartition{Partition: p.Partition, PlainRecords: p.PlainRecords, Unknown: p.ProtoReflect().GetUnknown()}
				wp.Batches = cutInto(r, p.Records)
			}
			wt.Partitions = append(wt.Partitions, wp)
		}
		w.Topics = append(w.Topics, wt)
	}
	return w
}

// cutInto splits b at random points into up to five pieces, some empty.
func cutInto(r *rand.Rand, b []byte) [][]byte {
	if len(b) == 0 && r.IntN(2) == 0 {
		return nil
	}
	var out [][]byte
	for range r.IntN(5) {
		n := 0
		switch r.IntN(4) {
		case 0: // empty piece
		case 1:
			n = min(len(b), r.IntN(2*inlineMax))
		default:
			n = min(len(b), r.IntN(len(b)+1))
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

func randProduceRequest(r *rand.Rand) *pb.ProduceRequest {
	m := &pb.ProduceRequest{}
	fill(r, m.ProtoReflect(), 0)
	return m
}

// The codec's output equals proto.Marshal of the request whose records are
// the batches concatenated, whatever the split: random requests with every
// field filled by reflection (so a field added to the proto fails here until
// ProduceRequest mirrors it), unknown fields at every level, records around
// the 1 KiB cut.
func TestProduceEncodeMatchesProtoMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	det := proto.MarshalOptions{Deterministic: true}
	for i := range 2000 {
		var m *pb.ProduceRequest
		if i%2 == 0 {
			m = randProduceRequest(r)
		} else {
			m = randomProduce(r) // the shapes the client sends: many records fields
		}
		want, err := det.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		w := splitProduce(r, m)
		got := encode(t, w)
		if !bytes.Equal(got, want) {
			t.Fatalf("request %d: codec output (%d bytes) differs from proto.Marshal (%d bytes)\n%v", i, len(got), len(want), protocmpText(m))
		}
		back := &pb.ProduceRequest{}
		if err := proto.Unmarshal(got, back); err != nil {
			t.Fatalf("request %d: Unmarshal: %v", i, err)
		}
		if !proto.Equal(m, back) {
			t.Fatalf("request %d: round trip differs", i)
		}
	}
}

func TestProduceEncodeShapes(t *testing.T) {
	big := func(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }
	for _, tc := range []struct {
		name string
		w    *ProduceRequest
		m    *pb.ProduceRequest
	}{
		{"empty", &ProduceRequest{}, &pb.ProduceRequest{}},
		{"only acks", &ProduceRequest{Acks: -1}, &pb.ProduceRequest{Acks: -1}},
		{"topic without partitions", &ProduceRequest{Topics: []ProduceTopic{{Topic: "t"}}},
			&pb.ProduceRequest{Topics: []*pb.ProduceTopic{{Topic: "t"}}}},
		{"empty batches omit records", &ProduceRequest{Topics: []ProduceTopic{{Topic: "t", Partitions: []ProducePartition{{Partition: 3, Batches: [][]byte{{}, nil}}}}}},
			&pb.ProduceRequest{Topics: []*pb.ProduceTopic{{Topic: "t", Partitions: []*pb.ProducePartition{{Partition: 3}}}}}},
		{"several batches, several partitions, several topics",
			&ProduceRequest{Acks: 1, TimeoutMs: 30000, Topics: []ProduceTopic{
				{Topic: "a", Partitions: []ProducePartition{
					{Partition: 0, Batches: [][]byte{big(5000, 1), big(10, 2), big(inlineMax+1, 3), big(inlineMax, 4)}},
					{Partition: 1, Batches: [][]byte{big(300<<10, 5)}},
				}},
				{Topic: "b", Partitions: []ProducePartition{{Partition: 7, Batches: [][]byte{big(2000, 6), big(3000, 7)}}}},
			}},
			&pb.ProduceRequest{Acks: 1, TimeoutMs: 30000, Topics: []*pb.ProduceTopic{
				{Topic: "a", Partitions: []*pb.ProducePartition{
					{Partition: 0, Records: bytes.Join([][]byte{big(5000, 1), big(10, 2), big(inlineMax+1, 3), big(inlineMax, 4)}, nil)},
					{Partition: 1, Records: big(300<<10, 5)},
				}},
				{Topic: "b", Partitions: []*pb.ProducePartition{{Partition: 7, Records: bytes.Join([][]byte{big(2000, 6), big(3000, 7)}, nil)}}},
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := proto.Marshal(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if got := encode(t, tc.w); !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes %x\nwant %d bytes %x", len(got), got[:min(len(got), 64)], len(want), want[:min(len(want), 64)])
			}
		})
	}
}

// Batches above 1 KiB are the caller's memory, one buffer each; smaller
// ones are copied into the header.
func TestProduceEncodeBatchesByReference(t *testing.T) {
	b1, b2, small := make([]byte, 4096), make([]byte, 70<<10), make([]byte, 100)
	w := &ProduceRequest{Topics: []ProduceTopic{{Topic: "t", Partitions: []ProducePartition{{Batches: [][]byte{b1, small, b2}}}}}}
	out, err := Codec{}.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	found := map[*byte]bool{}
	for _, b := range out {
		found[unsafe.SliceData(b.ReadOnlyData())] = true
	}
	if !found[&b1[0]] || !found[&b2[0]] {
		t.Fatal("a large batch was copied instead of sent by reference")
	}
	if found[&small[0]] {
		t.Fatal("a small batch was sent as a buffer of its own")
	}
}

func TestProduceEncodeInvalidUTF8(t *testing.T) {
	c := &counter{t: t}
	w := &ProduceRequest{Topics: []ProduceTopic{{Topic: "\xff", Partitions: []ProducePartition{{Batches: [][]byte{make([]byte, 5000)}}}}}}
	w.OnRelease(c.release)
	if _, err := (Codec{}).Marshal(w); !errors.Is(err, errInvalidUTF8) {
		t.Fatalf("Marshal: %v, want errInvalidUTF8", err)
	}
	bad := &ProduceRequest{Topics: []ProduceTopic{{Topic: "t", Partitions: []ProducePartition{{PlainRecords: []*pb.Record{{Headers: []*pb.RecordHeader{{Key: "\xff"}}}}}}}}}
	if _, err := (Codec{}).Marshal(bad); err == nil {
		t.Fatal("Marshal accepted a header key proto.Marshal refuses")
	}
	w.Settle()
	if c.n() != 1 {
		t.Fatalf("release ran %d times after Settle of a request that failed to encode, want 1", c.n())
	}
}

// The release waits for both Settle and every freed buffer, in either order.
func TestProduceRelease(t *testing.T) {
	batches := [][]byte{make([]byte, 4096), make([]byte, 100), make([]byte, 8192)}
	newReq := func(c *counter) *ProduceRequest {
		w := &ProduceRequest{Topics: []ProduceTopic{{Topic: "t", Partitions: []ProducePartition{{Batches: batches}}}}}
		w.OnRelease(c.release)
		return w
	}
	t.Run("settled after the last free", func(t *testing.T) {
		c := &counter{t: t}
		w := newReq(c)
		out, err := Codec{}.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		out.Free()
		if c.n() != 0 {
			t.Fatal("released before Settle")
		}
		w.Settle()
		if c.n() != 1 {
			t.Fatalf("released %d times, want 1", c.n())
		}
	})
	t.Run("settled first (a cancelled call)", func(t *testing.T) {
		c := &counter{t: t}
		w := newReq(c)
		out, err := Codec{}.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		out[1].Ref() // gRPC's writer keeps a reference to one batch
		out.Free()
		w.Settle()
		if c.n() != 0 {
			t.Fatal("released while gRPC still held a batch")
		}
		out[1].Free()
		if c.n() != 1 {
			t.Fatalf("released %d times, want 1", c.n())
		}
	})
	t.Run("never marshalled", func(t *testing.T) {
		c := &counter{t: t}
		newReq(c).Settle()
		if c.n() != 1 {
			t.Fatalf("released %d times, want 1", c.n())
		}
	})
	t.Run("no release set", func(t *testing.T) {
		w := &ProduceRequest{Topics: []ProduceTopic{{Topic: "t", Partitions: []ProducePartition{{Batches: batches}}}}}
		out, err := Codec{}.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		out.Free()
		w.Settle()
	})
}

// produceServer keeps every Produce it receives.
type produceServer struct {
	pb.UnimplementedBrokerServiceServer
	mu   sync.Mutex
	got  []*pb.ProduceRequest
	wait chan struct{} // if set, Produce blocks until it closes or the call ends
}

func (s *produceServer) Produce(ctx context.Context, req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	if s.wait != nil {
		select {
		case <-s.wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	s.got = append(s.got, proto.Clone(req).(*pb.ProduceRequest))
	s.mu.Unlock()
	return &pb.ProduceResponse{}, nil
}

// Over real gRPC, with the server decoding with either codec, the broker
// receives the batches concatenated, and the release runs once the call is
// over — also for calls cancelled while their batches are queued.
func TestLoopbackProduce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server []grpc.ServerOption
	}{
		{name: "default server"},
		{name: "server forces", server: []grpc.ServerOption{ServerOption()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &produceServer{}
			cc := serve(t, srv, tc.server...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r := rand.New(rand.NewPCG(9, 10))
			var released sync.WaitGroup
			for i := range 20 {
				m := randomProduce(r)
				m.Topics = append(m.Topics, &pb.ProduceTopic{Topic: "big", Partitions: []*pb.ProducePartition{{Partition: 1, Records: pattern(i, 600<<10)}}})
				w := splitProduce(r, m)
				released.Add(1)
				w.OnRelease(released.Done)
				err := cc.Invoke(ctx, pb.BrokerService_Produce_FullMethodName, w, &pb.ProduceResponse{}, CallOption())
				w.Settle()
				if err != nil {
					t.Fatal(err)
				}
				srv.mu.Lock()
				got := srv.got[len(srv.got)-1]
				srv.mu.Unlock()
				if !proto.Equal(got, m) {
					t.Fatalf("request %d: the broker received something else", i)
				}
			}
			released.Wait()

			// Cancelled while the server holds the call: the release still
			// runs, once.
			blocked := &produceServer{wait: make(chan struct{})}
			defer close(blocked.wait)
			cc = serve(t, blocked, tc.server...)
			for i := range 5 {
				c := &counter{t: t}
				w := &ProduceRequest{Topics: []ProduceTopic{{Topic: "t", Partitions: []ProducePartition{{Batches: [][]byte{pattern(i, 2<<20), pattern(i+1, 3<<20)}}}}}}
				w.OnRelease(c.release)
				cctx, ccancel := context.WithTimeout(ctx, 20*time.Millisecond)
				err := cc.Invoke(cctx, pb.BrokerService_Produce_FullMethodName, w, &pb.ProduceResponse{}, CallOption())
				ccancel()
				w.Settle()
				if err == nil {
					t.Fatal("a call the server never answered succeeded")
				}
				waitCount(t, func() int64 { return int64(c.n()) }, 1)
			}
		})
	}
}
