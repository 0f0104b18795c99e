package wire

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// A ProduceRequest is decoded by hand so that every partition's records
// field aliases one materialized copy of the request, instead of protobuf-go
// copying each records field again (it ignores aliasing for bytes fields):
// one copy and one allocation per request instead of two. The records are
// written to the log before the handler returns and never retained, so the
// buffer is left to the garbage collector. Plain records (a list of Record
// messages) go through proto.Unmarshal. The result equals proto.Unmarshal's,
// unknown fields included.

var (
	errProduceDecode = errors.New("wire: malformed ProduceRequest")
	errFetchDecode   = errors.New("wire: malformed FetchResponse")
)

func unmarshalProduce(b []byte, m *pb.ProduceRequest) error {
	m.Reset()
	return decodeFields(b, m, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) (bool, error) {
		switch {
		case num == 1 && typ == protowire.VarintType:
			m.Acks = int32(x)
		case num == 2 && typ == protowire.VarintType:
			m.TimeoutMs = int32(x)
		case num == 3 && typ == protowire.BytesType:
			t := &pb.ProduceTopic{}
			if err := unmarshalProduceTopic(v, t); err != nil {
				return true, err
			}
			m.Topics = append(m.Topics, t)
		default:
			return false, nil
		}
		return true, nil
	})
}

func unmarshalProduceTopic(b []byte, t *pb.ProduceTopic) error {
	return decodeFields(b, t, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) (bool, error) {
		switch {
		case num == 1 && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return true, fmt.Errorf("%w: topic name is not valid UTF-8", errProduceDecode)
			}
			t.Topic = string(v)
		case num == 2 && typ == protowire.BytesType:
			p := &pb.ProducePartition{}
			if err := unmarshalProducePartition(v, p); err != nil {
				return true, err
			}
			t.Partitions = append(t.Partitions, p)
		default:
			return false, nil
		}
		return true, nil
	})
}

func unmarshalProducePartition(b []byte, p *pb.ProducePartition) error {
	return decodeFields(b, p, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) (bool, error) {
		switch {
		case num == 1 && typ == protowire.VarintType:
			p.Partition = int32(x)
		case num == 2 && typ == protowire.BytesType:
			p.Records = v[:len(v):len(v)] // aliases the request buffer
		case num == 3 && typ == protowire.BytesType:
			r := &pb.Record{}
			if err := proto.Unmarshal(v, r); err != nil {
				return true, err
			}
			p.PlainRecords = append(p.PlainRecords, r)
		default:
			return false, nil
		}
		return true, nil
	})
}

// decodeFields walks the fields of one message, calling fn with each field's
// number, wire type and value (v for length-delimited fields, x for
// varints); a field fn does not handle is kept in m's unknown fields, as
// proto.Unmarshal keeps it.
func decodeFields(b []byte, m proto.Message, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) (bool, error)) error {
	for len(b) > 0 {
		field := b
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errProduceDecode, protowire.ParseError(n))
		}
		b = b[n:]
		var (
			v []byte
			x uint64
		)
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", errProduceDecode, num, protowire.ParseError(n))
		}
		b = b[n:]
		handled, err := fn(num, typ, v, x)
		if err != nil {
			return err
		}
		if !handled {
			r := m.ProtoReflect()
			r.SetUnknown(append(r.GetUnknown(), field[:len(field)-len(b)]...))
		}
	}
	return nil
}
