package group

import (
	"slices"
	"time"
)

// Expire removes what time has run out on, and answers the offset to see
// committed (-1 when nothing changed):
//   - members silent for the session timeout (a static member that left
//     with -2 included: its place was kept that long);
//   - members that kept partitions they had to give up past their
//     rebalance timeout;
//   - offsets of a group empty for offsets.retention.ms (since the group
//     emptied or the commit, whichever is later), and the group itself once
//     it has neither members nor offsets.
//
// The broker calls it periodically on each shard it leads.
func (s *Shard) Expire() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		return -1, nil
	}
	now := s.cfg.Now()
	ids := make([]string, 0, len(s.groups))
	for id := range s.groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var recs []Record
	for _, id := range ids {
		g := s.groups[id]
		t := s.begin(id)
		var gone []string
		for mid, m := range g.members {
			if now.Sub(m.lastSeen) > s.cfg.SessionTimeout || (!m.revokeBy.IsZero() && now.After(m.revokeBy)) {
				gone = append(gone, mid)
			}
		}
		slices.Sort(gone)
		for _, mid := range gone {
			s.removeMember(t, mid)
		}
		if len(gone) == 0 && len(g.members) == 0 {
			recs = append(recs, s.expireOffsets(g, now)...)
			continue
		}
		recs = append(recs, t.records()...)
	}
	return s.write(recs)
}

// expireOffsets is the tombstones for an empty group's expired offsets (and
// for the group, once nothing of it is left).
func (s *Shard) expireOffsets(g *group, now time.Time) []Record {
	retention := s.cfg.OffsetsRetention.Milliseconds()
	nowMs := now.UnixMilli()
	emptySince := g.meta.GetEmptySinceMs()
	var recs []Record
	left := 0
	for _, tp := range sortedTPs(g.offsets) {
		since := max(emptySince, g.offsets[tp].GetCommitTimestampMs())
		if nowMs-since > retention {
			recs = append(recs, offsetRecord(g.id, tp, nil))
		} else {
			left++
		}
	}
	if left == 0 && nowMs-emptySince > retention {
		recs = append(recs, groupRecord(g.id, nil))
	}
	return recs
}
