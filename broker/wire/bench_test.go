package wire

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	pb "github.com/stratalog/strata/proto/strata/v1"
	"github.com/stratalog/strata/storage"
)

const benchRecords = 1 << 20 // 1 MiB of records per response

func benchResponse() *pb.FetchResponse {
	return &pb.FetchResponse{Topics: []*pb.FetchTopicResult{{Topic: "orders", Partitions: []*pb.FetchPartitionResult{{
		Partition: 3, HighWatermark: 123456789, LastStableOffset: 123456789, LogStartOffset: 1000,
		PreferredReadReplica: -1, NextFetchOffset: -1, Records: pattern(0, benchRecords),
	}}}}}
}

// BenchmarkFetchEncodeDefault: gRPC's default proto codec on a FetchResponse
// carrying 1 MiB of records (Marshal, then Free as gRPC does after writing).
func BenchmarkFetchEncodeDefault(b *testing.B) {
	codec := encoding.GetCodecV2(protocodec.Name)
	m := benchResponse()
	b.SetBytes(benchRecords)
	b.ReportAllocs()
	for b.Loop() {
		out, err := codec.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
}

// BenchmarkFetchEncodeZeroCopy: this codec on the same message, with a
// release attached each time as the broker does (Attach, Marshal, Free ->
// release).
func BenchmarkFetchEncodeZeroCopy(b *testing.B) {
	m := benchResponse()
	released := 0
	release := func() { released++ }
	b.SetBytes(benchRecords)
	b.ReportAllocs()
	for b.Loop() {
		Attach(m, release)
		out, err := Codec{}.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
	if released != b.N {
		b.Fatalf("released %d of %d", released, b.N)
	}
}

// BenchmarkFetchEncodeZeroCopyNoAttach: the codec alone, records kept alive
// by the GC (no release to run).
func BenchmarkFetchEncodeZeroCopyNoAttach(b *testing.B) {
	m := benchResponse()
	b.SetBytes(benchRecords)
	b.ReportAllocs()
	for b.Loop() {
		out, err := Codec{}.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
}

// BenchmarkFetchLoopback: end to end over loopback TCP. A test-only
// BrokerService answers each Fetch with 1 MiB of records from a segment file
// in the page cache, read by pread into a pooled buffer (Region.Bytes, with
// AttachPooled) or mapped (Region.Mmap, with AttachMapped); one client
// fetches in a loop. MB/s is records bytes received.
func BenchmarkFetchLoopback(b *testing.B) {
	path := filepath.Join(b.TempDir(), "00000000000000000000.log")
	if err := os.WriteFile(path, pattern(0, benchRecords), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	sf := storage.OpenSegmentFile(f)
	defer sf.CloseWhenUnused()
	region := storage.Region{File: sf, Pos: 0, Len: benchRecords}

	for _, bc := range []struct {
		name   string
		mapped bool
		server []grpc.ServerOption
		call   []grpc.CallOption
	}{
		// The client only counts the response bytes (no unmarshal): what is
		// left is the server's encoding and the transport.
		{name: "client=discard/codec=proto/read=pooled", call: []grpc.CallOption{grpc.CallContentSubtype(discardProto.name)}},
		{name: "client=discard/codec=strata-zc/read=pooled", call: []grpc.CallOption{grpc.CallContentSubtype(discardZC.name)}},
		{name: "client=discard/codec=proto/read=mmap", mapped: true, call: []grpc.CallOption{grpc.CallContentSubtype(discardProto.name)}},
		{name: "client=discard/codec=strata-zc/read=mmap", mapped: true, call: []grpc.CallOption{grpc.CallContentSubtype(discardZC.name)}},
		{name: "client=discard/codec=strata-zc/read=pooled/writebuf=0", server: []grpc.ServerOption{grpc.WriteBufferSize(0)}, call: []grpc.CallOption{grpc.CallContentSubtype(discardZC.name)}},
		// A real client: gRPC's proto Unmarshal of the response.
		{name: "client=proto/codec=proto/read=pooled"},
		{name: "client=proto/codec=strata-zc/read=pooled", call: []grpc.CallOption{CallOption()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := &benchServer{region: region, mapped: bc.mapped}
			cc := serve(b, srv, bc.server...)
			client := pb.NewBrokerServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			req := &pb.FetchRequest{ReplicaId: -1, Topics: []*pb.FetchTopic{{Topic: "orders", Partitions: []*pb.FetchPartition{{Partition: 3}}}}}
			if _, err := client.Fetch(ctx, req, bc.call...); err != nil { // connect
				b.Fatal(err)
			}
			b.SetBytes(benchRecords)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := client.Fetch(ctx, req, bc.call...)
				if err != nil {
					b.Fatal(err)
				}
				if len(resp.Topics) == 0 {
					continue // a discarding client decodes nothing
				}
				if n := len(resp.Topics[0].Partitions[0].Records); n != benchRecords {
					b.Fatalf("got %d bytes", n)
				}
			}
		})
	}
}

// benchServer answers Fetch with 1 MiB of records: a pread of the region
// into a pooled buffer (Region.Bytes), or an mmap of it.
type benchServer struct {
	pb.UnimplementedBrokerServiceServer
	region storage.Region
	mapped bool
}

func (s *benchServer) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	resp := &pb.FetchResponse{Topics: []*pb.FetchTopicResult{{Topic: "orders", Partitions: []*pb.FetchPartitionResult{{
		Partition: 3, HighWatermark: 123456789, LastStableOffset: 123456789, LogStartOffset: 1000,
		PreferredReadReplica: -1, NextFetchOffset: -1,
	}}}}}
	part := resp.Topics[0].Partitions[0]
	if s.mapped {
		m, err := s.region.Mmap()
		if err != nil {
			return nil, err
		}
		part.Records = m.Bytes()
		AttachMapped(resp, m)
		return resp, nil
	}
	buf, err := s.region.Bytes(storage.GetBuffer(int(s.region.Len)))
	if err != nil {
		return nil, err
	}
	part.Records = buf
	AttachPooled(resp, buf)
	return resp, nil
}

// discardCodec is a benchmark codec: it marshals with enc (the default proto
// codec or this package's) and unmarshals a FetchResponse by checking its
// length only, so a loopback benchmark measures the server and the
// transport without the client's decode. Registered under its own
// content-subtype so the server side of the same process uses enc.
type discardCodec struct {
	name string
	enc  encoding.CodecV2
}

var (
	discardProto = discardCodec{name: "strata-bench-discard-proto", enc: encoding.GetCodecV2(protocodec.Name)}
	discardZC    = discardCodec{name: "strata-bench-discard-zc", enc: Codec{}}
)

func init() {
	encoding.RegisterCodecV2(discardProto)
	encoding.RegisterCodecV2(discardZC)
}

func (c discardCodec) Name() string                           { return c.name }
func (c discardCodec) Marshal(v any) (mem.BufferSlice, error) { return c.enc.Marshal(v) }
func (c discardCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*pb.FetchResponse); ok {
		if data.Len() < benchRecords {
			return fmt.Errorf("short response: %d bytes", data.Len())
		}
		return nil
	}
	return c.enc.Unmarshal(data, v)
}
