package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stratalog/strata/storage/record"
)

// load opens the segments in l.dir and recovers them. Crash safety rests on
// the order of renames, which is why each step here can meet the leftovers
// of any step before it:
//
//   - *.deleted: a segment removed from the log; the removal is finished.
//   - *.cleaned: a compaction that had not finished writing; it is dropped.
//   - *.log.swap: a compaction that had finished writing; it replaces every
//     segment whose base lies within its offsets, then loses its suffix.
//     Its indexes are rebuilt.
//
// After that, a log without a clean shutdown has every batch from the
// segment holding the recovery point onwards validated; the first torn or
// corrupt batch ends the log, and every later segment is dropped.
func (l *Log) load(opts OpenOptions) error {
	cfg := &l.mu.cfg
	now := l.now()
	if err := l.finishInterrupted(); err != nil {
		return err
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("storage: open log: %w", err)
	}
	var bases []int64
	for _, e := range entries {
		if base, ok := parseSegmentBase(e.Name()); ok && e.Name()[20:] == LogFileSuffix {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	var segs []*segment
	for _, base := range bases {
		s, err := openSegment(l.dir, base, cfg, now)
		if err != nil {
			l.publish(segs)
			return err
		}
		segs = append(segs, s)
	}
	if len(segs) == 0 {
		s, err := createSegment(l.dir, max(opts.LogStartOffset, 0), cfg, now)
		if err != nil {
			return err
		}
		segs = append(segs, s)
	}
	l.publish(segs)

	rp := max(opts.RecoveryPoint, 0)
	first := 0
	if opts.CleanShutdown {
		first = len(segs) // nothing to validate
	} else if i := floorSegment(segs, rp); i > 0 {
		first = i
	}
	// Sealed segments before the recovery point keep their indexes unless they fail a check.
	for _, s := range segs[:first] {
		if !s.indexesSane() {
			l.logger.Warn("rebuilding index", "segment", s.path(LogFileSuffix))
			if err := s.rebuildIndexes(cfg.IndexIntervalBytes); err != nil {
				return err
			}
		}
	}
	if opts.CleanShutdown && len(segs) > 0 {
		// The active segment's indexes are checked like the others'.
		if s := segs[len(segs)-1]; !s.indexesSane() {
			if err := s.rebuildIndexes(cfg.IndexIntervalBytes); err != nil {
				return err
			}
		}
	}
	next := segs[0].base
	if first > 0 {
		if next, err = segs[first-1].nextOffset(); err != nil {
			return err
		}
	}
	for i := first; i < len(segs); i++ {
		s := segs[i]
		if i > first && s.base < next {
			// Overlapping segments can only come from a bug or a hand edit: keep the prefix.
			l.logger.Error("segment overlaps its predecessor; dropping the rest of the log", "segment", s.path(LogFileSuffix))
			if err := l.dropSegments(segs[i:]); err != nil {
				return err
			}
			segs = segs[:i]
			break
		}
		n, cut, err := s.recover(next, cfg.IndexIntervalBytes, func(b record.Batch) {
			if e := b.PartitionLeaderEpoch(); e >= 0 {
				if latest, ok := l.epochs.Latest(); !ok || e > latest.Epoch {
					_ = l.epochs.Assign(e, b.BaseOffset())
				}
			}
		})
		if err != nil {
			return err
		}
		next = n
		if cut > 0 {
			l.logger.Warn("truncated torn or corrupt tail", "segment", s.path(LogFileSuffix), "bytes", cut, "next_offset", next)
			if err := l.dropSegments(segs[i+1:]); err != nil {
				return err
			}
			segs = segs[:i+1]
			break
		}
	}
	if first == len(segs) && len(segs) > 0 {
		if next, err = segs[len(segs)-1].nextOffset(); err != nil {
			return err
		}
	}
	// An empty last segment whose base is ahead of the data (a log that was
	// truncated fully and started again) sets the log end.
	next = max(next, segs[len(segs)-1].base)
	l.publish(segs)
	l.leo.Store(next)
	start := max(opts.LogStartOffset, segs[0].base)
	if start > next {
		start = next
	}
	l.logStart.Store(start)
	l.recoveryPoint.Store(min(rp, next))
	if opts.CleanShutdown {
		l.recoveryPoint.Store(next)
	}
	l.hw.Store(min(max(opts.HighWatermark, start), next))
	if err := l.epochs.TruncateFromEnd(next); err != nil {
		return err
	}
	return l.epochs.TruncateFromStart(start)
}

// finishInterrupted completes or rolls back the file operations a crash
// interrupted: see load.
func (l *Log) finishInterrupted() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("storage: open log: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, DeletedFileSuffix), strings.HasSuffix(name, CleanedFileSuffix):
			if err := os.Remove(filepath.Join(l.dir, name)); err != nil {
				return fmt.Errorf("storage: open log: %w", err)
			}
		case strings.HasSuffix(name, IndexFileSuffix+SwapFileSuffix), strings.HasSuffix(name, TimeIndexFileSuffix+SwapFileSuffix):
			// Rebuilt from the swapped-in log below.
			if err := os.Remove(filepath.Join(l.dir, name)); err != nil {
				return fmt.Errorf("storage: open log: %w", err)
			}
		}
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, LogFileSuffix+SwapFileSuffix) {
			continue
		}
		base, ok := parseSegmentBase(name)
		if !ok {
			continue
		}
		if err := l.completeSwap(base); err != nil {
			return err
		}
	}
	return nil
}

// completeSwap installs <base>.log.swap: the segments it covers go, it takes
// their place, and its indexes are removed to be rebuilt.
func (l *Log) completeSwap(base int64) error {
	swap := filepath.Join(l.dir, SegmentFileName(base, LogFileSuffix+SwapFileSuffix))
	last, err := lastOffsetInFile(swap)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("storage: open log: %w", err)
	}
	for _, e := range entries {
		b, ok := parseSegmentBase(e.Name())
		suffix := e.Name()[min(20, len(e.Name())):]
		if !ok || b < base || b > last {
			continue
		}
		switch suffix {
		case LogFileSuffix, IndexFileSuffix, TimeIndexFileSuffix:
			if err := os.Remove(filepath.Join(l.dir, e.Name())); err != nil {
				return fmt.Errorf("storage: complete swap: %w", err)
			}
		}
	}
	if err := os.Rename(swap, filepath.Join(l.dir, SegmentFileName(base, LogFileSuffix))); err != nil {
		return fmt.Errorf("storage: complete swap: %w", err)
	}
	return syncDir(l.dir)
}

// lastOffsetInFile scans a .log file's batch headers for its last offset;
// the scan stops at the first damaged batch.
func lastOffsetInFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("storage: %w", err)
	}
	defer f.Close()
	var hdr [record.HeaderSize]byte
	last := int64(-1)
	for pos := int64(0); ; {
		if _, err := f.ReadAt(hdr[:], pos); err != nil {
			return last, nil
		}
		b := record.Batch(hdr[:])
		if b.Magic() != record.Magic || b.Size() < record.HeaderSize {
			return last, nil
		}
		last = b.LastOffset()
		pos += int64(b.Size())
	}
}

// dropSegments deletes segments found beyond a log's valid end at open.
func (l *Log) dropSegments(segs []*segment) error {
	var errs []error
	for _, s := range segs {
		errs = append(errs, s.remove())
	}
	return errors.Join(errs...)
}
