package storage

import (
	"errors"
	"fmt"
	"io"

	"github.com/stratalog/strata/storage/record"
)

// ScanBatches reads the whole batches of a .log file of the given size from
// position 0 and calls fn with each valid one (its bytes are reused after fn
// returns). It stops at the first damage: a torn tail (damage wraps
// record.ErrShortBatch), a batch whose length, magic or CRC is wrong (wraps
// record.ErrCorruptRecord), or an error fn returns that wraps either. end is
// where the valid prefix ends. err is an I/O error, which is not damage.
func ScanBatches(f io.ReaderAt, size int64, fn func(pos int64, b record.Batch) error) (end int64, damage, err error) {
	buf := GetBuffer(64 << 10)
	defer func() { PutBuffer(buf) }()
	var pos int64
	for pos < size {
		if size-pos < record.HeaderSize {
			return pos, fmt.Errorf("%w: %d bytes at %d", record.ErrShortBatch, size-pos, pos), nil
		}
		var hdr [record.HeaderSize]byte
		if _, err := f.ReadAt(hdr[:], pos); err != nil {
			return pos, nil, fmt.Errorf("storage: read at %d: %w", pos, err)
		}
		h := record.Batch(hdr[:])
		n := int64(h.Size())
		switch {
		case h.Magic() != record.Magic || n < record.HeaderSize:
			return pos, fmt.Errorf("%w: bad header at %d (magic %d, size %d)", record.ErrCorruptRecord, pos, h.Magic(), n), nil
		case pos+n > size:
			return pos, fmt.Errorf("%w: batch of %d bytes at %d passes the end (%d)", record.ErrShortBatch, n, pos, size), nil
		}
		if int64(cap(buf)) < n {
			PutBuffer(buf)
			buf = GetBuffer(int(n))
		}
		b := record.Batch(buf[:n])
		if _, err := f.ReadAt(b, pos); err != nil && !errors.Is(err, io.EOF) {
			return pos, nil, fmt.Errorf("storage: read at %d: %w", pos, err)
		}
		if verr := b.Validate(); verr != nil {
			return pos, fmt.Errorf("at position %d: %w", pos, verr), nil
		}
		if ferr := fn(pos, b); ferr != nil {
			if errors.Is(ferr, record.ErrCorruptRecord) || errors.Is(ferr, record.ErrShortBatch) {
				return pos, ferr, nil
			}
			return pos, nil, ferr
		}
		pos += n
	}
	return pos, nil, nil
}
