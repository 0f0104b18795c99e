package group

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Record is one record of __consumer_offsets: a GroupRecordKey and its
// value, or a nil Value (a tombstone: compaction drops the key).
type Record struct {
	Key   []byte
	Value []byte
}

// Key types of GroupRecordKey.type.
const (
	keyOffset = 1
	keyGroup  = 2
	keyMember = 3
)

var deterministic = proto.MarshalOptions{Deterministic: true}

func mustMarshal(m proto.Message) []byte {
	b, err := deterministic.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("group: marshal %T: %v", m, err)) // our own messages always marshal
	}
	return b
}

func offsetRecord(group string, tp TP, v *pb.OffsetCommitValue) Record {
	k := mustMarshal(&pb.GroupRecordKey{Type: keyOffset, GroupId: group, Topic: tp.Topic, Partition: tp.Partition})
	if v == nil {
		return Record{Key: k}
	}
	return Record{Key: k, Value: mustMarshal(v)}
}

func groupRecord(group string, v *pb.GroupMetadataValue) Record {
	k := mustMarshal(&pb.GroupRecordKey{Type: keyGroup, GroupId: group})
	if v == nil {
		return Record{Key: k}
	}
	return Record{Key: k, Value: mustMarshal(v)}
}

func memberRecord(group, member string, v *pb.GroupMemberValue) Record {
	k := mustMarshal(&pb.GroupRecordKey{Type: keyMember, GroupId: group, MemberId: member})
	if v == nil {
		return Record{Key: k}
	}
	return Record{Key: k, Value: mustMarshal(v)}
}
