package storage

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/stratalog/strata/storage/record"
)

// Compaction (cleanup.policy=compact) keeps, in the sealed segments, only the
// latest record of each key; offsets never change. The pass:
//
//  1. Map each key of the cleanable range (every sealed segment) to its last
//     offset.
//  2. Rewrite the sealed segments in groups that fit one segment: a record
//     stays if it is its key's last, or has no key. A batch that keeps every
//     record is copied byte for byte; one that keeps some is rebuilt with
//     the same header fields and offset span; one that keeps none goes,
//     except a group's last batch, which stays as an empty batch so the
//     group's offset range survives a crash (see below).
//  3. Tombstones (null values) are kept until their delete horizon: the
//     first pass that keeps one stamps its batch with now+delete.retention.ms
//     (KIP-534's delete horizon); a later pass after that time drops it.
//     Control and transactional batches are copied unchanged.
//
// Each group is installed crash-safely:
//
//	write <base>.log.cleaned, fsync           crash: .cleaned is deleted at open
//	rename to <base>.log.swap, fsync dir      from here the swap is committed:
//	                                          open deletes the segments in its
//	                                          offset range and renames it
//	rename old segments .deleted              crash: as above
//	rename .swap to <base>.log, reopen        crash: .deleted removed at open
type CompactResult struct {
	Skipped        bool  // nothing new to clean since the last pass
	Groups         int   // segment groups rewritten
	RecordsBefore  int64 // records read in the cleanable range
	RecordsAfter   int64 // records kept
	BytesBefore    int64
	BytesAfter     int64
	TombstonesDrop int64 // tombstones past their delete horizon, dropped
}

// Compact runs one compaction pass over the sealed segments. It does nothing
// unless cleanup.policy includes compact. Appends wait only while a group is
// swapped in, not while it is written.
func (l *Log) Compact() (CompactResult, error) {
	var res CompactResult
	l.mu.Lock()
	if err := l.writableLocked(); err != nil {
		l.mu.Unlock()
		return res, err
	}
	cfg := l.mu.cfg
	segs := l.segments()
	gen := l.mu.truncations
	now := l.now().UnixMilli()
	end := segs[len(segs)-1].base
	if end == l.mu.cleanedUpTo && now < l.mu.nextHorizon && gen == l.mu.cleanedGen {
		l.mu.Unlock()
		res.Skipped = true
		return res, nil
	}
	l.mu.Unlock()
	if !cfg.Compact || len(segs) < 2 {
		return res, nil
	}
	sealed := segs[:len(segs)-1]
	latest, err := buildOffsetMap(sealed, l.LogStartOffset())
	if errors.Is(err, ErrSegmentDeleted) {
		return res, nil // retention or truncation got there first; the next pass retries
	}
	if err != nil {
		return res, err
	}
	pass := cleanPass{latest: latest, cfg: cfg, now: now, gen: gen, nextHorizon: math.MaxInt64}
	for _, group := range groupSegments(sealed, cfg) {
		err := l.cleanGroup(group, &pass, &res)
		if errors.Is(err, ErrSegmentDeleted) {
			return res, nil
		}
		if err != nil {
			return res, err
		}
	}
	l.mu.Lock()
	if l.mu.truncations == gen {
		l.mu.cleanedUpTo, l.mu.nextHorizon, l.mu.cleanedGen = end, pass.nextHorizon, gen
	}
	l.mu.Unlock()
	return res, nil
}

// cleanPass is what one compaction pass shares across its groups.
type cleanPass struct {
	latest      map[string]int64 // key -> its last offset in the cleanable range
	cfg         Config
	now         int64
	gen         uint64 // the log's truncation count when the pass began
	nextHorizon int64  // earliest delete horizon of a tombstone kept so far
}

// buildOffsetMap maps every key in segs to its last offset.
func buildOffsetMap(segs []*segment, start int64) (map[string]int64, error) {
	latest := make(map[string]int64)
	err := forEachBatch(segs, func(b record.Batch, it *record.Iterator) error {
		if b.IsControl() {
			return nil
		}
		if err := it.Reset(b); err != nil {
			return err
		}
		for it.Next() {
			r := it.Record()
			if r.Key == nil || r.Offset < start {
				continue
			}
			if o, ok := latest[string(r.Key)]; !ok || r.Offset > o {
				latest[string(r.Key)] = r.Offset
			}
		}
		return it.Err()
	})
	return latest, err
}

// forEachBatch reads every whole batch of segs in order.
func forEachBatch(segs []*segment, fn func(record.Batch, *record.Iterator) error) error {
	var it record.Iterator
	var hdr [record.HeaderSize]byte
	buf := GetBuffer(64 << 10)
	defer func() { PutBuffer(buf) }()
	for _, s := range segs {
		for pos, size := int64(0), s.size.Load(); pos < size; {
			h, err := s.readHeader(pos, &hdr)
			if err != nil {
				return err
			}
			n := int(h.Size())
			if cap(buf) < n {
				PutBuffer(buf)
				buf = GetBuffer(n)
			}
			b := record.Batch(buf[:n])
			if _, err := s.file.File().ReadAt(b, pos); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return ErrSegmentDeleted
				}
				return fmt.Errorf("storage: compact: read %s: %w", s.path(LogFileSuffix), err)
			}
			if err := fn(b, &it); err != nil {
				return err
			}
			pos += int64(n)
		}
	}
	return nil
}

// groupSegments splits segs into runs whose rewrite fits one segment (size,
// index entries, offset span).
func groupSegments(segs []*segment, cfg Config) [][]*segment {
	var groups [][]*segment
	for i := 0; i < len(segs); {
		j, size := i+1, segs[i].size.Load()
		for j < len(segs) {
			next := segs[j]
			end := int64(math.MaxInt64)
			if j+1 < len(segs) {
				end = segs[j+1].base
			}
			if size+next.size.Load() > cfg.SegmentBytes || end-segs[i].base > math.MaxInt32 ||
				segs[i].index.Entries()+next.index.Entries() >= cfg.MaxIndexSize/8 {
				break
			}
			size += next.size.Load()
			j++
		}
		groups = append(groups, segs[i:j])
		i = j
	}
	return groups
}

func deleteHorizonOf(b record.Batch) (int64, bool) {
	if b.Attributes()&record.AttrDeleteHorizon != 0 {
		return b.BaseTimestamp(), true
	}
	return 0, false
}

// cleanGroup rewrites one group into <base>.log.cleaned and swaps it in.
func (l *Log) cleanGroup(group []*segment, pass *cleanPass, res *CompactResult) error {
	latest, cfg, now := pass.latest, pass.cfg, pass.now
	base := group[0].base
	cleanedPath := filepath.Join(l.dir, SegmentFileName(base, LogFileSuffix+CleanedFileSuffix))
	out, err := os.OpenFile(cleanedPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("storage: compact: %w", err)
	}
	abort := func(err error) error {
		out.Close()
		os.Remove(cleanedPath)
		return err
	}
	var (
		written int64
		builder record.Builder
		headers []record.Header
		pending []byte // the group's last batch so far, if it was dropped whole
		changed bool   // some batch was rebuilt or dropped
	)
	write := func(b []byte) error {
		if _, err := out.Write(b); err != nil {
			return fmt.Errorf("storage: compact: write: %w", err)
		}
		written += int64(len(b))
		return nil
	}
	err = forEachBatch(group, func(b record.Batch, it *record.Iterator) error {
		pending = pending[:0]
		res.BytesBefore += int64(len(b))
		if b.IsControl() || b.IsTransactional() {
			res.RecordsBefore += int64(b.RecordCount())
			res.RecordsAfter += int64(b.RecordCount())
			return write(b)
		}
		if err := it.Reset(b); err != nil {
			return err
		}
		horizon, hasHorizon := deleteHorizonOf(b)
		dropTombstones := hasHorizon && now >= horizon
		kept := func(r *record.Record) bool {
			if r.Key != nil && latest[string(r.Key)] != r.Offset {
				return false // a later record of the same key exists
			}
			return !(r.IsTombstone() && dropTombstones)
		}
		keep, total, tombstones := 0, 0, 0
		for it.Next() {
			r := it.Record()
			total++
			switch {
			case kept(r):
				keep++
				if r.IsTombstone() {
					tombstones++
				}
			case r.IsTombstone() && dropTombstones && (r.Key == nil || latest[string(r.Key)] == r.Offset):
				res.TombstonesDrop++
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		res.RecordsBefore += int64(total)
		res.RecordsAfter += int64(keep)
		// A batch keeping tombstones carries a delete horizon: the one it has,
		// or now+delete.retention.ms the first time a pass keeps them.
		stampHorizon := tombstones > 0 && !hasHorizon
		if stampHorizon {
			horizon = now + cfg.DeleteRetentionMs
		}
		if tombstones > 0 {
			pass.nextHorizon = min(pass.nextHorizon, horizon)
		}
		if keep == total && !stampHorizon {
			return write(b)
		}
		changed = true
		builder.Reset(record.OptionsOf(b))
		if tombstones > 0 {
			if err := builder.SetDeleteHorizon(horizon); err != nil {
				return err
			}
		}
		if err := it.Reset(b); err != nil {
			return err
		}
		for it.Next() {
			r := it.Record()
			if !kept(r) {
				continue
			}
			headers = headers[:0]
			for k, v := range r.Headers() {
				headers = append(headers, record.Header{Key: string(k), Value: v})
			}
			if err := builder.AppendAt(r.OffsetDelta, r.Timestamp, r.Key, r.Value, headers); err != nil {
				return err
			}
		}
		if err := builder.SetLastOffsetDelta(b.LastOffsetDelta()); err != nil {
			return err
		}
		nb, err := builder.Build()
		if err != nil {
			return err
		}
		nb.SetBaseOffset(b.BaseOffset())
		if keep == 0 {
			// Dropped whole, unless it turns out to be the group's last batch.
			pending = append(pending, nb...)
			return nil
		}
		return write(nb)
	})
	if err == nil && len(pending) > 0 {
		err = write(pending) // the group's last batch keeps its offsets as an empty batch
	}
	if err != nil {
		return abort(err)
	}
	if !changed {
		return abort(nil) // every batch stays as it is: nothing to swap
	}
	res.Groups++
	res.BytesAfter += written
	if err := out.Sync(); err != nil {
		return abort(fmt.Errorf("%w: compact: fsync: %v", ErrStorageFailed, err))
	}
	if err := out.Close(); err != nil {
		os.Remove(cleanedPath)
		return fmt.Errorf("storage: compact: %w", err)
	}
	swapPath := filepath.Join(l.dir, SegmentFileName(base, LogFileSuffix+SwapFileSuffix))
	if err := os.Rename(cleanedPath, swapPath); err != nil {
		os.Remove(cleanedPath)
		return fmt.Errorf("storage: compact: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	return l.swapIn(group, swapPath, pass.gen)
}

// swapIn replaces group with the committed swap file under the writer lock.
func (l *Log) swapIn(group []*segment, swapPath string, gen uint64) error {
	if l.beforeSwap != nil {
		l.beforeSwap()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	if l.mu.truncations != gen {
		// A truncation rewrote offsets the swap was built from.
		os.Remove(swapPath)
		return syncDir(l.dir)
	}
	segs := l.segments()
	i := floorSegment(segs, group[0].base)
	if i < 0 || segs[i] != group[0] {
		// Truncation or retention removed the group meanwhile: drop the swap.
		os.Remove(swapPath)
		return nil
	}
	for k, s := range group {
		if i+k >= len(segs)-1 || segs[i+k] != s {
			os.Remove(swapPath)
			return nil
		}
	}
	for _, s := range group {
		if err := s.renameDeleted(); err != nil {
			return l.failLocked(err)
		}
	}
	base := group[0].base
	if err := os.Rename(swapPath, filepath.Join(l.dir, SegmentFileName(base, LogFileSuffix))); err != nil {
		return l.failLocked(err)
	}
	cfg := &l.mu.cfg
	seg, err := openSegment(l.dir, base, cfg, l.now())
	if err != nil {
		return l.failLocked(err)
	}
	if err := seg.rebuildIndexes(cfg.IndexIntervalBytes); err != nil {
		return l.failLocked(err)
	}
	if err := seg.seal(); err != nil {
		return l.failLocked(err)
	}
	next := make([]*segment, 0, len(segs)-len(group)+1)
	next = append(next, segs[:i]...)
	next = append(next, seg)
	next = append(next, segs[i+len(group):]...)
	l.publish(next)
	for _, s := range group {
		l.scheduleRemoval(s)
	}
	return syncDir(l.dir)
}
