package checker

import (
	"fmt"
	"sort"
	"strings"
)

// Result is what Check found. The run is valid when Lost, Misplaced,
// Unknown, Reordered, Disagreements and HWRegressions are all empty.
type Result struct {
	Ops, Acked, Failed, NoOutcome int
	// Lost: acknowledged but absent from a read.
	Lost []Op
	// Misplaced: acknowledged at an offset that holds another value (or
	// read in another partition).
	Misplaced []string
	// Duplicates: values stored more than once (allowed: the producer is
	// not idempotent), counted as extra copies.
	Duplicates int
	// Reordered: b was sent after a was acknowledged, to the same
	// partition, yet b is stored before a.
	Reordered []string
	// Disagreements: offsets the two reads answer differently.
	Disagreements []string
	// HWRegressions: a high watermark seen lower than an earlier one.
	HWRegressions []HWRegression
	// UnackedPresent: sent, not acknowledged, yet stored (indeterminate ops
	// may go either way).
	UnackedPresent int
	// Unknown: values read that no op sent.
	Unknown []string
	// Gaps: offsets missing between the log start and the HW.
	Gaps []string
	// History: the offending ops, readable.
	History []string
}

// OK reports whether every invariant held.
func (r *Result) OK() bool {
	return len(r.Lost) == 0 && len(r.Misplaced) == 0 && len(r.Unknown) == 0 && len(r.Reordered) == 0 &&
		len(r.Disagreements) == 0 && len(r.HWRegressions) == 0 && len(r.Gaps) == 0
}

// Summary is a one-paragraph account.
func (r *Result) Summary() string {
	return fmt.Sprintf("ops %d, acknowledged %d, failed %d, no outcome %d, lost %d, misplaced %d, duplicates %d, "+
		"reordered %d, read disagreements %d, HW regressions %d, unacknowledged present %d, unknown %d, gaps %d",
		r.Ops, r.Acked, r.Failed, r.NoOutcome, len(r.Lost), len(r.Misplaced), r.Duplicates, len(r.Reordered),
		len(r.Disagreements), len(r.HWRegressions), r.UnackedPresent, len(r.Unknown), len(r.Gaps))
}

// Report is Summary plus, when something is wrong, the offending history.
func (r *Result) Report() string {
	var b strings.Builder
	b.WriteString(r.Summary())
	section := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n%s (%d):", title, len(items))
		for i, s := range items {
			if i == 20 {
				fmt.Fprintf(&b, "\n  ... %d more", len(items)-20)
				break
			}
			b.WriteString("\n  " + s)
		}
	}
	var lost []string
	for _, o := range r.Lost {
		lost = append(lost, o.String())
	}
	section("LOST (acknowledged, not read back)", lost)
	section("MISPLACED", r.Misplaced)
	section("REORDERED", r.Reordered)
	section("READS DISAGREE", r.Disagreements)
	var hw []string
	for _, x := range r.HWRegressions {
		hw = append(hw, x.String())
	}
	section("HW REGRESSIONS", hw)
	section("UNKNOWN VALUES", r.Unknown)
	section("GAPS", r.Gaps)
	section("HISTORY around the offending offsets", r.History)
	return b.String()
}

// Check analyses a run: the ops, two reads of the whole topic, and the
// regressions the HW monitor saw.
func Check(ops []Op, first, second *Read, regressions []HWRegression) *Result {
	r := &Result{Ops: len(ops), HWRegressions: regressions}
	byValue := map[string]*Op{}
	for i := range ops {
		o := &ops[i]
		byValue[o.Value] = o
		switch {
		case o.Acked:
			r.Acked++
		case o.Complete.IsZero():
			r.NoOutcome++
		default:
			r.Failed++
		}
	}
	bad := map[int32]bool{} // partitions whose history is printed

	// Where each value is, in the first read.
	type place struct {
		part   int32
		offset int64
	}
	where := map[string][]place{}
	atOffset := map[int32]map[int64]string{}
	for p, entries := range first.Parts {
		atOffset[p] = map[int64]string{}
		next := first.Start[p]
		for _, e := range entries {
			if e.Offset != next {
				r.Gaps = append(r.Gaps, fmt.Sprintf("p%d: offsets %d..%d missing", p, next, e.Offset-1))
				bad[p] = true
			}
			next = e.Offset + 1
			atOffset[p][e.Offset] = e.Value
			where[e.Value] = append(where[e.Value], place{p, e.Offset})
		}
		if end := first.End[p]; next < end && len(entries) > 0 {
			r.Gaps = append(r.Gaps, fmt.Sprintf("p%d: offsets %d..%d missing", p, next, end-1))
		}
	}
	for v, ps := range where {
		o := byValue[v]
		if o == nil {
			r.Unknown = append(r.Unknown, fmt.Sprintf("p%d@%d: %q", ps[0].part, ps[0].offset, v))
			bad[ps[0].part] = true
			continue
		}
		r.Duplicates += len(ps) - 1
		if !o.Acked {
			r.UnackedPresent++
		}
		for _, pl := range ps {
			if pl.part != o.Partition {
				r.Misplaced = append(r.Misplaced, fmt.Sprintf("%s sent to p%d, read in p%d@%d", v, o.Partition, pl.part, pl.offset))
				bad[pl.part] = true
			}
		}
	}
	for i := range ops {
		o := &ops[i]
		if !o.Acked {
			continue
		}
		if len(where[o.Value]) == 0 {
			r.Lost = append(r.Lost, *o)
			bad[o.Partition] = true
			continue
		}
		if got, ok := atOffset[o.Partition][o.Offset]; !ok || got != o.Value {
			r.Misplaced = append(r.Misplaced, fmt.Sprintf("%s acknowledged at p%d@%d, which holds %q", o.Value, o.Partition, o.Offset, got))
			bad[o.Partition] = true
		}
	}
	// Lost in the second read too (a record read once and gone later).
	seen2 := map[string]bool{}
	for _, entries := range second.Parts {
		for _, e := range entries {
			seen2[e.Value] = true
		}
	}
	for i := range ops {
		o := &ops[i]
		if o.Acked && len(where[o.Value]) > 0 && !seen2[o.Value] {
			r.Lost = append(r.Lost, *o)
			bad[o.Partition] = true
		}
	}

	// Reads must agree wherever both reach.
	for p, entries := range second.Parts {
		for _, e := range entries {
			if v, ok := atOffset[p][e.Offset]; ok && v != e.Value {
				r.Disagreements = append(r.Disagreements, fmt.Sprintf("p%d@%d: first read %q, second %q", p, e.Offset, v, e.Value))
				bad[p] = true
			}
		}
		if second.End[p] < first.End[p] {
			r.Disagreements = append(r.Disagreements, fmt.Sprintf("p%d: second read ends at HW %d, first at %d", p, second.End[p], first.End[p]))
			bad[p] = true
		}
	}
	for p, entries := range first.Parts {
		if second.Start[p] > first.Start[p] && len(entries) > 0 {
			r.Disagreements = append(r.Disagreements, fmt.Sprintf("p%d: log start moved %d -> %d between reads", p, first.Start[p], second.Start[p]))
		}
	}

	// Order: if a was acknowledged before b was sent (same partition), the
	// first copy of a precedes the first copy of b.
	first1 := func(v string) int64 {
		best := int64(-1)
		for _, pl := range where[v] {
			if best < 0 || pl.offset < best {
				best = pl.offset
			}
		}
		return best
	}
	byPart := map[int32][]*Op{}
	for i := range ops {
		o := &ops[i]
		if o.Acked && len(where[o.Value]) > 0 {
			byPart[o.Partition] = append(byPart[o.Partition], o)
		}
	}
	for p, ps := range byPart {
		acks := append([]*Op(nil), ps...)
		sort.Slice(acks, func(i, j int) bool { return acks[i].Complete.Before(acks[j].Complete) })
		// prefix[i]: the op with the largest first offset among acks[:i+1].
		prefix := make([]*Op, len(acks))
		for i, o := range acks {
			prefix[i] = o
			if i > 0 && first1(prefix[i-1].Value) > first1(o.Value) {
				prefix[i] = prefix[i-1]
			}
		}
		for _, b := range ps {
			// acks completed strictly before b was invoked
			k := sort.Search(len(acks), func(i int) bool { return !acks[i].Complete.Before(b.Invoke) })
			if k == 0 {
				continue
			}
			a := prefix[k-1]
			if first1(a.Value) > first1(b.Value) {
				r.Reordered = append(r.Reordered, fmt.Sprintf("p%d: %s (acked %s) stored at %d after %s (sent %s) at %d",
					p, a.Value, a.Complete.Format("15:04:05.000"), first1(a.Value), b.Value, b.Invoke.Format("15:04:05.000"), first1(b.Value)))
				bad[p] = true
			}
		}
	}

	// History around each lost or misplaced acknowledgement: for the
	// offsets near it, what was acknowledged there and what was read.
	ackedAt := map[int32]map[int64][]*Op{}
	for i := range ops {
		o := &ops[i]
		if o.Acked {
			if ackedAt[o.Partition] == nil {
				ackedAt[o.Partition] = map[int64][]*Op{}
			}
			ackedAt[o.Partition][o.Offset] = append(ackedAt[o.Partition][o.Offset], o)
		}
	}
	type spot struct {
		p   int32
		off int64
	}
	var spots []spot
	for _, o := range r.Lost {
		spots = append(spots, spot{o.Partition, o.Offset})
	}
	shown := map[spot]bool{}
	for _, sp := range spots {
		for off := sp.off - 3; off <= sp.off+3; off++ {
			k := spot{sp.p, off}
			if off < 0 || shown[k] || len(r.History) >= 60 {
				continue
			}
			shown[k] = true
			line := fmt.Sprintf("p%d@%d: read %q", sp.p, off, atOffset[sp.p][off])
			for _, o := range ackedAt[sp.p][off] {
				line += "; acknowledged here: " + o.String()
			}
			r.History = append(r.History, line)
		}
	}
	if len(spots) == 0 && len(bad) > 0 {
		for p := range bad {
			r.History = append(r.History, fmt.Sprintf("p%d: see the findings above; offsets %d..%d read", p, first.Start[p], first.End[p]))
		}
	}
	return r
}
