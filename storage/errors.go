// Package storage is the partition log: segments of Kafka v2 record batches with
// sparse offset and time indexes, the leader-epoch cache, checkpoints, recovery,
// retention, compaction, and file regions that are sent without copying.
// It talks to no network and knows no metadata.
package storage

import "errors"

// Errors returned by the storage package. Compare with errors.Is; they are
// wrapped with detail. record.ErrCorruptRecord marks corrupt input batches.
var (
	// ErrOffsetOutOfRange: the offset is below the log start or above the log end.
	ErrOffsetOutOfRange = errors.New("storage: offset out of range")
	// ErrRecordTooLarge: a batch larger than the configured maximum or than a segment.
	ErrRecordTooLarge = errors.New("storage: record batch too large")
	// ErrSegmentDeleted: the segment a reader held was removed by retention,
	// truncation or compaction. The reader should look the offset up again.
	ErrSegmentDeleted = errors.New("storage: segment deleted")
	// ErrClosed: the log or file was closed.
	ErrClosed = errors.New("storage: closed")
	// ErrStorageFailed: an earlier write or fsync failed; the log refuses
	// further writes until it is reopened (the error sticks).
	ErrStorageFailed = errors.New("storage: log failed")
	// ErrIndexFull: an index has no room for another entry; the segment must roll.
	ErrIndexFull = errors.New("storage: index full")
	// ErrCorruptIndex: an index or checkpoint file fails its sanity check.
	ErrCorruptIndex = errors.New("storage: corrupt index")
	// ErrCorruptCheckpoint: a checkpoint file does not parse.
	ErrCorruptCheckpoint = errors.New("storage: corrupt checkpoint")
	// ErrInvalidConfig: a log config value out of its type or range.
	ErrInvalidConfig = errors.New("storage: invalid config")
)
