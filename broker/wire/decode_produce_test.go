package wire

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

func randomProduce(rng *rand.Rand) *pb.ProduceRequest {
	m := &pb.ProduceRequest{Acks: int32(rng.IntN(3)) - 1, TimeoutMs: int32(rng.IntN(100000)) - 10}
	for range rng.IntN(3) {
		t := &pb.ProduceTopic{Topic: []string{"", "t", "orders-é", "x.y_z"}[rng.IntN(4)]}
		for range rng.IntN(4) {
			p := &pb.ProducePartition{Partition: int32(rng.IntN(20)) - 2}
			if rng.IntN(3) > 0 {
				p.Records = make([]byte, rng.IntN(3000))
				for i := range p.Records {
					p.Records[i] = byte(rng.Uint32())
				}
			} else {
				for range rng.IntN(3) {
					ts := rng.Int64()
					p.PlainRecords = append(p.PlainRecords, &pb.Record{Key: []byte("k"), TimestampMs: &ts,
						Headers: []*pb.RecordHeader{{Key: "h", Value: []byte{1}}}})
				}
			}
			t.Partitions = append(t.Partitions, p)
		}
		m.Topics = append(m.Topics, t)
	}
	return m
}

// TestUnmarshalProduceMatchesProto: the hand decoder gives what
// proto.Unmarshal gives, and records alias the input buffer.
func TestUnmarshalProduceMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		in := randomProduce(rng)
		b, err := proto.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var got pb.ProduceRequest
		if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !proto.Equal(&got, in) {
			t.Fatalf("case %d: decoded %v, want %v", i, &got, in)
		}
	}
	in := &pb.ProduceRequest{Topics: []*pb.ProduceTopic{{Topic: "t", Partitions: []*pb.ProducePartition{{Records: make([]byte, 5000)}}}}}
	b, _ := proto.Marshal(in)
	var got pb.ProduceRequest
	if err := unmarshalProduce(b, &got); err != nil {
		t.Fatal(err)
	}
	r := got.Topics[0].Partitions[0].Records
	start, end := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[len(b)-1]))
	if p := uintptr(unsafe.Pointer(&r[0])); p < start || p > end {
		t.Fatal("records were copied instead of aliasing the request buffer")
	}
}

// FuzzUnmarshalProduce: on any input the hand decoder never panics, and
// whatever proto.Unmarshal accepts it decodes to the same message.
func FuzzUnmarshalProduce(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 8 {
		b, _ := proto.Marshal(randomProduce(rng))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { agreesWithProto(t, b, unmarshalProduce) })
}

// agreesWithProto checks a hand decoder against proto.Unmarshal on b: it
// must not panic, and whatever proto.Unmarshal accepts it must decode to the
// same message (it may refuse more).
func agreesWithProto[T any, M interface {
	*T
	proto.Message
}](t *testing.T, b []byte, decode func([]byte, M) error) {
	got, want := M(new(T)), M(new(T))
	err := decode(b, got)
	if perr := proto.Unmarshal(b, want); perr == nil {
		if err != nil {
			t.Fatalf("proto accepts, hand decoder refuses: %v", err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("decoded %v, proto %v", got, want)
		}
	}
}
