package record

import "fmt"

// Iterator walks the records of one batch at a time without allocating per
// record. The zero value is ready to use; reuse one Iterator across batches
// so its decompression buffer is reused too:
//
//	var it record.Iterator
//	for _, b := range batches {
//		if err := it.Reset(b); err != nil { ... }
//		for it.Next() {
//			r := it.Record()
//			...
//		}
//		if err := it.Err(); err != nil { ... }
//	}
//
// The Iterator checks everything it reads: framing, codec, each record's
// bounds, that the section holds exactly recordCount records and no trailing
// bytes, and that offset deltas strictly increase up to lastOffsetDelta.
// Any violation is ErrCorruptRecord (ErrShortBatch for a truncated batch,
// ErrUnknownCodec for a bad codec), never a panic. It does not verify the
// CRC: call Batch.Validate first on bytes that were not validated already.
//
// The decompression buffer grows to the largest records section the
// Iterator has decompressed (at most the limit) and is kept for reuse; drop
// the Iterator to release it. An Iterator is not safe for concurrent use.
type Iterator struct {
	batch   Batch
	data    []byte // the records section, decompressed
	scratch []byte // decompression buffer, reused across Reset
	limit   int    // max decompressed size; 0 means the default

	pos       int
	read      int32
	count     int32
	lastDelta int32
	prevDelta int32
	baseTS    int64
	appendTS  bool // LogAppendTime: every record's timestamp is maxTimestamp
	done      bool

	rec Record
	err error
}

// SetMaxDecompressedSize bounds how large a compressed batch's records
// section may grow when decompressed; n <= 0 restores
// DefaultMaxDecompressedSize. A larger batch fails Reset with
// ErrCorruptRecord.
func (it *Iterator) SetMaxDecompressedSize(n int) { it.limit = n }

// Reset starts iterating the batch at the start of b (bytes after it are
// ignored), decompressing its records if needed. Records returned before
// are invalid from here on. On error the Iterator yields no records and
// Err returns the same error.
func (it *Iterator) Reset(b Batch) error {
	it.batch, it.data, it.pos, it.read, it.count, it.done = nil, nil, 0, 0, 0, false
	it.rec = Record{}
	it.err = it.reset(b)
	return it.err
}

func (it *Iterator) reset(b Batch) error {
	batch, err := Parse(b)
	if err != nil {
		return err
	}
	if len(batch) < HeaderSize {
		return fmt.Errorf("%w: batch length %d below header size", ErrCorruptRecord, batch.Size())
	}
	c := batch.Codec()
	if !c.Valid() {
		return fmt.Errorf("%w: %d", ErrUnknownCodec, c)
	}
	count, last := batch.RecordCount(), batch.LastOffsetDelta()
	if count < 0 || last < 0 || int64(count) > int64(last)+1 {
		return fmt.Errorf("%w: %d records for last offset delta %d", ErrCorruptRecord, count, last)
	}
	data := batch.Records()
	if c != CodecNone {
		if it.scratch, err = AppendDecompressed(it.scratch[:0], c, data, it.limit); err != nil {
			return err
		}
		data = it.scratch
	}
	// The smallest record takes 7 bytes (length and six one-byte fields), so
	// a count the data cannot hold is rejected before any work.
	if int64(count)*7 > int64(len(data)) {
		return fmt.Errorf("%w: %d records cannot fit in %d bytes", ErrCorruptRecord, count, len(data))
	}
	it.batch, it.data = batch, data
	it.count, it.lastDelta, it.prevDelta = count, last, -1
	it.baseTS, it.appendTS = batch.BaseTimestamp(), batch.LogAppendTime()
	return nil
}

// Batch is the batch being iterated (nil after a failed Reset).
func (it *Iterator) Batch() Batch { return it.batch }

// Next advances to the next record and reports whether there is one. It
// returns false at the end of the batch or on error; see Err.
func (it *Iterator) Next() bool {
	if it.err != nil || it.done || it.batch == nil {
		return false
	}
	if it.read == it.count {
		if it.pos != len(it.data) {
			it.err = fmt.Errorf("%w: %d bytes after the batch's %d records", ErrCorruptRecord, len(it.data)-it.pos, it.count)
		}
		it.done = true
		return false
	}
	r := &it.rec
	n, err := decodeRecord(it.data[it.pos:], r)
	if err != nil {
		it.err = fmt.Errorf("record %d of %d: %w", it.read, it.count, err)
		return false
	}
	if r.OffsetDelta <= it.prevDelta || r.OffsetDelta > it.lastDelta {
		it.err = fmt.Errorf("%w: record %d has offset delta %d after %d (last offset delta %d)",
			ErrCorruptRecord, it.read, r.OffsetDelta, it.prevDelta, it.lastDelta)
		return false
	}
	it.pos += n
	it.read++
	it.prevDelta = r.OffsetDelta
	r.Offset = it.batch.BaseOffset() + int64(r.OffsetDelta)
	if it.appendTS {
		r.Timestamp = it.batch.MaxTimestamp()
	} else {
		r.Timestamp += it.baseTS
	}
	return true
}

// Record is the current record. It is overwritten by the next call to Next,
// and its byte slices are valid until the next Reset.
func (it *Iterator) Record() *Record { return &it.rec }

// Err is the error that stopped the iteration, or nil at a clean end.
func (it *Iterator) Err() error { return it.err }
