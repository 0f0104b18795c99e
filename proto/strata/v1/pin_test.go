package stratav1

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// These values reach disk (the Raft log, snapshots) and the wire. They are
// append-only: a failure here means a value was renumbered or removed.
// Add new values to the tables; never change existing lines.

func TestErrorCodeValuesPinned(t *testing.T) {
	want := map[string]int32{
		"NONE": 0, "UNKNOWN_SERVER_ERROR": 1, "INVALID_REQUEST": 2, "REQUEST_TIMED_OUT": 3,
		"NOT_CONTROLLER": 4, "UNKNOWN_TOPIC_OR_PARTITION": 5, "UNKNOWN_TOPIC_ID": 6,
		"TOPIC_ALREADY_EXISTS": 7, "INVALID_TOPIC_EXCEPTION": 8, "INVALID_PARTITIONS": 9,
		"INVALID_REPLICATION_FACTOR": 10, "INVALID_REPLICA_ASSIGNMENT": 11, "INVALID_CONFIG": 12,
		"POLICY_VIOLATION": 13, "STALE_BROKER_EPOCH": 14, "FENCED_LEADER_EPOCH": 15,
		"INVALID_UPDATE_VERSION": 16, "DUPLICATE_BROKER_REGISTRATION": 17,
		"BROKER_ID_NOT_REGISTERED": 18, "INELIGIBLE_REPLICA": 19, "ELECTION_NOT_NEEDED": 20,
		"PREFERRED_LEADER_NOT_AVAILABLE": 21, "ELIGIBLE_LEADERS_NOT_AVAILABLE": 22,
		"NO_REASSIGNMENT_IN_PROGRESS": 23, "REASSIGNMENT_IN_PROGRESS": 24,
		"INCONSISTENT_CLUSTER_ID": 25, "NOT_LEADER_OR_FOLLOWER": 26, "UNKNOWN_LEADER_EPOCH": 27,
		"NOT_ENOUGH_REPLICAS": 28, "DUPLICATE_VOTER": 29, "VOTER_NOT_FOUND": 30,
		"BROKER_NOT_AVAILABLE": 31,
		// Broker service.
		"NOT_ENOUGH_REPLICAS_AFTER_APPEND": 32, "MESSAGE_TOO_LARGE": 33, "CORRUPT_MESSAGE": 34,
		"INVALID_REQUIRED_ACKS": 35, "OFFSET_OUT_OF_RANGE": 36, "LEADER_NOT_AVAILABLE": 37,
		"OFFSET_NOT_AVAILABLE": 38, "INVALID_RECORD": 39, "INVALID_TIMESTAMP": 40,
		"UNSUPPORTED_COMPRESSION_TYPE": 41, "STORAGE_ERROR": 42, "OUT_OF_ORDER_SEQUENCE_NUMBER": 43,
		"DUPLICATE_SEQUENCE_NUMBER": 44, "INVALID_PRODUCER_EPOCH": 45, "UNKNOWN_PRODUCER_ID": 46,
		// Group service.
		"COORDINATOR_NOT_AVAILABLE": 47, "NOT_COORDINATOR": 48, "COORDINATOR_LOAD_IN_PROGRESS": 49,
		"GROUP_ID_NOT_FOUND": 50, "INVALID_GROUP_ID": 51, "UNKNOWN_MEMBER_ID": 52,
		"FENCED_MEMBER_EPOCH": 53, "STALE_MEMBER_EPOCH": 54, "PARTITION_NOT_OWNED": 55,
		"NON_EMPTY_GROUP": 56, "UNSUPPORTED_ASSIGNOR": 57, "INVALID_REGULAR_EXPRESSION": 58,
		"GROUP_MAX_SIZE_REACHED": 59, "OFFSET_METADATA_TOO_LARGE": 60,
	}
	checkEnum(t, ErrorCode(0).Descriptor(), want)
}

func TestBrokerEnumValuesPinned(t *testing.T) {
	checkEnum(t, TimestampType(0).Descriptor(), map[string]int32{
		"TIMESTAMP_TYPE_CREATE_TIME": 0, "TIMESTAMP_TYPE_LOG_APPEND_TIME": 1,
	})
	checkEnum(t, IsolationLevel(0).Descriptor(), map[string]int32{
		"ISOLATION_LEVEL_READ_UNCOMMITTED": 0, "ISOLATION_LEVEL_READ_COMMITTED": 1,
	})
}

// The fetch path's field numbers: broker/wire encodes these messages by hand.
func TestBrokerFetchFieldsPinned(t *testing.T) {
	checkFields(t, (&FetchResponse{}).ProtoReflect().Descriptor(), map[string]int32{
		"topics": 1, "node_endpoints": 2,
	})
	checkFields(t, (&SubscribeResponse{}).ProtoReflect().Descriptor(), map[string]int32{
		"topics": 1, "node_endpoints": 2,
	})
	checkFields(t, (&FetchTopicResult{}).ProtoReflect().Descriptor(), map[string]int32{
		"topic": 1, "partitions": 2,
	})
	checkFields(t, (&FetchPartitionResult{}).ProtoReflect().Descriptor(), map[string]int32{
		"partition": 1, "error_code": 2, "error_message": 3, "high_watermark": 4,
		"last_stable_offset": 5, "log_start_offset": 6, "current_leader": 7, "diverging_epoch": 8,
		"preferred_read_replica": 9, "next_fetch_offset": 10, "records": 15, "decoded_records": 16,
	})
	checkFields(t, (&ProducePartition{}).ProtoReflect().Descriptor(), map[string]int32{
		"partition": 1, "records": 2, "plain_records": 3,
	})
	checkFields(t, (&Record{}).ProtoReflect().Descriptor(), map[string]int32{
		"offset": 1, "timestamp_ms": 2, "key": 3, "value": 4, "headers": 5, "timestamp_type": 6, "leader_epoch": 7,
	})
}

func TestMetadataEnumValuesPinned(t *testing.T) {
	checkEnum(t, ConfigResourceType(0).Descriptor(), map[string]int32{
		"CONFIG_RESOURCE_TYPE_UNSPECIFIED": 0, "CONFIG_RESOURCE_TYPE_TOPIC": 1, "CONFIG_RESOURCE_TYPE_BROKER": 2,
	})
	checkEnum(t, ConfigSource(0).Descriptor(), map[string]int32{
		"CONFIG_SOURCE_UNSPECIFIED": 0, "CONFIG_SOURCE_DEFAULT": 1, "CONFIG_SOURCE_TOPIC": 2,
		"CONFIG_SOURCE_BROKER": 3, "CONFIG_SOURCE_CLUSTER_DEFAULT": 4,
	})
	checkEnum(t, AlterConfigOp(0).Descriptor(), map[string]int32{
		"ALTER_CONFIG_OP_SET": 0, "ALTER_CONFIG_OP_DELETE": 1, "ALTER_CONFIG_OP_APPEND": 2, "ALTER_CONFIG_OP_SUBTRACT": 3,
	})
	checkEnum(t, ElectionType(0).Descriptor(), map[string]int32{
		"ELECTION_TYPE_PREFERRED": 0, "ELECTION_TYPE_UNCLEAN": 1,
	})
}

func checkEnum(t *testing.T, d protoreflect.EnumDescriptor, want map[string]int32) {
	t.Helper()
	vals := d.Values()
	if vals.Len() < len(want) {
		t.Errorf("%s: %d values, want at least %d (values are never removed)", d.FullName(), vals.Len(), len(want))
	}
	for name, num := range want {
		v := vals.ByName(protoreflect.Name(name))
		if v == nil {
			t.Errorf("%s: value %s is gone", d.FullName(), name)
			continue
		}
		if int32(v.Number()) != num {
			t.Errorf("%s.%s = %d, pinned at %d", d.FullName(), name, v.Number(), num)
		}
	}
}

// The oneof numbers of MetadataRecord: each record kind's field number.
func TestMetadataRecordFieldsPinned(t *testing.T) {
	want := map[string]int32{
		"register_broker": 1, "fence_broker": 2, "unfence_broker": 3, "unregister_broker": 4,
		"topic": 5, "remove_topic": 6, "config": 7, "partition": 8, "partition_change": 9,
		"producer_ids": 10, "feature_level": 11, "cluster_id": 12, "broker_registration_change": 13,
	}
	checkFields(t, (&MetadataRecord{}).ProtoReflect().Descriptor(), want)
	checkFields(t, (&MetadataBatch{}).ProtoReflect().Descriptor(), map[string]int32{"records": 1})
	checkFields(t, (&PartitionChangeRecord{}).ProtoReflect().Descriptor(), map[string]int32{
		"topic_id": 1, "partition": 2, "leader": 3, "isr": 4, "replicas": 5,
		"adding_replicas": 6, "removing_replicas": 7, "leader_epoch": 8, "partition_epoch": 9,
	})
	checkFields(t, (&PartitionRecord{}).ProtoReflect().Descriptor(), map[string]int32{
		"topic_id": 1, "partition": 2, "replicas": 3, "isr": 4, "leader": 5, "leader_epoch": 6,
		"partition_epoch": 7, "adding_replicas": 8, "removing_replicas": 9,
	})
	checkFields(t, (&MetadataImage{}).ProtoReflect().Descriptor(), map[string]int32{
		"offset": 1, "cluster_id": 2, "brokers": 3, "topics": 4, "broker_configs": 5,
		"next_producer_id": 6, "features": 7, "error_count": 8, "recent_errors": 9,
	})
}

func checkFields(t *testing.T, d protoreflect.MessageDescriptor, want map[string]int32) {
	t.Helper()
	for name, num := range want {
		f := d.Fields().ByName(protoreflect.Name(name))
		if f == nil {
			t.Errorf("%s: field %s is gone", d.FullName(), name)
			continue
		}
		if int32(f.Number()) != num {
			t.Errorf("%s.%s = %d, pinned at %d", d.FullName(), name, f.Number(), num)
		}
	}
}
