package wire

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// chunks cuts b into buffers of random sizes, as HTTP/2 frames arrive.
func chunks(rng *rand.Rand, b []byte) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(20000))
		s = append(s, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return s
}

func inside(r, b []byte) bool {
	if len(r) == 0 || len(b) == 0 {
		return false
	}
	p, start := uintptr(unsafe.Pointer(&r[0])), uintptr(unsafe.Pointer(&b[0]))
	return p >= start && p < start+uintptr(len(b))
}

// TestReceivedFetchMatchesProto: decoded into a ReceivedFetch, a response
// equals proto.Unmarshal's, whether it arrived in one buffer (then the
// records alias it: no copy) or in many (gathered into one pooled buffer).
func TestReceivedFetchMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 1000 {
		in := randFetchResponse(rng)
		b, err := proto.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		data := mem.BufferSlice{mem.SliceBuffer(b)}
		if i%2 == 0 {
			data = chunks(rng, b)
		}
		one := len(data) == 1
		var rf ReceivedFetch
		if err := (Codec{}).Unmarshal(data, &rf); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !proto.Equal(rf.Response(), in) {
			t.Fatalf("case %d: decoded %v, want %v", i, rf.Response(), in)
		}
		for _, tr := range rf.Response().GetTopics() {
			for _, p := range tr.GetPartitions() {
				if len(p.Records) > 0 && one != inside(p.Records, b) {
					t.Fatalf("case %d: records alias the input = %v, want %v", i, !one, one)
				}
			}
		}
		rf.Release()
		if len(rf.Response().GetTopics()) != 0 {
			t.Fatal("Release left the message set")
		}
		rf.Release() // twice is fine
	}
}

// TestReceivedProduceMatchesProto: the same for a ProduceRequest.
func TestReceivedProduceMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range 1000 {
		in := randomProduce(rng)
		b, err := proto.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var rp ReceivedProduce
		if err := (Codec{}).Unmarshal(chunks(rng, b), &rp); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !proto.Equal(rp.Request(), in) {
			t.Fatalf("case %d: decoded %v, want %v", i, rp.Request(), in)
		}
		rp.Release()
	}
}

// TestReceivedRefusesMalformed: a malformed message is an error, leaves
// the target empty and holds no buffer.
func TestReceivedRefusesMalformed(t *testing.T) {
	bad := mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x05, 0x0a})} // field 1, length 5, 1 byte
	var rf ReceivedFetch
	if err := (Codec{}).Unmarshal(bad, &rf); err == nil {
		t.Fatal("truncated FetchResponse decoded")
	}
	if rf.buf != nil || len(rf.Response().GetTopics()) != 0 {
		t.Fatal("a failed decode kept state")
	}
	var rp ReceivedProduce
	if err := (Codec{}).Unmarshal(bad[:1], &rp); err == nil {
		t.Fatal("truncated ProduceRequest decoded")
	}
	if rp.buf != nil {
		t.Fatal("a failed decode kept its buffer")
	}
}

// FuzzUnmarshalFetchResponse: on any input the decoder never panics, and
// whatever proto.Unmarshal accepts it decodes to the same message.
func FuzzUnmarshalFetchResponse(f *testing.F) {
	rng := rand.New(rand.NewPCG(11, 12))
	for range 8 {
		b, _ := proto.Marshal(randFetchResponse(rng))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { agreesWithProto(t, b, unmarshalFetchResponse) })
}

// TestPoolTiers: Get gives the asked length from the smallest tier that
// holds it; Put keeps a buffer in the largest tier its capacity covers, and
// a buffer above the largest tier is neither pooled nor refused.
func TestPoolTiers(t *testing.T) {
	for _, c := range []struct{ size, wantCap int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {16384, 16384}, {16385, 32768}, {4<<20 + 1, 8 << 20}, {64 << 20, 64 << 20},
		{64<<20 + 1, 64<<20 + 1},
	} {
		b := Pool.Get(c.size)
		if len(*b) != c.size || cap(*b) != c.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", c.size, len(*b), cap(*b), c.size, c.wantCap)
		}
		Pool.Put(b)
	}
	odd := make([]byte, 300, 700) // a foreign buffer: filed under 512
	Pool.Put(&odd)
	for range 3 {
		if b := Pool.Get(500); len(*b) != 500 || cap(*b) < 500 {
			t.Fatalf("Get(500) after Put of cap 700: len %d cap %d", len(*b), cap(*b))
		}
	}
}
