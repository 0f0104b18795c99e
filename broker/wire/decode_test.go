package wire

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// split cuts b into a BufferSlice of several buffers, as gRPC hands over
// the frames of a message.
func split(r *rand.Rand, b []byte) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 1+r.IntN(20000))
		out = append(out, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return out
}

func TestUnmarshalAliasedMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 1000 {
		var m proto.Message
		if i%2 == 0 {
			m = randFetchResponse(r)
		} else {
			s := &pb.SubscribeResponse{}
			fill(r, s.ProtoReflect(), 0)
			m = s
		}
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got := m.ProtoReflect().New().Interface()
		if err := unmarshalAliased(split(r, b), got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !proto.Equal(m, got) {
			t.Fatalf("message %d: decoded message differs\nsent %s\ngot  %s", i, protocmpText(m), protocmpText(got))
		}
		// And through the codec (aliasing only above aliasMin).
		got2 := m.ProtoReflect().New().Interface()
		if err := (Codec{}).Unmarshal(split(r, b), got2); err != nil || !proto.Equal(m, got2) {
			t.Fatalf("message %d: Codec.Unmarshal: %v, equal %v", i, err, proto.Equal(m, got2))
		}
	}
}

// The records of an aliased decode point into one buffer, not into data.
func TestUnmarshalAliases(t *testing.T) {
	m := bigResponse(3, 20<<10)
	b, _ := proto.Marshal(m)
	data := mem.BufferSlice{mem.SliceBuffer(b)}
	got := &pb.FetchResponse{Topics: []*pb.FetchTopicResult{{Topic: "stale"}}}
	if err := (Codec{}).Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m, got) {
		t.Fatal("decoded message differs (not reset?)")
	}
	p0, p1 := got.Topics[0].Partitions[0].Records, got.Topics[0].Partitions[1].Records
	if &p0[0] == &b[bytes.Index(b, m.Topics[0].Partitions[0].Records)] {
		t.Fatal("records alias gRPC's buffer, which is freed after Unmarshal")
	}
	if cap(p0) != len(p0) {
		t.Fatalf("records capacity %d > length %d: an append would overwrite the next field", cap(p0), len(p0))
	}
	// Both partitions' records live in the one materialized buffer.
	if d := uintptr(unsafe.Pointer(&p1[0])) - uintptr(unsafe.Pointer(&p0[0])); d > uintptr(len(b)) {
		t.Fatal("records are not slices of one buffer")
	}
}

// FuzzUnmarshalAliased: on any input the aliasing decoder agrees with
// proto.Unmarshal — both fail, or both succeed with equal messages — and
// never panics.
func FuzzUnmarshalAliased(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 8 {
		m := randFetchResponse(r)
		b, _ := proto.Marshal(m)
		if len(b) > 4096 {
			b = b[:4096]
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x05, 0x12, 0x03, 0x7a, 0x01, 0x41})
	f.Fuzz(func(t *testing.T, b []byte) {
		want := &pb.FetchResponse{}
		werr := proto.Unmarshal(b, want)
		got := &pb.FetchResponse{}
		gerr := unmarshalAliased(mem.BufferSlice{mem.SliceBuffer(b)}, got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("proto.Unmarshal: %v; aliased: %v", werr, gerr)
		}
		if werr == nil && !proto.Equal(want, got) {
			t.Fatalf("decoded messages differ\nproto   %s\naliased %s", protocmpText(want), protocmpText(got))
		}
	})
}
