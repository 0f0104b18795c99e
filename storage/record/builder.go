package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrInvalidAppend is returned by a Builder asked to write something the
// format cannot hold: offset deltas out of order, a batch over 2 GiB, a base
// timestamp set after the first record, an empty batch with no offset span.
var ErrInvalidAppend = errors.New("record: invalid append")

// NoTimestamp is Kafka's "no timestamp" (-1), written as the timestamps of a
// batch that holds no records.
const NoTimestamp = -1

// Header is one record header. Kafka header keys are non-null strings (the
// Java client's String key(), franz-go's kmsg.Header.Key); a string keeps
// that visible in the type, cannot alias a caller's mutable buffer, and is
// appended to a batch without allocating. Value nil is a null value, distinct
// from an empty one.
type Header struct {
	Key   string
	Value []byte
}

// BatchOptions are the batch-wide fields a Builder writes. The zero value
// is a plain, uncompressed CreateTime batch from a non-idempotent producer,
// with partition leader epoch 0 (the leader stamps the real one on append).
type BatchOptions struct {
	// Codec compresses the records section.
	Codec Codec
	// Idempotent writes ProducerID, ProducerEpoch and BaseSequence as given;
	// when false the batch carries NoProducerID, NoProducerEpoch and
	// NoSequence whatever those fields say, so a zero BatchOptions never
	// claims producer id 0.
	Idempotent    bool
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
	// Transactional sets AttrTransactional (Kafka requires Idempotent too;
	// the Builder does not enforce it).
	Transactional bool
	// Control sets AttrControl: the records are commit/abort markers.
	Control bool
	// LogAppendTime sets AttrTimestampType: readers take every record's
	// timestamp from the batch's maxTimestamp.
	LogAppendTime bool
	// PartitionLeaderEpoch is written as is; see Batch.SetPartitionLeaderEpoch.
	PartitionLeaderEpoch int32
}

// OptionsOf returns the options that rebuild b's header as it is (for
// compaction): its codec, flags, partition leader epoch and producer fields.
// Idempotent is set whenever any producer field differs from its "none"
// value, so the fields are carried byte for byte.
func OptionsOf(b Batch) BatchOptions {
	return BatchOptions{
		Codec:                b.Codec(),
		Idempotent:           b.ProducerID() != NoProducerID || b.ProducerEpoch() != NoProducerEpoch || b.BaseSequence() != NoSequence,
		ProducerID:           b.ProducerID(),
		ProducerEpoch:        b.ProducerEpoch(),
		BaseSequence:         b.BaseSequence(),
		Transactional:        b.IsTransactional(),
		Control:              b.IsControl(),
		LogAppendTime:        b.LogAppendTime(),
		PartitionLeaderEpoch: b.PartitionLeaderEpoch(),
	}
}

// attributes is the batch attributes field for these options.
func (o *BatchOptions) attributes() int16 {
	a := int16(o.Codec) & AttrCompressionMask
	if o.LogAppendTime {
		a |= AttrTimestampType
	}
	if o.Transactional {
		a |= AttrTransactional
	}
	if o.Control {
		a |= AttrControl
	}
	return a
}

// Builder accumulates records into one batch. It owns a buffer that it
// reuses across Reset, so a warm Builder appends and builds without
// allocating (see the benchmarks). A Builder is not safe for concurrent use.
//
// Records get offset deltas 0, 1, 2, ... from Append, or explicit increasing
// deltas from AppendAt. The batch's base timestamp is the first record's
// timestamp unless SetBaseTimestamp or SetDeleteHorizon fixed it before that
// record; its max timestamp is the largest record timestamp. Build leaves
// the base offset 0: the partition leader assigns it with SetBaseOffset.
type Builder struct {
	opts BatchOptions
	// buf holds HeaderSize bytes of header space, then the encoded records.
	buf []byte
	// cbuf is the output for compressed batches: header, then the
	// compressed records.
	cbuf []byte

	count         int32
	lastDelta     int32 // offset delta of the last record; -1 before the first
	spanDelta     int32 // SetLastOffsetDelta's value; -1 if not called
	baseTimestamp int64
	baseSet       bool // baseTimestamp is fixed (first record, SetBaseTimestamp or SetDeleteHorizon)
	deleteHorizon bool
	maxTimestamp  int64
}

// NewBuilder returns a Builder for a batch with opts.
func NewBuilder(opts BatchOptions) *Builder {
	b := new(Builder)
	b.Reset(opts)
	return b
}

// SetProducer sets the idempotent producer fields the next Build writes
// (BatchOptions.Idempotent with these values), keeping the records.
func (b *Builder) SetProducer(id int64, epoch int16, baseSequence int32) {
	b.opts.Idempotent, b.opts.ProducerID, b.opts.ProducerEpoch, b.opts.BaseSequence = true, id, epoch, baseSequence
}

// Grow makes room for a batch of n bytes, header included, so that appending
// up to that size allocates nothing.
func (b *Builder) Grow(n int) {
	if cap(b.buf) < n {
		nb := make([]byte, len(b.buf), n)
		copy(nb, b.buf)
		b.buf = nb
	}
}

// Capacity is the bytes the Builder's buffers hold, used or not.
func (b *Builder) Capacity() int { return cap(b.buf) + cap(b.cbuf) }

// Reset empties the Builder for a new batch with opts, keeping its buffers.
// A Batch returned by an earlier Build is invalid from here on.
func (b *Builder) Reset(opts BatchOptions) {
	b.opts = opts
	if b.buf == nil {
		b.buf = make([]byte, HeaderSize, 4096)
	}
	b.buf = b.buf[:HeaderSize]
	b.cbuf = b.cbuf[:0]
	b.count = 0
	b.lastDelta = -1
	b.spanDelta = -1
	b.baseTimestamp = NoTimestamp
	b.baseSet = false
	b.deleteHorizon = false
	b.maxTimestamp = NoTimestamp
}

// Options returns the options the Builder writes.
func (b *Builder) Options() BatchOptions { return b.opts }

// Count is the number of records appended.
func (b *Builder) Count() int { return int(b.count) }

// EstimatedSize is the size the batch would have uncompressed: exact for
// CodecNone, an upper bound in practice for the others.
func (b *Builder) EstimatedSize() int { return len(b.buf) }

// SetBaseTimestamp fixes the batch's base timestamp, which record timestamp
// deltas are relative to. It must precede the first record.
func (b *Builder) SetBaseTimestamp(ts int64) error {
	if b.count > 0 {
		return fmt.Errorf("%w: base timestamp set after the first record", ErrInvalidAppend)
	}
	b.baseTimestamp, b.baseSet = ts, true
	return nil
}

// SetDeleteHorizon marks the batch as carrying a delete horizon (KIP-534):
// it sets AttrDeleteHorizon and stores horizon in the baseTimestamp field,
// which record timestamps are then relative to. It must precede the first
// record. The log cleaner uses it; producers never do.
func (b *Builder) SetDeleteHorizon(horizon int64) error {
	if err := b.SetBaseTimestamp(horizon); err != nil {
		return err
	}
	b.deleteHorizon = true
	return nil
}

// SetLastOffsetDelta sets the batch's lastOffsetDelta beyond its last
// record's, so that a compacted batch keeps its original offset span after
// trailing records were dropped. It may not be below the last record's
// delta, and later appends must stay at or below it.
func (b *Builder) SetLastOffsetDelta(d int32) error {
	if d < 0 || d < b.lastDelta {
		return fmt.Errorf("%w: last offset delta %d below the last record's %d", ErrInvalidAppend, d, b.lastDelta)
	}
	b.spanDelta = d
	return nil
}

// Append adds a record at the next offset delta (0 for the first). A nil
// key or value is null, a non-nil empty one is empty: the two stay
// distinct. The Builder copies key, value and headers.
func (b *Builder) Append(timestamp int64, key, value []byte, headers []Header) error {
	if b.lastDelta == math.MaxInt32 {
		return fmt.Errorf("%w: offset delta overflow", ErrInvalidAppend)
	}
	return b.AppendAt(b.lastDelta+1, timestamp, key, value, headers)
}

// AppendAt adds a record at an explicit offset delta, which must be greater
// than the previous record's (compaction keeps records at their original
// offsets and drops the others). Otherwise as Append.
func (b *Builder) AppendAt(offsetDelta int32, timestamp int64, key, value []byte, headers []Header) error {
	if offsetDelta <= b.lastDelta {
		return fmt.Errorf("%w: offset delta %d after %d", ErrInvalidAppend, offsetDelta, b.lastDelta)
	}
	if b.spanDelta >= 0 && offsetDelta > b.spanDelta {
		return fmt.Errorf("%w: offset delta %d past the last offset delta %d", ErrInvalidAppend, offsetDelta, b.spanDelta)
	}
	if b.count == math.MaxInt32 {
		return fmt.Errorf("%w: too many records", ErrInvalidAppend)
	}
	if !b.baseSet {
		b.baseTimestamp, b.baseSet = timestamp, true
	}
	tsDelta := timestamp - b.baseTimestamp

	// The body's size comes first on the wire, so add it up before writing.
	size := 1 + varintLen(tsDelta) + varintLen(int64(offsetDelta)) + bytesLen(key) + bytesLen(value) + varintLen(int64(len(headers)))
	for i := range headers {
		h := &headers[i]
		size += varintLen(int64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
	}
	if size > math.MaxInt32-len(b.buf)-maxVarintLen32 {
		return fmt.Errorf("%w: batch would exceed 2 GiB", ErrInvalidAppend)
	}

	buf := grow(b.buf, maxVarintLen32+size)
	buf = binary.AppendVarint(buf, int64(size))
	buf = append(buf, 0) // attributes
	buf = binary.AppendVarint(buf, tsDelta)
	buf = binary.AppendVarint(buf, int64(offsetDelta))
	buf = appendBytes(buf, key)
	buf = appendBytes(buf, value)
	buf = binary.AppendVarint(buf, int64(len(headers)))
	for i := range headers {
		h := &headers[i]
		buf = binary.AppendVarint(buf, int64(len(h.Key)))
		buf = append(buf, h.Key...)
		buf = appendBytes(buf, h.Value)
	}
	b.buf = buf

	b.count++
	b.lastDelta = offsetDelta
	if b.count == 1 || timestamp > b.maxTimestamp {
		b.maxTimestamp = timestamp
	}
	return nil
}

// Build finishes the batch: it compresses the records if the codec says so,
// writes the header (base offset 0) and the CRC. The returned Batch aliases
// the Builder's buffers and is valid until the next Append, AppendAt, Build
// or Reset. Build may be called again after more appends.
//
// A batch with no records needs SetLastOffsetDelta (an empty batch exists
// only to keep an offset span); its timestamps are the base timestamp if one
// was set, else NoTimestamp.
func (b *Builder) Build() (Batch, error) {
	if !b.opts.Codec.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnknownCodec, b.opts.Codec)
	}
	lastDelta := max(b.lastDelta, b.spanDelta)
	if lastDelta < 0 {
		return nil, fmt.Errorf("%w: empty batch without an offset span", ErrInvalidAppend)
	}
	out := b.buf
	if b.opts.Codec != CodecNone {
		cbuf := grow(b.cbuf[:0], HeaderSize)[:HeaderSize]
		cbuf, err := AppendCompressed(cbuf, b.opts.Codec, b.buf[HeaderSize:])
		b.cbuf = cbuf
		if err != nil {
			return nil, fmt.Errorf("record: compressing %s batch: %w", b.opts.Codec, err)
		}
		if len(cbuf) > math.MaxInt32 {
			return nil, fmt.Errorf("%w: compressed batch exceeds 2 GiB", ErrInvalidAppend)
		}
		out = cbuf
	}

	base, maxTS := b.baseTimestamp, b.maxTimestamp
	if b.count == 0 {
		maxTS = base // NoTimestamp unless set
	}
	attrs := b.opts.attributes()
	if b.deleteHorizon {
		attrs |= AttrDeleteHorizon
	}
	pid, epoch, seq := int64(NoProducerID), int16(NoProducerEpoch), int32(NoSequence)
	if b.opts.Idempotent {
		pid, epoch, seq = b.opts.ProducerID, b.opts.ProducerEpoch, b.opts.BaseSequence
	}

	h := out[:HeaderSize]
	be := binary.BigEndian
	be.PutUint64(h[BaseOffsetOffset:], 0)
	be.PutUint32(h[LengthOffset:], uint32(len(out)-LogOverhead))
	be.PutUint32(h[PartitionLeaderEpochOffset:], uint32(b.opts.PartitionLeaderEpoch))
	h[MagicOffset] = Magic
	be.PutUint16(h[AttributesOffset:], uint16(attrs))
	be.PutUint32(h[LastOffsetDeltaOffset:], uint32(lastDelta))
	be.PutUint64(h[BaseTimestampOffset:], uint64(base))
	be.PutUint64(h[MaxTimestampOffset:], uint64(maxTS))
	be.PutUint64(h[ProducerIDOffset:], uint64(pid))
	be.PutUint16(h[ProducerEpochOffset:], uint16(epoch))
	be.PutUint32(h[BaseSequenceOffset:], uint32(seq))
	be.PutUint32(h[RecordCountOffset:], uint32(b.count))
	batch := Batch(out)
	batch.UpdateCRC()
	return batch, nil
}
