package wire

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// A FetchResponse decoded for ReceivedFetch: every partition's records
// field aliases the response buffer; every other field is decoded by
// protobuf-go (the partition's other fields are merged from the byte ranges
// around the records, so new fields need no change here). The result equals
// proto.Unmarshal's, unknown fields included.

var mergeOpts = proto.UnmarshalOptions{Merge: true}

func unmarshalFetchResponse(b []byte, m *pb.FetchResponse) error {
	m.Reset()
	return decodeFields(b, m, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) (bool, error) {
		switch {
		case num == 1 && typ == protowire.BytesType:
			t := &pb.FetchTopicResult{}
			if err := unmarshalFetchTopic(v, t); err != nil {
				return true, err
			}
			m.Topics = append(m.Topics, t)
		case num == 2 && typ == protowire.BytesType:
			n := &pb.BrokerNode{}
			if err := proto.Unmarshal(v, n); err != nil {
				return true, err
			}
			m.NodeEndpoints = append(m.NodeEndpoints, n)
		default:
			return false, nil
		}
		return true, nil
	})
}

func unmarshalFetchTopic(b []byte, t *pb.FetchTopicResult) error {
	return decodeFields(b, t, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) (bool, error) {
		switch {
		case num == 1 && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return true, fmt.Errorf("%w: topic name is not valid UTF-8", errFetchDecode)
			}
			t.Topic = string(v)
		case num == 2 && typ == protowire.BytesType:
			p := &pb.FetchPartitionResult{}
			if err := unmarshalFetchPartition(v, p); err != nil {
				return true, err
			}
			t.Partitions = append(t.Partitions, p)
		default:
			return false, nil
		}
		return true, nil
	})
}

// unmarshalFetchPartition takes the records field (15) by reference and
// merges each run of other fields with protobuf-go.
func unmarshalFetchPartition(b []byte, p *pb.FetchPartitionResult) error {
	const recordsField = 15
	runStart := 0 // start of the pending run of other fields
	merge := func(end int) error {
		if end > runStart {
			if err := mergeOpts.Unmarshal(b[runStart:end], p); err != nil {
				return err
			}
		}
		return nil
	}
	for at := 0; at < len(b); {
		num, typ, n := protowire.ConsumeTag(b[at:])
		if n < 0 {
			return fmt.Errorf("%w: %v", errFetchDecode, protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[at+n:])
		if m < 0 {
			return fmt.Errorf("%w: field %d: %v", errFetchDecode, num, protowire.ParseError(m))
		}
		if num == recordsField && typ == protowire.BytesType {
			if err := merge(at); err != nil {
				return err
			}
			v, _ := protowire.ConsumeBytes(b[at+n:])
			p.Records = v[:len(v):len(v)] // aliases the response buffer
			runStart = at + n + m
		}
		at += n + m
	}
	return merge(len(b))
}
