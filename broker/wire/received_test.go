package wire

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// randomFetchResponse sets every field of the message tree, records of
// random sizes, and sometimes unknown fields.
func randomFetchResponse(rng *rand.Rand) *pb.FetchResponse {
	m := &pb.FetchResponse{}
	for range rng.IntN(3) {
		t := &pb.FetchTopicResult{Topic: []string{"", "t", "orders-é"}[rng.IntN(3)]}
		for range rng.IntN(4) {
			p := &pb.FetchPartitionResult{Partition: rng.Int32N(20) - 2, ErrorCode: pb.ErrorCode(rng.IntN(5)),
				HighWatermark: rng.Int64N(1e9) - 1, LastStableOffset: rng.Int64N(1e9), LogStartOffset: rng.Int64N(5),
				PreferredReadReplica: rng.Int32N(3) - 1, NextFetchOffset: rng.Int64N(1e6) - 1}
			if rng.IntN(4) == 0 {
				p.ErrorMessage = "not the leader"
				p.CurrentLeader = &pb.PartitionLeader{LeaderId: 2, LeaderEpoch: 7}
			}
			if rng.IntN(4) == 0 {
				p.DivergingEpoch = &pb.FetchDivergingEpoch{Epoch: 3, EndOffset: 99}
			}
			if rng.IntN(3) > 0 {
				p.Records = randomBytes(rng, rng.IntN(40000))
			}
			if rng.IntN(4) == 0 {
				p.DecodedRecords = append(p.DecodedRecords, &pb.Record{Key: []byte("k"), Value: []byte("v")})
			}
			if rng.IntN(5) == 0 {
				p.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 40, protowire.VarintType), 5))
			}
			t.Partitions = append(t.Partitions, p)
		}
		m.Topics = append(m.Topics, t)
	}
	if rng.IntN(2) == 0 {
		m.NodeEndpoints = []*pb.BrokerNode{{NodeId: 2, Host: "127.0.0.1", Port: 9092, Rack: "a"}}
	}
	return m
}

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
		in := randomFetchResponse(rng)
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
		b, _ := proto.Marshal(randomFetchResponse(rng))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got pb.FetchResponse
		err := unmarshalFetchResponse(b, &got)
		var want pb.FetchResponse
		if perr := proto.Unmarshal(b, &want); perr == nil {
			if err != nil {
				t.Fatalf("proto accepts, decoder refuses: %v", err)
			}
			if !proto.Equal(&got, &want) {
				t.Fatalf("decoded %v, proto %v", &got, &want)
			}
		}
	})
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
