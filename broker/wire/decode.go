package wire

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// The aliasing decoder of the fetch path, for clients. gRPC's default
// Unmarshal gathers the received frames into a pooled buffer and then
// proto.Unmarshal copies each records field out of it: two copies of every
// fetched byte. Here the frames are gathered once, into a buffer the
// garbage collector owns, and each records field of the decoded message is
// a slice of that buffer: one copy. Every other field is decoded by
// proto.Unmarshal (Merge) over the runs of bytes between the records and
// path fields, so the result equals proto.Unmarshal's in every case,
// unknown fields included.

// aliasMin is the smallest response decoded by aliasing: below it the
// default decoder's copies cost less than the bookkeeping.
const aliasMin = 16 << 10

var mergeOpts = proto.UnmarshalOptions{Merge: true}

var errTruncated = errors.New("wire: cannot parse invalid wire-format data")

// unmarshalAliased decodes data into m (a *pb.FetchResponse or
// *pb.SubscribeResponse, already reset).
func unmarshalAliased(data mem.BufferSlice, m proto.Message) error {
	b := data.Materialize() // the one copy; records alias it from here on
	switch v := m.(type) {
	case *pb.FetchResponse:
		return decodeFields(b, v, func(num protowire.Number, val []byte) (bool, error) {
			if num != fieldTopics {
				return false, nil
			}
			tr := &pb.FetchTopicResult{}
			v.Topics = append(v.Topics, tr)
			return true, decodeTopic(val, tr)
		})
	case *pb.SubscribeResponse:
		return decodeFields(b, v, func(num protowire.Number, val []byte) (bool, error) {
			if num != fieldTopics {
				return false, nil
			}
			tr := &pb.FetchTopicResult{}
			v.Topics = append(v.Topics, tr)
			return true, decodeTopic(val, tr)
		})
	}
	return fmt.Errorf("wire: unmarshalAliased of %T", m)
}

func decodeTopic(b []byte, tr *pb.FetchTopicResult) error {
	return decodeFields(b, tr, func(num protowire.Number, val []byte) (bool, error) {
		if num != fieldPartitions {
			return false, nil
		}
		p := &pb.FetchPartitionResult{}
		tr.Partitions = append(tr.Partitions, p)
		return true, decodePartition(val, p)
	})
}

func decodePartition(b []byte, p *pb.FetchPartitionResult) error {
	return decodeFields(b, p, func(num protowire.Number, val []byte) (bool, error) {
		if num != fieldRecords {
			return false, nil
		}
		p.Records = val[:len(val):len(val)] // aliased; capacity cut so an append copies
		return true, nil
	})
}

// decodeFields walks the fields of one message in b. Length-delimited fields
// that special handles are decoded by it; every other field is left to
// proto.Unmarshal, which merges each run of such fields into m in order.
func decodeFields(b []byte, m proto.Message, special func(protowire.Number, []byte) (bool, error)) error {
	run := 0 // start of the current run of fields left to proto
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return fmt.Errorf("%w: %v", errTruncated, protowire.ParseError(n))
		}
		if typ == protowire.BytesType {
			val, k := protowire.ConsumeBytes(b[i+n:])
			if k < 0 {
				return fmt.Errorf("%w: %v", errTruncated, protowire.ParseError(k))
			}
			if ok, err := special(num, val); ok || err != nil {
				if err != nil {
					return err
				}
				if err := mergeRun(b[run:i], m); err != nil {
					return err
				}
				i += n + k
				run = i
				continue
			}
			i += n + k
			continue
		}
		k := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if k < 0 {
			return fmt.Errorf("%w: %v", errTruncated, protowire.ParseError(k))
		}
		i += n + k
	}
	return mergeRun(b[run:], m)
}

func mergeRun(b []byte, m proto.Message) error {
	if len(b) == 0 {
		return nil
	}
	return mergeOpts.Unmarshal(b, m)
}
