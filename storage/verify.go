package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stratalog/strata/storage/record"
)

// SegmentReport is what VerifySegment found in one segment.
type SegmentReport struct {
	Batches          int64
	Records          int64
	FirstOffset      int64 // -1 when the segment holds no batch
	NextOffset       int64 // the offset after the last valid batch
	ValidBytes       int64 // length of the valid prefix of the .log
	FileBytes        int64
	IndexEntries     int
	TimeIndexEntries int
	// Problems lists the damage found, one line each; empty means sound.
	Problems []string
}

// VerifySegment checks a .log file and the .index and .timeindex beside it,
// read-only: every batch's framing and CRC, offsets that only grow (from
// expectNext on, when it is >= 0), and that every index entry names a batch
// that starts at its position and ends at its offset, and every time index
// entry an offset of the segment with timestamps that only grow. Missing
// indexes are not damage (the log rebuilds them). err is for I/O failures.
func VerifySegment(logPath string, maxIndexSize int, expectNext int64) (SegmentReport, error) {
	rep := SegmentReport{FirstOffset: -1, NextOffset: expectNext}
	name := filepath.Base(logPath)
	base, ok := parseSegmentBase(name)
	if !ok || !strings.HasSuffix(name, LogFileSuffix) {
		return rep, fmt.Errorf("storage: %s is not a segment .log file", logPath)
	}
	if rep.NextOffset < 0 {
		rep.NextOffset = base
	}
	f, err := os.Open(logPath)
	if err != nil {
		return rep, fmt.Errorf("storage: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return rep, fmt.Errorf("storage: %w", err)
	}
	rep.FileBytes = fi.Size()
	lastAt := map[int64]int64{} // batch position -> last offset
	maxTS := int64(-1)
	end, damage, err := ScanBatches(f, fi.Size(), func(pos int64, b record.Batch) error {
		if b.BaseOffset() < rep.NextOffset || b.BaseOffset() < base {
			return fmt.Errorf("%w: batch at position %d starts at offset %d, below %d", record.ErrCorruptRecord, pos, b.BaseOffset(), rep.NextOffset)
		}
		if rep.FirstOffset < 0 {
			rep.FirstOffset = b.BaseOffset()
		}
		rep.Batches++
		rep.Records += int64(b.RecordCount())
		rep.NextOffset = b.NextOffset()
		lastAt[pos] = b.LastOffset()
		maxTS = max(maxTS, b.MaxTimestamp())
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.ValidBytes = end
	if damage != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("log: %v (valid prefix %d of %d bytes)", damage, end, fi.Size()))
	}

	dir := filepath.Dir(logPath)
	if idx, err := OpenOffsetIndex(filepath.Join(dir, SegmentFileName(base, IndexFileSuffix)), base, maxIndexSize, false); err == nil {
		rep.IndexEntries = idx.Entries()
		if err := idx.SanityCheck(); err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("index: %v", err))
		}
		for i := range idx.Entries() {
			off, pos := idx.Entry(i)
			if last, ok := lastAt[int64(pos)]; !ok || last != off {
				rep.Problems = append(rep.Problems, fmt.Sprintf("index: entry %d (offset %d, position %d) does not point at a batch ending at that offset", i, off, pos))
				break
			}
		}
		idx.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		rep.Problems = append(rep.Problems, fmt.Sprintf("index: %v", err))
	}
	if tix, err := OpenTimeIndex(filepath.Join(dir, SegmentFileName(base, TimeIndexFileSuffix)), base, maxIndexSize, false); err == nil {
		rep.TimeIndexEntries = tix.Entries()
		if err := tix.SanityCheck(); err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("timeindex: %v", err))
		}
		for i := range tix.Entries() {
			ts, off := tix.Entry(i)
			if off < base || off >= rep.NextOffset || ts > maxTS {
				rep.Problems = append(rep.Problems, fmt.Sprintf("timeindex: entry %d (timestamp %d, offset %d) outside the segment (offsets [%d, %d), max timestamp %d)", i, ts, off, base, rep.NextOffset, maxTS))
				break
			}
		}
		tix.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		rep.Problems = append(rep.Problems, fmt.Sprintf("timeindex: %v", err))
	}
	return rep, nil
}
