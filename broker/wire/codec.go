package wire

import (
	"errors"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Name is the codec's content-subtype: a client opts in with
// grpc.CallContentSubtype(Name) (see CallOption), and the request then
// travels as "application/grpc+strata-zc". Part of the wire contract: do not
// change.
const Name = "strata-zc"

// Codec is the zero-copy codec: a grpc encoding.CodecV2 that encodes
// FetchResponse and SubscribeResponse with their large records fields as
// buffers of their own (see the package comment), and every other message,
// and every Unmarshal, exactly as gRPC's default "proto" codec does. Its
// output is byte for byte what proto.Marshal produces, so either side of a
// connection may use it without the other knowing. The zero value is ready;
// it is registered under Name when the package is imported.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// protoCodec is gRPC's default codec, the fallback for every other message.
var protoCodec encoding.CodecV2

func init() {
	protoCodec = encoding.GetCodecV2(protocodec.Name)
	encoding.RegisterCodecV2(Codec{})
}

// CallOption makes a client call use the codec (content-subtype Name). Any
// Strata broker answers it; a server that does not know the subtype falls
// back to "proto", which reads the same bytes.
func CallOption() grpc.CallOption { return grpc.CallContentSubtype(Name) }

// ServerOption makes a server encode every response with the codec,
// whatever content-subtype the client sent ("proto" included): since the
// bytes are the same, every client then gets zero-copy fetches, and every
// release attached with Attach runs as soon as gRPC has written the records
// rather than after a garbage collection.
func ServerOption() grpc.ServerOption { return grpc.ForceServerCodecV2(Codec{}) }

// Name returns Name.
func (Codec) Name() string { return Name }

// Marshal encodes v. FetchResponse and SubscribeResponse are encoded by hand
// (records by reference, attached memory released once gRPC has freed the
// buffers); anything else goes to the default proto codec.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *pb.FetchResponse:
		if m == nil {
			return nil, nil
		}
		return marshalTop(top{m.Topics, m.NodeEndpoints, m.ProtoReflect().GetUnknown()}, take(m))
	case *pb.SubscribeResponse:
		if m == nil {
			return nil, nil
		}
		return marshalTop(top{m.Topics, m.NodeEndpoints, m.ProtoReflect().GetUnknown()}, take(m))
	case *ProduceRequest:
		if m == nil {
			return nil, nil
		}
		return marshalProduce(m)
	}
	return protoCodec.Marshal(v)
}

// Unmarshal is the default proto codec's — it copies what it keeps, so data
// may be freed when it returns — except for three types. A ProduceRequest is
// decoded by hand with its records aliasing one gathered copy of the message
// (decode_produce.go). A ReceivedProduce or ReceivedFetch keeps the message
// in a buffer from Pool (no copy at all when it arrived in one buffer) with
// the records aliasing it until the caller's Release (received.go). (An
// aliasing decoder into a new gathered buffer was measured for consumers and
// gained nothing: Go zeroes that buffer, which costs what the default's
// second copy does; a pooled one is neither zeroed nor garbage.)
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *pb.ProduceRequest:
		return unmarshalProduce(data.Materialize(), m)
	case *ReceivedProduce:
		return unmarshalReceived(data, m)
	case *ReceivedFetch:
		return unmarshalReceivedFetch(data, m)
	}
	return protoCodec.Unmarshal(data, v)
}

var encoders = sync.Pool{New: func() any { return new(encoder) }}

// errSizeMismatch means the size and write passes disagree: a bug here, or
// the message was mutated while being encoded.
var errSizeMismatch = errors.New("wire: encoded size differs from computed size (message mutated during Marshal?)")

// marshalTop encodes t. o, if not nil, is the release duty taken from the
// registry: it is discharged whatever happens — by the last freed records
// buffer, or at once if none is sent by reference or encoding fails.
func marshalTop(t top, o *owner) (out mem.BufferSlice, err error) {
	e := encoders.Get().(*encoder)
	defer func() {
		e.reset()
		encoders.Put(e)
	}()
	total, cutBytes, _, err := e.sizeTop(t)
	if err != nil {
		if o != nil {
			o.release()
		}
		return nil, err
	}
	hdrSize := total - cutBytes

	// The header: every byte but the cut records, in one buffer.
	pooled := e.newHeader(hdrSize)
	err = e.writeTop(t)
	if err == nil && (len(e.hdr) != hdrSize || e.next != len(e.sizes)) {
		err = errSizeMismatch
	}
	if err != nil {
		if pooled != nil {
			Pool.Put(pooled)
		}
		e.hdr = nil
		if o != nil {
			o.release()
		}
		return nil, err
	}
	root := headerBuffer(e.hdr, pooled)
	e.hdr = nil

	if o != nil {
		o.slots = make([][]byte, len(e.cuts))
		o.pending.Store(1) // Marshal's own, dropped below
	}
	out = splice(root, hdrSize, e.cuts, func(i int, rec []byte) mem.Buffer {
		if o == nil {
			return mem.SliceBuffer(rec) // kept alive by the GC
		}
		// Capacity trimmed to the length: the buffer covers the records
		// only, and is above the pooling threshold, so gRPC calls o.Put
		// when it frees it.
		o.slots[i] = rec[:len(rec):len(rec)]
		o.pending.Add(1)
		return mem.NewBuffer(&o.slots[i], o)
	})
	if o != nil {
		o.done()
	}
	return out, nil
}

// newHeader points e.hdr at an empty buffer of capacity n for the header:
// from Pool (returned as pooled) above gRPC's pooling threshold, else a
// plain allocation (pooled is nil).
func (e *encoder) newHeader(n int) (pooled *[]byte) {
	if mem.IsBelowBufferPoolingThreshold(n) {
		e.hdr = make([]byte, 0, n)
		return nil
	}
	pooled = Pool.Get(n)
	e.hdr = (*pooled)[:0]
	return pooled
}

// headerBuffer wraps the written header as a gRPC buffer: one that goes
// back to Pool when freed if newHeader took it from there.
func headerBuffer(hdr []byte, pooled *[]byte) mem.Buffer {
	if pooled == nil {
		return mem.SliceBuffer(hdr)
	}
	*pooled = hdr
	return mem.NewBuffer(pooled, Pool)
}

// splice is the output of an encoding with cuts: slices of the header
// root (hdrLen bytes) with each cut's records, wrapped by wrap(i, rec), in
// between at its place. It takes over the caller's reference to root.
func splice(root mem.Buffer, hdrLen int, cuts []cut, wrap func(i int, rec []byte) mem.Buffer) mem.BufferSlice {
	out := make(mem.BufferSlice, 0, 2*len(cuts)+1)
	prev := 0
	for i, c := range cuts {
		if c.at > prev {
			out = append(out, root.Slice(prev, c.at))
		}
		prev = c.at
		out = append(out, wrap(i, c.rec))
	}
	if prev < hdrLen {
		out = append(out, root.Slice(prev, hdrLen))
	}
	root.Free() // the slices hold their own references
	return out
}
