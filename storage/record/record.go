package record

// A record inside a batch's (decompressed) records section:
//
//	field            encoding            notes
//	length           varint              bytes of the record after this field
//	attributes       int8                unused by Kafka, written as 0, carried as is
//	timestampDelta   varlong             timestamp - batch baseTimestamp
//	offsetDelta      varint              offset - batch baseOffset
//	keyLength        varint              -1: null key
//	key              keyLength bytes
//	valueLength      varint              -1: null value (a tombstone)
//	value            valueLength bytes
//	headerCount      varint              >= 0
//	headers          headerCount times:
//	  keyLength      varint              >= 0: a header key is never null
//	  key            keyLength bytes     UTF-8 by convention, not checked
//	  valueLength    varint              -1: null value
//	  value          valueLength bytes
//
// varint is a zigzag-encoded int32 in at most 5 bytes, varlong a zigzag
// int64 in at most 10 (the protobuf sint32/sint64 encoding, as Go's
// binary.AppendVarint and binary.Varint write and read it). A record's fields
// must span exactly length bytes. Records follow each other with nothing in
// between; the section holds exactly the batch's recordCount records, with
// strictly increasing offset deltas no greater than the batch's
// lastOffsetDelta. This layout is part of the format: do not change.

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math"
)

const (
	maxVarintLen32 = 5
	maxVarintLen64 = binary.MaxVarintLen64
)

// Record is one record of a batch, decoded in place: Key, Value and the
// headers alias the batch (or, for a compressed batch, the Iterator's scratch
// buffer) and stay valid only as long as that memory does.
type Record struct {
	// Offset is the batch's base offset plus OffsetDelta.
	Offset int64
	// OffsetDelta is the record's offset relative to the batch's base offset.
	OffsetDelta int32
	// Timestamp is the batch's base timestamp plus the record's delta, or the
	// batch's max timestamp when the batch uses LogAppendTime.
	Timestamp int64
	// Attributes is the record's attributes byte (unused by Kafka; 0).
	Attributes int8
	// Key is nil for a null key and non-nil (possibly empty) otherwise.
	Key []byte
	// Value is nil for a null value (a tombstone) and non-nil otherwise.
	Value []byte
	// HeaderCount is the number of headers.
	HeaderCount int

	headers []byte // the encoded headers, already checked by decodeRecord
}

// IsTombstone reports whether the record's value is null.
func (r *Record) IsTombstone() bool { return r.Value == nil }

// HeaderIter walks a record's headers without allocating:
//
//	h := rec.HeaderIter()
//	for h.Next() {
//		use(h.Key, h.Value)
//	}
//
// Key is never nil; Value is nil for a null header value. Both alias the
// record's memory.
type HeaderIter struct {
	Key, Value []byte
	buf        []byte
	left       int
}

// HeaderIter returns an iterator over r's headers.
func (r *Record) HeaderIter() HeaderIter { return HeaderIter{buf: r.headers, left: r.HeaderCount} }

// Next advances to the next header and reports whether there was one.
func (h *HeaderIter) Next() bool {
	if h.left <= 0 {
		return false
	}
	h.left--
	// decodeRecord checked these bytes, so the reads cannot fail; stay
	// defensive anyway and stop rather than panic.
	var n int
	var ok bool
	if h.Key, n, ok = readBytes(h.buf); !ok || h.Key == nil {
		h.left = 0
		return false
	}
	h.buf = h.buf[n:]
	if h.Value, n, ok = readBytes(h.buf); !ok {
		h.left = 0
		return false
	}
	h.buf = h.buf[n:]
	return true
}

// Headers returns r's headers as a range-over-func sequence of key, value
// pairs, with HeaderIter's aliasing rules.
func (r *Record) Headers() iter.Seq2[[]byte, []byte] {
	return func(yield func(k, v []byte) bool) {
		h := r.HeaderIter()
		for h.Next() {
			if !yield(h.Key, h.Value) {
				return
			}
		}
	}
}

// readVarint reads a zigzag varint that must fit an int32 in at most 5 bytes.
func readVarint(b []byte) (v int32, n int, ok bool) {
	x, n := binary.Varint(b)
	if n <= 0 || n > maxVarintLen32 || x < math.MinInt32 || x > math.MaxInt32 {
		return 0, 0, false
	}
	return int32(x), n, true
}

// readVarlong reads a zigzag varint of up to 10 bytes.
func readVarlong(b []byte) (v int64, n int, ok bool) {
	x, n := binary.Varint(b)
	if n <= 0 {
		return 0, 0, false
	}
	return x, n, true
}

// readBytes reads a varint length and that many bytes; length -1 is null
// (nil), 0 an empty non-nil slice. The result's capacity is clipped so an
// append by the caller cannot overwrite what follows.
func readBytes(b []byte) (v []byte, n int, ok bool) {
	l, n, ok := readVarint(b)
	if !ok || l < -1 {
		return nil, 0, false
	}
	if l == -1 {
		return nil, n, true
	}
	end := n + int(l)
	if end > len(b) {
		return nil, 0, false
	}
	return b[n:end:end], end, true
}

// Errors for malformed record fields: prebuilt so that rejecting a bad
// record allocates nothing beyond the Iterator's final wrap.
var (
	errRecordLength = fmt.Errorf("%w: bad record length", ErrCorruptRecord)
	errTimestamp    = fmt.Errorf("%w: bad timestamp delta", ErrCorruptRecord)
	errOffsetDelta  = fmt.Errorf("%w: bad offset delta", ErrCorruptRecord)
	errKey          = fmt.Errorf("%w: bad key length", ErrCorruptRecord)
	errValue        = fmt.Errorf("%w: bad value length", ErrCorruptRecord)
	errHeaderCount  = fmt.Errorf("%w: bad header count", ErrCorruptRecord)
	errHeaderKey    = fmt.Errorf("%w: bad or null header key", ErrCorruptRecord)
	errHeaderValue  = fmt.Errorf("%w: bad header value length", ErrCorruptRecord)
)

// decodeRecord parses the record at the front of buf into r, leaving
// Offset and Timestamp relative (OffsetDelta and the raw timestamp delta in
// Timestamp); the Iterator makes them absolute. It returns the bytes
// consumed. Every bounds violation is ErrCorruptRecord.
func decodeRecord(buf []byte, r *Record) (int, error) {
	length, n, ok := readVarint(buf)
	if !ok || length < 1 {
		return 0, errRecordLength
	}
	end := n + int(length)
	if end > len(buf) {
		return 0, fmt.Errorf("%w: record length %d overruns its batch by %d bytes", ErrCorruptRecord, length, end-len(buf))
	}
	b := buf[n:end]
	r.Attributes = int8(b[0])
	p := 1
	ts, n, ok := readVarlong(b[p:])
	if !ok {
		return 0, errTimestamp
	}
	r.Timestamp = ts
	p += n
	if r.OffsetDelta, n, ok = readVarint(b[p:]); !ok {
		return 0, errOffsetDelta
	}
	p += n
	if r.Key, n, ok = readBytes(b[p:]); !ok {
		return 0, errKey
	}
	p += n
	if r.Value, n, ok = readBytes(b[p:]); !ok {
		return 0, errValue
	}
	p += n
	count, n, ok := readVarint(b[p:])
	if !ok || count < 0 {
		return 0, errHeaderCount
	}
	p += n
	hstart := p
	for i := int32(0); i < count; i++ {
		k, n, ok := readBytes(b[p:])
		if !ok || k == nil {
			return 0, errHeaderKey
		}
		p += n
		if _, n, ok = readBytes(b[p:]); !ok {
			return 0, errHeaderValue
		}
		p += n
	}
	if p != len(b) {
		return 0, fmt.Errorf("%w: record length %d, fields span %d", ErrCorruptRecord, length, p)
	}
	r.headers = b[hstart:p:p]
	r.HeaderCount = int(count)
	return end, nil
}

// varintLen is the size of v as a zigzag varint.
func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

// bytesLen is the encoded size of a nullable byte field.
func bytesLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

// appendBytes appends a nullable byte field: nil as length -1.
func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}
