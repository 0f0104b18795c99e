package client

import (
	"time"

	"github.com/stratalog/strata/storage/record"
)

// Header is one record header: a non-null string key and a value (nil is a
// null value, distinct from an empty one). It is the batch codec's type, so
// headers go into and come out of batches without conversion.
type Header = record.Header

// Record is one record, as a Consumer returns it (every field set) and as a
// Producer takes it (Topic, Key, Value, Headers, optionally Partition and
// Timestamp; the broker assigns Offset and LeaderEpoch).
//
// Key and Value are nil for null and non-nil (possibly empty) otherwise. The
// byte slices a Consumer returns belong to the caller: the consumer never
// writes to them again.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	// Timestamp is the record's create time, or the broker's append time on a
	// topic with message.timestamp.type=LogAppendTime.
	Timestamp time.Time
	// LeaderEpoch is the partition leader epoch the record was appended under.
	LeaderEpoch int32
}
