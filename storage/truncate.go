package storage

import "fmt"

// TruncateTo removes every record at or after offset, as a follower does
// after asking its leader for the end offset of its last epoch. A batch that
// straddles offset goes whole, so the new log end may be below offset; it is
// returned. Offsets at or past the log end change nothing; an offset below
// the log start empties the log and restarts it there
// (TruncateFullyAndStartAt).
func (l *Log) TruncateTo(offset int64) (int64, error) {
	if offset < 0 {
		return 0, fmt.Errorf("%w: truncate to %d", ErrOffsetOutOfRange, offset)
	}
	if offset < l.LogStartOffset() {
		return offset, l.TruncateFullyAndStartAt(offset)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return 0, err
	}
	if offset >= l.leo.Load() {
		return l.leo.Load(), nil
	}
	l.mu.truncations++
	l.mu.producers.reset() // rebuilt from what remains at the next idempotent append
	segs := l.segments()
	i := max(floorSegment(segs, offset), 0)
	var keep []*segment
	var next int64
	if segs[i].base == offset && i > 0 {
		// The whole segment goes; its predecessor becomes the active one
		// (with a trimmed index it rolls at the next append).
		keep = segs[:i]
		n, err := keep[i-1].nextOffset()
		if err != nil {
			return 0, l.failLocked(err)
		}
		next = n
	} else {
		keep = segs[:i+1]
		n, err := segs[i].truncateTo(offset)
		if err != nil {
			return 0, l.failLocked(err)
		}
		next = n
	}
	gone := segs[len(keep):]
	l.publish(append([]*segment(nil), keep...))
	l.leo.Store(next)
	l.clampOffsetsLocked(next)
	for _, s := range gone {
		l.deleteSegmentAsync(s)
	}
	if err := l.epochs.TruncateFromEnd(next); err != nil {
		return 0, l.failLocked(err)
	}
	return next, nil
}

// TruncateFullyAndStartAt removes every segment and starts an empty log at
// offset: a follower whose leader's log starts past its own end does this.
func (l *Log) TruncateFullyAndStartAt(offset int64) error {
	if offset < 0 {
		return fmt.Errorf("%w: start at %d", ErrOffsetOutOfRange, offset)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	l.mu.truncations++
	l.mu.producers.reset()
	seg, err := createSegment(l.dir, offset, &l.mu.cfg, l.now())
	segs := l.segments()
	if err != nil {
		return l.failLocked(err)
	}
	l.publish([]*segment{seg})
	for _, s := range segs {
		if s.base == offset {
			// createSegment replaced its files already; only release the handles.
			s.close()
			continue
		}
		l.deleteSegmentAsync(s)
	}
	l.leo.Store(offset)
	l.logStart.Store(offset)
	l.recoveryPoint.Store(offset)
	l.hw.Store(offset)
	if err := l.epochs.Clear(); err != nil {
		return l.failLocked(err)
	}
	return nil
}

func (l *Log) writableLocked() error {
	if l.mu.closed {
		return ErrClosed
	}
	return l.mu.werr
}

// clampOffsetsLocked keeps the recovery point, high watermark and log start
// at or below a new log end.
func (l *Log) clampOffsetsLocked(leo int64) {
	if l.recoveryPoint.Load() > leo {
		l.recoveryPoint.Store(leo)
	}
	if l.hw.Load() > leo {
		l.hw.Store(leo)
	}
	if l.logStart.Load() > leo {
		l.logStart.Store(leo)
	}
}
