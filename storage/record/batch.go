// Package record holds Kafka's RecordBatch v2 format, byte for byte: the batch
// header, the records inside it, and the codecs that compress them.
//
// A batch on disk and on the wire:
//
//	offset  size  field
//	     0     8  baseOffset             int64   assigned by the partition leader
//	     8     4  batchLength            int32   bytes after this field
//	    12     4  partitionLeaderEpoch   int32   assigned by the partition leader
//	    16     1  magic                  int8    always 2
//	    17     4  crc                    uint32  CRC-32C (Castagnoli) of bytes [21, end)
//	    21     2  attributes             int16   see the Attr* bits
//	    23     4  lastOffsetDelta        int32
//	    27     8  baseTimestamp          int64   (the delete horizon when AttrDeleteHorizon is set)
//	    35     8  maxTimestamp           int64
//	    43     8  producerId             int64
//	    51     2  producerEpoch          int16
//	    53     4  baseSequence           int32
//	    57     4  recordCount            int32
//	    61     -  records (compressed as a whole when the codec is not None)
//
// All integers are big-endian. baseOffset and partitionLeaderEpoch sit outside
// the CRC so a leader can assign them in place without recomputing it.
// Every offset and constant in this file is part of the format: do not change.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Field offsets within a batch. Part of the format: do not change.
const (
	BaseOffsetOffset           = 0
	LengthOffset               = 8
	PartitionLeaderEpochOffset = 12
	MagicOffset                = 16
	CRCOffset                  = 17
	AttributesOffset           = 21
	LastOffsetDeltaOffset      = 23
	BaseTimestampOffset        = 27
	MaxTimestampOffset         = 35
	ProducerIDOffset           = 43
	ProducerEpochOffset        = 51
	BaseSequenceOffset         = 53
	RecordCountOffset          = 57

	// HeaderSize is the size of a batch with no records.
	HeaderSize = 61
	// LogOverhead is the size of the two fields before batchLength's span:
	// a batch occupies LogOverhead + batchLength bytes.
	LogOverhead = 12
	// Magic is the only batch version Strata reads or writes.
	Magic = 2
)

// Attribute bits. Part of the format: do not change.
const (
	AttrCompressionMask = 0x07
	AttrTimestampType   = 0x08 // set: LogAppendTime; clear: CreateTime
	AttrTransactional   = 0x10
	AttrControl         = 0x20
	AttrDeleteHorizon   = 0x40 // baseTimestamp holds the delete horizon (KIP-534)
)

// NoProducerID, NoProducerEpoch and NoSequence mark a batch written by a
// producer that is not idempotent.
const (
	NoProducerID    = -1
	NoProducerEpoch = -1
	NoSequence      = -1
)

// Errors returned by this package. Compare with errors.Is.
var (
	// ErrCorruptRecord: the bytes are complete but wrong (bad CRC, bad magic,
	// lengths that contradict each other, a record that overruns its batch).
	ErrCorruptRecord = errors.New("record: corrupt record")
	// ErrShortBatch: the buffer ends before the batch does. At the tail of a
	// log this is a torn write, not corruption.
	ErrShortBatch = errors.New("record: batch truncated")
	// ErrUnknownCodec: the attributes name a compression codec we do not know.
	ErrUnknownCodec = errors.New("record: unknown compression codec")
)

// Codec is a compression codec, as numbered in the attributes' low three bits.
// Part of the format: only add to the end.
type Codec int8

const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLZ4    Codec = 3
	CodecZstd   Codec = 4
)

// Valid reports whether c is a codec this package can read and write.
func (c Codec) Valid() bool { return c >= CodecNone && c <= CodecZstd }

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", int8(c))
}

// ParseCodec maps a codec name ("none", "gzip", "snappy", "lz4", "zstd") to its value.
func ParseCodec(name string) (Codec, error) {
	for c := CodecNone; c <= CodecZstd; c++ {
		if c.String() == name {
			return c, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownCodec, name)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Batch is one whole RecordBatch v2, header included, as stored. Its accessors
// do not check bounds beyond the header: call Parse or Validate first on
// untrusted bytes.
type Batch []byte

// Parse returns the batch at the start of buf, checking only its framing
// (enough bytes for the header and for batchLength, magic 2, a sane length).
// It does not verify the CRC: see Validate.
func Parse(buf []byte) (Batch, error) {
	if len(buf) < LogOverhead {
		return nil, ErrShortBatch
	}
	n := int64(int32(binary.BigEndian.Uint32(buf[LengthOffset:])))
	if n < HeaderSize-LogOverhead {
		return nil, fmt.Errorf("%w: batch length %d below header size", ErrCorruptRecord, n)
	}
	size := LogOverhead + n
	if len(buf) <= MagicOffset {
		return nil, ErrShortBatch
	}
	if buf[MagicOffset] != Magic {
		return nil, fmt.Errorf("%w: magic %d, want %d", ErrCorruptRecord, buf[MagicOffset], Magic)
	}
	if int64(len(buf)) < size {
		return nil, ErrShortBatch
	}
	return Batch(buf[:size]), nil
}

// Validate checks the framing, the CRC and the header's internal consistency.
func (b Batch) Validate() error {
	if _, err := Parse(b); err != nil {
		return err
	}
	if int(b.Size()) != len(b) {
		return fmt.Errorf("%w: batch length %d, have %d bytes", ErrCorruptRecord, b.Size(), len(b))
	}
	if got, want := crc32.Checksum(b[AttributesOffset:], castagnoli), b.CRC(); got != want {
		return fmt.Errorf("%w: crc %08x, header says %08x", ErrCorruptRecord, got, want)
	}
	if b.LastOffsetDelta() < 0 {
		return fmt.Errorf("%w: negative last offset delta %d", ErrCorruptRecord, b.LastOffsetDelta())
	}
	// Compaction keeps a batch's offset span while dropping records, so fewer
	// records than offsets is legal; more never is.
	if n := b.RecordCount(); n < 0 || int64(n) > int64(b.LastOffsetDelta())+1 {
		return fmt.Errorf("%w: %d records for %d offsets", ErrCorruptRecord, n, int64(b.LastOffsetDelta())+1)
	}
	if c := b.Codec(); !c.Valid() {
		return fmt.Errorf("%w: %d", ErrUnknownCodec, c)
	}
	return nil
}

// Size is the batch's total size in bytes, from its batchLength field.
func (b Batch) Size() int32 { return LogOverhead + int32(binary.BigEndian.Uint32(b[LengthOffset:])) }

// BaseOffset is the offset of the batch's first record.
func (b Batch) BaseOffset() int64 { return int64(binary.BigEndian.Uint64(b[BaseOffsetOffset:])) }

// LastOffset is the offset of the batch's last record.
func (b Batch) LastOffset() int64 { return b.BaseOffset() + int64(b.LastOffsetDelta()) }

// NextOffset is the offset after the batch's last record.
func (b Batch) NextOffset() int64 { return b.LastOffset() + 1 }

// SetBaseOffset assigns the batch's offsets in place; the CRC is unaffected.
func (b Batch) SetBaseOffset(o int64) { binary.BigEndian.PutUint64(b[BaseOffsetOffset:], uint64(o)) }

// PartitionLeaderEpoch is the leader epoch under which the batch was appended.
func (b Batch) PartitionLeaderEpoch() int32 {
	return int32(binary.BigEndian.Uint32(b[PartitionLeaderEpochOffset:]))
}

// SetPartitionLeaderEpoch stamps the leader epoch in place; the CRC is unaffected.
func (b Batch) SetPartitionLeaderEpoch(e int32) {
	binary.BigEndian.PutUint32(b[PartitionLeaderEpochOffset:], uint32(e))
}

// SetProducer stamps an idempotent producer's id, epoch and base sequence
// in place and recomputes the CRC (the fields are inside it).
func (b Batch) SetProducer(id int64, epoch int16, baseSequence int32) {
	binary.BigEndian.PutUint64(b[ProducerIDOffset:], uint64(id))
	binary.BigEndian.PutUint16(b[ProducerEpochOffset:], uint16(epoch))
	binary.BigEndian.PutUint32(b[BaseSequenceOffset:], uint32(baseSequence))
	b.UpdateCRC()
}

// Magic is the batch's format version.
func (b Batch) Magic() int8 { return int8(b[MagicOffset]) }

// CRC is the checksum stored in the header.
func (b Batch) CRC() uint32 { return binary.BigEndian.Uint32(b[CRCOffset:]) }

// ComputeCRC returns the checksum of the bytes the CRC covers.
func (b Batch) ComputeCRC() uint32 { return crc32.Checksum(b[AttributesOffset:], castagnoli) }

// UpdateCRC recomputes and stores the CRC after a change inside its span.
func (b Batch) UpdateCRC() { binary.BigEndian.PutUint32(b[CRCOffset:], b.ComputeCRC()) }

// Attributes is the raw attributes field.
func (b Batch) Attributes() int16 { return int16(binary.BigEndian.Uint16(b[AttributesOffset:])) }

// Codec is the compression codec of the records section.
func (b Batch) Codec() Codec { return Codec(b.Attributes() & AttrCompressionMask) }

// IsTransactional reports whether the batch belongs to a transaction.
func (b Batch) IsTransactional() bool { return b.Attributes()&AttrTransactional != 0 }

// IsControl reports whether the batch holds control records (commit/abort markers).
func (b Batch) IsControl() bool { return b.Attributes()&AttrControl != 0 }

// LogAppendTime reports whether timestamps are the broker's append time.
func (b Batch) LogAppendTime() bool { return b.Attributes()&AttrTimestampType != 0 }

// LastOffsetDelta is LastOffset - BaseOffset.
func (b Batch) LastOffsetDelta() int32 {
	return int32(binary.BigEndian.Uint32(b[LastOffsetDeltaOffset:]))
}

// BaseTimestamp is the timestamp records' deltas are relative to.
func (b Batch) BaseTimestamp() int64 { return int64(binary.BigEndian.Uint64(b[BaseTimestampOffset:])) }

// MaxTimestamp is the largest timestamp in the batch.
func (b Batch) MaxTimestamp() int64 { return int64(binary.BigEndian.Uint64(b[MaxTimestampOffset:])) }

// ProducerID is the idempotent producer's id, or NoProducerID.
func (b Batch) ProducerID() int64 { return int64(binary.BigEndian.Uint64(b[ProducerIDOffset:])) }

// ProducerEpoch is the idempotent producer's epoch, or NoProducerEpoch.
func (b Batch) ProducerEpoch() int16 { return int16(binary.BigEndian.Uint16(b[ProducerEpochOffset:])) }

// BaseSequence is the first record's sequence number, or NoSequence.
func (b Batch) BaseSequence() int32 { return int32(binary.BigEndian.Uint32(b[BaseSequenceOffset:])) }

// RecordCount is the number of records in the batch.
func (b Batch) RecordCount() int32 { return int32(binary.BigEndian.Uint32(b[RecordCountOffset:])) }

// Records is the records section, compressed if Codec is not None.
func (b Batch) Records() []byte { return b[HeaderSize:] }
