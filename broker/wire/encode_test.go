package wire

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// fill sets every field of m, recursively, to random values (each field set
// with probability 3/4). It walks the descriptor, so a field added to the
// proto is filled too — and the equality tests below then fail until the
// hand encoder knows it.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if r.IntN(4) == 0 {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range r.IntN(3) {
				mp.Set(randValue(r, fd.MapKey(), nil, depth).MapKey(), randValue(r, fd.MapValue(), func() protoreflect.Value { return mp.NewValue() }, depth))
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind && depth > 3 {
				continue
			}
			l := m.Mutable(fd).List()
			for range r.IntN(4) {
				l.Append(randValue(r, fd, l.NewElement, depth))
			}
		default:
			if fd.Kind() == protoreflect.MessageKind && depth > 3 {
				continue
			}
			m.Set(fd, randValue(r, fd, func() protoreflect.Value { return m.NewField(fd) }, depth))
		}
	}
	if r.IntN(8) == 0 { // unknown fields are kept and re-sent by proto.Marshal
		var u []byte
		u = protowire.AppendTag(u, 1000+protowire.Number(r.IntN(100)), protowire.VarintType)
		u = protowire.AppendVarint(u, r.Uint64())
		m.SetUnknown(u)
	}
}

func randValue(r *rand.Rand, fd protoreflect.FieldDescriptor, newMsg func() protoreflect.Value, depth int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 0)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(randInt32(r) % 64))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(randInt32(r))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(randInt64(r))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(randInt64(r)))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(randInt64(r)))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(r.Float32())
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(r.Float64())
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(randString(r))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(randBytes(r))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		v := newMsg()
		fill(r, v.Message(), depth+1)
		return v
	}
	panic("unhandled kind " + fd.Kind().String())
}

// randInt32 favours the edges: zero (omitted), -1 (ten bytes), extremes.
func randInt32(r *rand.Rand) int32 {
	switch r.IntN(6) {
	case 0:
		return 0
	case 1:
		return -1
	case 2:
		return math.MinInt32
	case 3:
		return math.MaxInt32
	}
	return int32(r.Uint32())
}

func randInt64(r *rand.Rand) int64 {
	switch r.IntN(6) {
	case 0:
		return 0
	case 1:
		return -1
	case 2:
		return math.MinInt64
	case 3:
		return math.MaxInt64
	}
	return int64(r.Uint64() >> r.IntN(64))
}

func randString(r *rand.Rand) string {
	const alphabet = "abcdefghij-._ é漢字"
	rs := []rune(alphabet)
	n := r.IntN(20)
	out := make([]rune, n)
	for i := range out {
		out[i] = rs[r.IntN(len(rs))]
	}
	return string(out)
}

// randBytes: empty, small (inlined), just around the 1 KiB cut threshold,
// and large (sent by reference).
func randBytes(r *rand.Rand) []byte {
	var n int
	switch r.IntN(6) {
	case 0:
		n = 0
	case 1:
		n = r.IntN(100)
	case 2:
		n = inlineMax - 1 + r.IntN(3)
	case 3:
		n = 4096 + r.IntN(1<<16)
	default:
		n = r.IntN(3 * inlineMax)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randFetchResponse(r *rand.Rand) *pb.FetchResponse {
	m := &pb.FetchResponse{}
	fill(r, m.ProtoReflect(), 0)
	return m
}

// encode runs the codec and concatenates its output.
func encode(t testing.TB, m any) []byte {
	t.Helper()
	out, err := Codec{}.Marshal(m)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	b := out.Materialize()
	out.Free()
	return b
}

func TestEncodeMatchesProtoMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	det := proto.MarshalOptions{Deterministic: true}
	for i := range 2000 {
		var m proto.Message
		if i%2 == 0 {
			m = randFetchResponse(r)
		} else {
			s := &pb.SubscribeResponse{}
			fill(r, s.ProtoReflect(), 0)
			m = s
		}
		got := encode(t, m)
		want, err := det.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: codec output (%d bytes) differs from deterministic proto.Marshal (%d bytes)\n%v",
				i, len(got), len(want), protocmpText(m))
		}
		plain, _ := proto.Marshal(m)
		if !bytes.Equal(got, plain) {
			t.Fatalf("message %d: codec output differs from proto.Marshal", i)
		}
		back := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(got, back); err != nil {
			t.Fatalf("message %d: Unmarshal: %v", i, err)
		}
		if !proto.Equal(m, back) {
			t.Fatalf("message %d: round trip differs:\nsent %v\nreceived %v", i, protocmpText(m), protocmpText(back))
		}
	}
}

func protocmpText(m proto.Message) string {
	s := prototext.Format(m)
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	return s
}

func TestEncodeEdgeCases(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, 5000)
	cases := map[string]*pb.FetchResponse{
		"empty":           {},
		"nil topic":       {Topics: []*pb.FetchTopicResult{nil}},
		"nil partition":   {Topics: []*pb.FetchTopicResult{{Topic: "t", Partitions: []*pb.FetchPartitionResult{nil}}}},
		"nil record":      {Topics: []*pb.FetchTopicResult{{Partitions: []*pb.FetchPartitionResult{{DecodedRecords: []*pb.Record{nil, {}}}}}}},
		"empty leader":    {Topics: []*pb.FetchTopicResult{{Partitions: []*pb.FetchPartitionResult{{CurrentLeader: &pb.PartitionLeader{}}}}}},
		"negatives":       {Topics: []*pb.FetchTopicResult{{Partitions: []*pb.FetchPartitionResult{{Partition: -1, HighWatermark: -1, PreferredReadReplica: -1, NextFetchOffset: -1, ErrorCode: -3}}}}},
		"empty records":   {Topics: []*pb.FetchTopicResult{{Partitions: []*pb.FetchPartitionResult{{Records: []byte{}}}}}},
		"threshold":       {Topics: []*pb.FetchTopicResult{{Partitions: []*pb.FetchPartitionResult{{Records: big[:inlineMax]}, {Records: big[:inlineMax+1]}}}}},
		"records only":    {Topics: []*pb.FetchTopicResult{{Partitions: []*pb.FetchPartitionResult{{Records: big}}}}},
		"two big":         {Topics: []*pb.FetchTopicResult{{Topic: "a", Partitions: []*pb.FetchPartitionResult{{Records: big}, {Partition: 1, Records: big[1:]}}}, {Topic: "b", Partitions: []*pb.FetchPartitionResult{{Records: big[2:]}}}}},
		"nodes after big": {Topics: []*pb.FetchTopicResult{{Partitions: []*pb.FetchPartitionResult{{Records: big}}}}, NodeEndpoints: []*pb.BrokerNode{{NodeId: 3, Host: "h", Port: 9092}}},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			got := encode(t, m)
			want, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("codec %x\nproto %x", got, want)
			}
		})
	}
	if out, err := (Codec{}).Marshal((*pb.FetchResponse)(nil)); err != nil || out.Len() != 0 {
		t.Fatalf("typed nil: %v, %d bytes", err, out.Len())
	}
}

// The output holds the large records by reference: the buffer the codec
// emits for them is the caller's slice itself.
func TestEncodeRecordsByReference(t *testing.T) {
	rec := bytes.Repeat([]byte{7}, 64<<10)
	m := &pb.FetchResponse{Topics: []*pb.FetchTopicResult{{Topic: "t", Partitions: []*pb.FetchPartitionResult{
		{Partition: 0, HighWatermark: 10, Records: rec},
		{Partition: 1, HighWatermark: 10, Records: rec[:100]}, // inlined
	}}}}
	out, err := Codec{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	found := 0
	for _, b := range out {
		d := b.ReadOnlyData()
		if len(d) > 0 && &d[0] == &rec[0] {
			found++
			if len(d) != len(rec) {
				t.Errorf("records buffer is %d bytes, want %d", len(d), len(rec))
			}
		}
	}
	if found != 1 {
		t.Fatalf("records slice found %d times in the output, want 1 (by reference)", found)
	}
	if out.Len() != proto.Size(m) {
		t.Fatalf("output %d bytes, proto.Size %d", out.Len(), proto.Size(m))
	}
}

func TestEncodeInvalidUTF8(t *testing.T) {
	for name, m := range map[string]*pb.FetchResponse{
		"topic":   {Topics: []*pb.FetchTopicResult{{Topic: "\xff"}}},
		"message": {Topics: []*pb.FetchTopicResult{{Partitions: []*pb.FetchPartitionResult{{ErrorMessage: "\xfe"}}}}},
		"header":  {Topics: []*pb.FetchTopicResult{{Partitions: []*pb.FetchPartitionResult{{DecodedRecords: []*pb.Record{{Headers: []*pb.RecordHeader{{Key: "\xff"}}}}}}}}},
		"node":    {NodeEndpoints: []*pb.BrokerNode{{Host: "\xff"}}},
	} {
		if _, err := proto.Marshal(m); err == nil {
			t.Fatalf("%s: proto.Marshal accepted invalid UTF-8", name)
		}
		if _, err := (Codec{}).Marshal(m); err == nil {
			t.Errorf("%s: codec accepted invalid UTF-8", name)
		}
	}
}

// Other messages go through the default codec unchanged.
func TestFallback(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, m := range []proto.Message{&pb.FetchRequest{}, &pb.ProduceRequest{}, &pb.MetadataResponse{}, &pb.ProduceResponse{}} {
		fill(r, m.ProtoReflect(), 0)
		got := encode(t, m)
		want, _ := proto.Marshal(m)
		if !bytes.Equal(got, want) {
			t.Fatalf("%T: fallback output differs", m)
		}
		back := m.ProtoReflect().New().Interface()
		out, _ := Codec{}.Marshal(m)
		if err := (Codec{}).Unmarshal(out, back); err != nil {
			t.Fatal(err)
		}
		out.Free()
		if !proto.Equal(m, back) {
			t.Fatalf("%T: round trip differs", m)
		}
	}
	if _, err := (Codec{}).Marshal(struct{}{}); err == nil {
		t.Fatal("Marshal of a non-proto value succeeded")
	}
}

// FuzzEncode: any FetchResponse that proto.Unmarshal accepts (unknown
// fields, odd field orders, repeated singular fields included) is encoded
// by the codec exactly as proto.Marshal encodes it, and never panics.
func FuzzEncode(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 8 {
		b, _ := proto.Marshal(randFetchResponse(r))
		if len(b) > 8192 {
			continue
		}
		f.Add(b)
	}
	big, _ := proto.Marshal(bigResponse(2, 3000))
	f.Add(big)
	f.Fuzz(func(t *testing.T, b []byte) {
		m := &pb.FetchResponse{}
		if proto.Unmarshal(b, m) != nil {
			return
		}
		want, werr := proto.Marshal(m)
		out, gerr := Codec{}.Marshal(m)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("proto.Marshal: %v; codec: %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		got := out.Materialize()
		out.Free()
		if !bytes.Equal(got, want) {
			t.Fatalf("codec output differs from proto.Marshal\ncodec %x\nproto %x", got, want)
		}
	})
}
