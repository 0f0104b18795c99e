package storage

import (
	"fmt"
	"time"
)

// RetentionResult says what a retention pass removed.
type RetentionResult struct {
	Segments       int
	Bytes          int64
	LogStartOffset int64
}

// ApplyRetention deletes the oldest segments that retention no longer
// keeps, in this order: those wholly below the log start offset (raised by
// DeleteRecordsBefore), those whose largest timestamp is older than
// retention.ms, and those that take the log over retention.bytes. Time and
// size retention apply only under cleanup.policy=delete. The active segment
// is rolled first when it has expired by time, so an idle topic still
// empties; it is never deleted while it is the last one.
//
// Deleted segments are renamed .deleted and removed in the background after
// file.delete.delay.ms; readers holding them finish their read or get
// ErrSegmentDeleted.
func (l *Log) ApplyRetention() (RetentionResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return RetentionResult{}, err
	}
	cfg := l.mu.cfg
	now := l.now()
	nowMs := now.UnixMilli()
	segs := l.segments()
	if active := segs[len(segs)-1]; cfg.Delete && cfg.RetentionMs >= 0 && active.size.Load() > 0 &&
		active.maxTimestamp.Load() >= 0 && nowMs-active.maxTimestamp.Load() > cfg.RetentionMs {
		if _, err := l.rollLocked(now); err != nil {
			return RetentionResult{}, l.failLocked(err)
		}
		segs = l.segments()
	}
	start := l.logStart.Load()
	total := int64(0)
	for _, s := range segs {
		total += s.size.Load()
	}
	n := 0
	var res RetentionResult
	for ; n < len(segs)-1; n++ {
		s, next := segs[n], segs[n+1]
		byStart := next.base <= start
		byTime := cfg.Delete && cfg.RetentionMs >= 0 && s.maxTimestamp.Load() >= 0 && nowMs-s.maxTimestamp.Load() > cfg.RetentionMs
		bySize := cfg.Delete && cfg.RetentionBytes >= 0 && total-s.size.Load() >= cfg.RetentionBytes
		if !byStart && !byTime && !bySize {
			break
		}
		total -= s.size.Load()
		res.Bytes += s.size.Load()
	}
	res.Segments = n
	if n > 0 {
		l.publish(append([]*segment(nil), segs[n:]...))
		start = max(start, segs[n].base)
		l.logStart.Store(start)
		if l.hw.Load() < start {
			l.hw.Store(start)
		}
		if l.recoveryPoint.Load() < start {
			l.recoveryPoint.Store(start)
		}
		for _, s := range segs[:n] {
			l.deleteSegmentAsync(s)
		}
		if err := l.epochs.TruncateFromStart(start); err != nil {
			return res, l.failLocked(err)
		}
	}
	res.LogStartOffset = start
	return res, nil
}

// DeleteRecordsBefore raises the log start offset to offset (Kafka's
// DeleteRecords): records below it are no longer readable, and the segments
// wholly below it are deleted. offset must not pass the log end (the broker
// further bounds it by the high watermark). Lowering is a no-op.
func (l *Log) DeleteRecordsBefore(offset int64) (int64, error) {
	l.mu.Lock()
	if err := l.writableLocked(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	if offset < 0 || offset > l.leo.Load() {
		l.mu.Unlock()
		return 0, fmt.Errorf("%w: delete records before %d, log end is %d", ErrOffsetOutOfRange, offset, l.leo.Load())
	}
	if offset > l.logStart.Load() {
		l.logStart.Store(offset)
		if l.hw.Load() < offset {
			l.hw.Store(offset)
		}
	}
	l.mu.Unlock()
	res, err := l.ApplyRetention()
	return res.LogStartOffset, err
}

// deleteSegmentAsync renames a segment that is no longer listed to .deleted
// and removes it after file.delete.delay.ms.
func (l *Log) deleteSegmentAsync(s *segment) {
	if err := s.renameDeleted(); err != nil {
		l.logger.Warn("rename deleted segment", "segment", s.path(LogFileSuffix), "err", err)
	}
	l.scheduleRemoval(s)
}

// scheduleRemoval removes a segment renamed .deleted after file.delete.delay.ms.
func (l *Log) scheduleRemoval(s *segment) {
	delay := time.Duration(l.mu.cfg.FileDeleteDelayMs) * time.Millisecond
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.closing: // Close removes pending deletions at once
				t.Stop()
			}
		}
		if err := s.remove(); err != nil {
			l.logger.Warn("remove deleted segment", "segment", s.path(LogFileSuffix), "err", err)
		}
	}()
}
