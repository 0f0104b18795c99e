package wire

import (
	"fmt"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// The client's zero-copy Produce. A producer holds each partition's records
// as several built batches, each in its own builder's buffer; the generated
// pb.ProduceRequest wants them as one records field, which costs a
// concatenation, and then proto.Marshal copies that field again. Here the
// request names the batches and Codec.Marshal hands each one (> 1 KiB) to
// gRPC as a buffer of its own, by reference:
//
//	[ hdr: acks, timeout, topic tag+len, name, partition tag+len, number,
//	  records tag + len(batch 1 + ... + batch n) ][ batch 1 ] ... [ batch n ][ hdr: next partition ... ]
//
// The bytes are exactly proto.Marshal's of the pb.ProduceRequest whose
// records field is the batches concatenated (fields in number order, proto3
// zero values omitted, unknown fields last), so the broker decodes an
// ordinary ProduceRequest and cannot tell.
//
// Field numbers (strata.v1.ProduceRequest, ProduceTopic, ProducePartition;
// pinned by proto/strata/v1/pin_test.go; do not change). A field added to
// these messages fails TestProduceEncodeMatchesProtoMarshal until it is
// mirrored here.
const (
	fieldProduceAcks      = 1 // ProduceRequest
	fieldProduceTimeoutMs = 2
	fieldProduceTopics    = 3

	fieldProduceTopic      = 1 // ProduceTopic
	fieldProducePartitions = 2

	fieldProducePartition    = 1 // ProducePartition
	fieldProduceRecords      = 2
	fieldProducePlainRecords = 3
)

// ProduceRequest is strata.v1.ProduceRequest for a sender: the same fields,
// but each partition's records are a list of batches that Codec.Marshal
// sends without copying. Send it with
//
//	cc.Invoke(ctx, pb.BrokerService_Produce_FullMethodName, req, resp, wire.CallOption())
//	req.Settle()
//
// # Who owns the batches
//
// gRPC reads the batches after Marshal returns — while its HTTP/2 writer
// copies them into its write buffer — and may still hold them after Invoke
// returns (a cancelled or failed call whose frames are still queued). So the
// batches must stay unchanged until the request says they are free:
// OnRelease(fn) before Invoke, Settle() after it; fn runs exactly once, when
// both Settle was called and gRPC has freed every batch buffer it was given
// (at once in Settle if it was given none, or Marshal never ran or failed).
// Until then, do not write to, reuse or recycle the batches' memory.
type ProduceRequest struct {
	Acks      int32
	TimeoutMs int32
	Topics    []ProduceTopic
	// Unknown is appended after the known fields, as proto.Marshal appends
	// a message's unknown fields: raw, already encoded fields.
	Unknown []byte

	hold produceHold
}

// ProduceTopic is strata.v1.ProduceTopic.
type ProduceTopic struct {
	Topic      string
	Partitions []ProducePartition
	Unknown    []byte
}

// ProducePartition is strata.v1.ProducePartition; the records field is
// Batches concatenated (omitted when that is empty, as proto3 omits an empty
// bytes field).
type ProducePartition struct {
	Partition    int32
	Batches      [][]byte
	PlainRecords []*pb.Record
	Unknown      []byte
}

// OnRelease sets the function that runs once the batches are free again
// (see ProduceRequest). Call it before the request is sent.
func (r *ProduceRequest) OnRelease(fn func()) { r.hold.release = fn }

// Settle tells the request that the caller is done sending it (Invoke
// returned): no further Marshal will take the batches. The release function
// runs now if gRPC holds none of them, else when it frees the last one.
// Call it exactly once.
func (r *ProduceRequest) Settle() { r.hold.drop() }

// produceHold counts the references to a request's batches: the caller's
// until Settle, and one per buffer gRPC was given and has not freed. Its
// zero value stands for the caller's reference alone, so the count is kept
// one below the number of references: the drop that reaches -1 is the last.
// Marshal adds its buffers before handing them out, and runs inside Invoke,
// before Settle, so the count cannot reach -1 early.
type produceHold struct {
	refs    atomic.Int32
	release func()
}

// Get is part of mem.BufferPool; gRPC never asks for a buffer, but answer
// as the default pool would.
func (h *produceHold) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

// Put is called by gRPC once per batch buffer, when it frees it.
func (h *produceHold) Put(*[]byte) { h.drop() }

func (h *produceHold) drop() {
	if h.refs.Add(-1) == -1 && h.release != nil {
		h.release()
	}
}

// records is the size of p's records field: its batches together.
func (p *ProducePartition) records() int {
	n := 0
	for _, b := range p.Batches {
		n += len(b)
	}
	return n
}

// marshalProduce encodes r: the header buffer with every byte but the
// batches of more than inlineMax bytes, which are spliced in as buffers of
// their own, counted in r.hold.
func marshalProduce(r *ProduceRequest) (mem.BufferSlice, error) {
	e := encoders.Get().(*encoder)
	defer func() {
		e.reset()
		encoders.Put(e)
	}()
	total, cutBytes, err := e.sizeProduce(r)
	if err != nil {
		return nil, err
	}
	pooled := e.newHeader(total - cutBytes)
	err = e.writeProduce(r)
	if err == nil && (len(e.hdr) != total-cutBytes || e.next != len(e.sizes)) {
		err = errSizeMismatch
	}
	if err != nil {
		if pooled != nil {
			Pool.Put(pooled)
		}
		e.hdr = nil
		return nil, err
	}
	root := headerBuffer(e.hdr, pooled)
	hdrLen := len(e.hdr)
	e.hdr = nil
	// Counted before any buffer exists, so that no Put can see the count
	// reach the end while Marshal is still handing buffers out.
	r.hold.refs.Add(int32(len(e.cuts)))
	slots := make([][]byte, len(e.cuts))
	return splice(root, hdrLen, e.cuts, func(i int, rec []byte) mem.Buffer {
		// Capacity trimmed to the length: the buffer covers the batch only
		// and, above the pooling threshold, gRPC calls Put when it frees it.
		slots[i] = rec[:len(rec):len(rec)]
		return mem.NewBuffer(&slots[i], &r.hold)
	}), nil
}

// sizeProduce is the size pass (see sizeTop): total output size and the
// bytes of the batches that will be cut out of the header.
func (e *encoder) sizeProduce(r *ProduceRequest) (total, cutBytes int, err error) {
	total += varintField(fieldProduceAcks, uint64(r.Acks))
	total += varintField(fieldProduceTimeoutMs, uint64(r.TimeoutMs))
	for i := range r.Topics {
		t := &r.Topics[i]
		if !utf8.ValidString(t.Topic) {
			return 0, 0, fmt.Errorf("wire: strata.v1.ProduceTopic.topic: %w", errInvalidUTF8)
		}
		slot := len(e.sizes)
		e.sizes = append(e.sizes, 0)
		size := stringField(fieldProduceTopic, t.Topic)
		for j := range t.Partitions {
			n, cb := e.sizeProducePartition(&t.Partitions[j])
			size += lenField(fieldProducePartitions, n)
			cutBytes += cb
		}
		size += len(t.Unknown)
		e.sizes[slot] = size
		total += lenField(fieldProduceTopics, size)
	}
	total += len(r.Unknown)
	return total, cutBytes, nil
}

func (e *encoder) sizeProducePartition(p *ProducePartition) (size, cutBytes int) {
	slot := len(e.sizes)
	e.sizes = append(e.sizes, 0)
	size += varintField(fieldProducePartition, uint64(p.Partition))
	if n := p.records(); n > 0 {
		size += lenField(fieldProduceRecords, n)
		for _, b := range p.Batches {
			if len(b) > inlineMax {
				cutBytes += len(b)
			}
		}
	}
	for _, rec := range p.PlainRecords {
		size += lenField(fieldProducePlainRecords, e.leafSize(rec))
	}
	size += len(p.Unknown)
	e.sizes[slot] = size
	return size, cutBytes
}

// writeProduce is the write pass: it appends the encoding to e.hdr and
// records a cut for each batch of more than inlineMax bytes. It fails only
// where proto.Marshal fails: a plain record header key that is not UTF-8.
func (e *encoder) writeProduce(r *ProduceRequest) error {
	e.hdr = appendVarint(e.hdr, fieldProduceAcks, uint64(r.Acks))
	e.hdr = appendVarint(e.hdr, fieldProduceTimeoutMs, uint64(r.TimeoutMs))
	for i := range r.Topics {
		t := &r.Topics[i]
		e.hdr = protowire.AppendTag(e.hdr, fieldProduceTopics, protowire.BytesType)
		e.hdr = protowire.AppendVarint(e.hdr, uint64(e.sizes[e.next]))
		e.next++
		e.hdr = appendString(e.hdr, fieldProduceTopic, t.Topic)
		for j := range t.Partitions {
			if err := e.writeProducePartition(&t.Partitions[j]); err != nil {
				return err
			}
		}
		e.hdr = append(e.hdr, t.Unknown...)
	}
	e.hdr = append(e.hdr, r.Unknown...)
	return nil
}

func (e *encoder) writeProducePartition(p *ProducePartition) error {
	b := protowire.AppendTag(e.hdr, fieldProducePartitions, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(e.sizes[e.next]))
	e.next++
	b = appendVarint(b, fieldProducePartition, uint64(p.Partition))
	if n := p.records(); n > 0 {
		b = protowire.AppendTag(b, fieldProduceRecords, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		for _, batch := range p.Batches {
			if len(batch) > inlineMax {
				e.cuts = append(e.cuts, cut{at: len(b), rec: batch})
			} else {
				b = append(b, batch...)
			}
		}
	}
	for _, rec := range p.PlainRecords {
		var err error
		if b, err = e.appendLeaf(b, fieldProducePlainRecords, rec); err != nil {
			return err
		}
	}
	e.hdr = append(b, p.Unknown...)
	return nil
}
