package storage

// Writing an append in runs.
//
// An append (a produce request, a follower's fetch response) carries many
// batches back to back in one slice. One pwrite per batch made the syscall
// the broker's largest CPU cost for small records, so the log writes each
// maximal run of consecutive batches that go to the same segment with one
// pwrite (segment.writeRun), then accounts the batches one by one, in order,
// exactly as when each was written alone: indexes, size, leader epochs, log
// end offset, producer state (segment.addBatch and Log.appendLocked). Readers
// bound their reads by the published size and log end offset, so they never
// see a run's bytes before their batch is accounted.
//
// The roll decisions are the ones a batch-by-batch append takes. A run starts
// with the real decision for its first batch (maybeRollLocked, on the segment
// as it is); each following batch joins the run only if the same decision,
// taken on the segment as it will be once the batches ahead of it in the run
// are accounted, keeps it in the segment. That projection is exact for the
// size, the segment.ms clock, the offset span and the offset index (which
// gets one entry per index.interval.bytes: a function of the batch sizes
// alone). For the time index it is an upper bound (an index entry there is
// skipped when the max timestamp has not grown), so near a full time index a
// run may end early; the next run's first batch then gets the real decision.
// A run never holds a batch that would have rolled, and never overflows an
// index; at worst it ends sooner than it could.

import (
	"math"

	"github.com/stratalog/strata/storage/record"
)

// segmentRun projects the active segment's roll state over the batches of a
// run that are planned but not yet written.
type segmentRun struct {
	seg   *segment
	cfg   *Config
	nowMs int64

	used            int64 // the segment's size once the run is written
	firstBatchTS    int64 // the segment's first batch's max timestamp, -1 while empty
	bytesSinceIndex int64 // as segment.bytesSinceIndex once the run is accounted
	newEntries      int   // offset index entries the run adds (time index: at most that)
}

// startRun begins an empty run on seg. The caller holds the log's writer lock.
func startRun(seg *segment, cfg *Config, now int64) segmentRun {
	return segmentRun{
		seg:             seg,
		cfg:             cfg,
		nowMs:           now,
		used:            seg.size.Load(),
		firstBatchTS:    seg.firstBatchTS,
		bytesSinceIndex: seg.bytesSinceIndex,
	}
}

// rolls reports whether b, appended after the run, must go to a new segment:
// by size (segment.bytes), age (segment.ms), a full index, or an offset too
// far from the segment's base for the indexes' 32-bit relative offsets. An
// empty segment takes any batch.
func (r *segmentRun) rolls(b record.Batch) bool {
	s := r.seg
	return r.used > 0 && (r.used+int64(len(b)) > r.cfg.SegmentBytes ||
		waitedForRoll(r.firstBatchTS, s.created, r.nowMs, b.MaxTimestamp()) > r.cfg.SegmentMs ||
		s.index.IsFullAfter(r.newEntries) || s.timeIndex.IsFullAfter(r.newEntries) ||
		b.LastOffset()-s.base > math.MaxInt32)
}

// add plans b after the run, mirroring what segment.addBatch will do to the
// roll state.
func (r *segmentRun) add(b record.Batch) {
	if r.used == 0 {
		r.firstBatchTS = b.MaxTimestamp()
	}
	if indexDue(r.bytesSinceIndex, r.cfg.IndexIntervalBytes) {
		r.newEntries++
		r.bytesSinceIndex = 0
	}
	r.bytesSinceIndex += int64(len(b))
	r.used += int64(len(b))
}

// assignOffsets stamps a leader's batch with its base offset next and, when
// leaderEpoch >= 0, its partition leader epoch (both outside the CRC); a
// follower's batch keeps what the leader gave it. It returns the offset that
// follows the batch.
func assignOffsets(b record.Batch, next int64, leaderEpoch int32, follower bool) int64 {
	if !follower {
		b.SetBaseOffset(next)
		if leaderEpoch >= 0 {
			b.SetPartitionLeaderEpoch(leaderEpoch)
		}
	}
	return b.NextOffset()
}
