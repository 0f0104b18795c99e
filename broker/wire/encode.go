package wire

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// The hand encoder of the fetch path: FetchResponse and SubscribeResponse
// (field for field the same shape), FetchTopicResult and FetchPartitionResult.
// It writes exactly what proto.Marshal writes — fields in field-number order,
// proto3 zero values omitted, unknown fields last — except that each large
// records field's bytes are not copied: they are cut out of the output and
// handed to gRPC as their own buffer.
//
// Field numbers of the hand-encoded messages (pinned by
// proto/strata/v1/pin_test.go; do not change). A field added to one of these
// messages fails TestEncodeMatchesProtoMarshal until it is encoded here.
const (
	fieldTopics        = 1 // FetchResponse, SubscribeResponse
	fieldNodeEndpoints = 2

	fieldTopic      = 1 // FetchTopicResult
	fieldPartitions = 2

	fieldPartition            = 1 // FetchPartitionResult
	fieldErrorCode            = 2
	fieldErrorMessage         = 3
	fieldHighWatermark        = 4
	fieldLastStableOffset     = 5
	fieldLogStartOffset       = 6
	fieldCurrentLeader        = 7
	fieldDivergingEpoch       = 8
	fieldPreferredReadReplica = 9
	fieldNextFetchOffset      = 10
	fieldRecords              = 15
	fieldDecodedRecords       = 16
)

// inlineMax is the largest records field copied into the header buffer
// instead of being sent as a buffer of its own: at or below gRPC's pooling
// threshold (1 KiB) a separate buffer costs more than the copy, and
// mem.NewBuffer would not call its pool's Put for it.
const inlineMax = 1 << 10

// errInvalidUTF8 matches proto.Marshal's refusal of a string field that is
// not valid UTF-8.
var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// leafOpts marshals the small sub-messages (PartitionLeader, Record, ...)
// whose sizes were just computed by proto.Size.
var leafOpts = proto.MarshalOptions{UseCachedSize: true}

// cut is a records field left out of the header: its bytes go on the wire
// right after hdr[:at].
type cut struct {
	at  int
	rec []byte
}

// encoder holds one Marshal's scratch state. Encoders are pooled.
type encoder struct {
	hdr   []byte // every byte of the output except the cut records
	cuts  []cut
	sizes []int // message sizes from the size pass, in encoding order
	next  int   // the next entry of sizes the write pass consumes
}

func (e *encoder) reset() {
	e.hdr = e.hdr[:0]
	clear(e.cuts) // drop references to the records
	e.cuts = e.cuts[:0]
	e.sizes = e.sizes[:0]
	e.next = 0
}

// top is the shape shared by FetchResponse and SubscribeResponse.
type top struct {
	topics  []*pb.FetchTopicResult
	nodes   []*pb.BrokerNode
	unknown []byte
}

// sizeTop computes the sizes of every nested message (appending them to
// e.sizes in the order writeTop consumes them) and returns the total output
// size, the header size (the output minus cut records) and the number of
// cuts. It validates what proto.Marshal validates (UTF-8), so the write pass
// cannot fail on these messages.
func (e *encoder) sizeTop(t top) (total, cutBytes, cuts int, err error) {
	for _, tr := range t.topics {
		n, cb, c, err := e.sizeTopic(tr)
		if err != nil {
			return 0, 0, 0, err
		}
		total += lenField(fieldTopics, n)
		cutBytes += cb
		cuts += c
	}
	for _, nd := range t.nodes {
		total += lenField(fieldNodeEndpoints, e.leafSize(nd))
	}
	total += len(t.unknown)
	return total, cutBytes, cuts, nil
}

func (e *encoder) sizeTopic(tr *pb.FetchTopicResult) (size, cutBytes, cuts int, err error) {
	slot := len(e.sizes)
	e.sizes = append(e.sizes, 0) // the topic's size, filled in below
	if tr == nil {
		return 0, 0, 0, nil // proto.Marshal encodes a nil element as an empty message
	}
	if !utf8.ValidString(tr.Topic) {
		return 0, 0, 0, fmt.Errorf("wire: strata.v1.FetchTopicResult.topic: %w", errInvalidUTF8)
	}
	size += stringField(fieldTopic, tr.Topic)
	for _, p := range tr.Partitions {
		n, cb, c, err := e.sizePartition(p)
		if err != nil {
			return 0, 0, 0, err
		}
		size += lenField(fieldPartitions, n)
		cutBytes += cb
		cuts += c
	}
	size += len(tr.ProtoReflect().GetUnknown())
	e.sizes[slot] = size
	return size, cutBytes, cuts, nil
}

func (e *encoder) sizePartition(p *pb.FetchPartitionResult) (size, cutBytes, cuts int, err error) {
	slot := len(e.sizes)
	e.sizes = append(e.sizes, 0)
	if p == nil {
		return 0, 0, 0, nil
	}
	if !utf8.ValidString(p.ErrorMessage) {
		return 0, 0, 0, fmt.Errorf("wire: strata.v1.FetchPartitionResult.error_message: %w", errInvalidUTF8)
	}
	size += varintField(fieldPartition, uint64(p.Partition))
	size += varintField(fieldErrorCode, uint64(p.ErrorCode))
	size += stringField(fieldErrorMessage, p.ErrorMessage)
	size += varintField(fieldHighWatermark, uint64(p.HighWatermark))
	size += varintField(fieldLastStableOffset, uint64(p.LastStableOffset))
	size += varintField(fieldLogStartOffset, uint64(p.LogStartOffset))
	if p.CurrentLeader != nil {
		size += lenField(fieldCurrentLeader, e.leafSize(p.CurrentLeader))
	}
	if p.DivergingEpoch != nil {
		size += lenField(fieldDivergingEpoch, e.leafSize(p.DivergingEpoch))
	}
	size += varintField(fieldPreferredReadReplica, uint64(p.PreferredReadReplica))
	size += varintField(fieldNextFetchOffset, uint64(p.NextFetchOffset))
	if n := len(p.Records); n > 0 {
		size += lenField(fieldRecords, n)
		if n > inlineMax {
			cutBytes += n
			cuts++
		}
	}
	for _, r := range p.DecodedRecords {
		size += lenField(fieldDecodedRecords, e.leafSize(r))
	}
	size += len(p.ProtoReflect().GetUnknown())
	e.sizes[slot] = size
	return size, cutBytes, cuts, nil
}

// writeTop appends the encoding to e.hdr, recording cuts for records larger
// than inlineMax. It consumes e.sizes in the order sizeTop produced them.
func (e *encoder) writeTop(t top) error {
	for _, tr := range t.topics {
		if err := e.writeTopic(tr); err != nil {
			return err
		}
	}
	for _, nd := range t.nodes {
		var err error
		if e.hdr, err = e.appendLeaf(e.hdr, fieldNodeEndpoints, nd); err != nil {
			return err
		}
	}
	e.hdr = append(e.hdr, t.unknown...)
	return nil
}

func (e *encoder) writeTopic(tr *pb.FetchTopicResult) error {
	e.hdr = protowire.AppendTag(e.hdr, fieldTopics, protowire.BytesType)
	e.hdr = protowire.AppendVarint(e.hdr, uint64(e.sizes[e.next]))
	e.next++
	if tr == nil {
		return nil
	}
	e.hdr = appendString(e.hdr, fieldTopic, tr.Topic)
	for _, p := range tr.Partitions {
		if err := e.writePartition(p); err != nil {
			return err
		}
	}
	e.hdr = append(e.hdr, tr.ProtoReflect().GetUnknown()...)
	return nil
}

func (e *encoder) writePartition(p *pb.FetchPartitionResult) error {
	e.hdr = protowire.AppendTag(e.hdr, fieldPartitions, protowire.BytesType)
	e.hdr = protowire.AppendVarint(e.hdr, uint64(e.sizes[e.next]))
	e.next++
	if p == nil {
		return nil
	}
	b := e.hdr
	b = appendVarint(b, fieldPartition, uint64(p.Partition))
	b = appendVarint(b, fieldErrorCode, uint64(p.ErrorCode))
	b = appendString(b, fieldErrorMessage, p.ErrorMessage)
	b = appendVarint(b, fieldHighWatermark, uint64(p.HighWatermark))
	b = appendVarint(b, fieldLastStableOffset, uint64(p.LastStableOffset))
	b = appendVarint(b, fieldLogStartOffset, uint64(p.LogStartOffset))
	var err error
	if p.CurrentLeader != nil {
		if b, err = e.appendLeaf(b, fieldCurrentLeader, p.CurrentLeader); err != nil {
			return err
		}
	}
	if p.DivergingEpoch != nil {
		if b, err = e.appendLeaf(b, fieldDivergingEpoch, p.DivergingEpoch); err != nil {
			return err
		}
	}
	b = appendVarint(b, fieldPreferredReadReplica, uint64(p.PreferredReadReplica))
	b = appendVarint(b, fieldNextFetchOffset, uint64(p.NextFetchOffset))
	if n := len(p.Records); n > 0 {
		b = protowire.AppendTag(b, fieldRecords, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		if n > inlineMax {
			e.cuts = append(e.cuts, cut{at: len(b), rec: p.Records})
		} else {
			b = append(b, p.Records...)
		}
	}
	for _, r := range p.DecodedRecords {
		if b, err = e.appendLeaf(b, fieldDecodedRecords, r); err != nil {
			return err
		}
	}
	e.hdr = append(b, p.ProtoReflect().GetUnknown()...)
	return nil
}

// leafSize returns the size of a sub-message encoded the standard way
// (PartitionLeader, FetchDivergingEpoch, Record, BrokerNode) and records it
// in e.sizes for appendLeaf. A nil element of a repeated field is encoded by
// proto.Marshal as an empty message, and so it is here.
func (e *encoder) leafSize(m proto.Message) int {
	n := proto.Size(m)
	e.sizes = append(e.sizes, n)
	return n
}

// appendLeaf appends a sub-message field the standard way. The size pass
// called proto.Size on m (leafSize), so its cached size is current.
func (e *encoder) appendLeaf(b []byte, num protowire.Number, m proto.Message) ([]byte, error) {
	n := e.sizes[e.next]
	e.next++
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	if n == 0 {
		return b, nil // nothing to write; also covers a typed nil m
	}
	b, err := leafOpts.MarshalAppend(b, m)
	if err != nil {
		return nil, fmt.Errorf("wire: %w", err)
	}
	return b, nil
}

// Field encodings of proto3 implicit-presence fields: zero values are
// omitted. Signed values are passed as uint64(v), which sign-extends int32
// the way protobuf does (a negative int32 takes ten bytes).

func varintField(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func stringField(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return lenField(num, len(s))
}

func lenField(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}
