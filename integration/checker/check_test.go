package checker

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func acked(v string, p int32, off int64, invoke, complete int) Op {
	return Op{Value: v, Partition: p, Invoke: at(invoke), Complete: at(complete), Acked: true, Offset: off}
}

func read(parts map[int32][]string) *Read {
	r := &Read{Start: map[int32]int64{}, End: map[int32]int64{}, Parts: map[int32][]Entry{}}
	for p, vs := range parts {
		for i, v := range vs {
			r.Parts[p] = append(r.Parts[p], Entry{Offset: int64(i), Value: v})
		}
		r.End[p] = int64(len(vs))
	}
	return r
}

func TestCheck(t *testing.T) {
	ops := []Op{
		acked("a", 0, 0, 0, 10),
		acked("b", 0, 1, 20, 30),
		{Value: "c", Partition: 0, Invoke: at(40), Complete: at(50), Err: errTest},
	}
	cases := []struct {
		name  string
		first *Read
		check func(*Result) bool
		ok    bool
	}{
		{"clean", read(map[int32][]string{0: {"a", "b"}}), func(r *Result) bool { return r.Acked == 2 && r.Failed == 1 }, true},
		{"unacked present is fine", read(map[int32][]string{0: {"a", "b", "c"}}), func(r *Result) bool { return r.UnackedPresent == 1 }, true},
		{"duplicate is counted, fine", read(map[int32][]string{0: {"a", "b", "b"}}), func(r *Result) bool { return r.Duplicates == 1 }, true},
		{"lost", read(map[int32][]string{0: {"a"}}), func(r *Result) bool { return len(r.Lost) == 1 && r.Lost[0].Value == "b" }, false},
		{"acked offset holds another value", read(map[int32][]string{0: {"a", "c", "b"}}), func(r *Result) bool { return len(r.Misplaced) == 1 }, false},
		{"reordered", read(map[int32][]string{0: {"b", "a"}}), func(r *Result) bool { return len(r.Reordered) == 1 }, false},
		{"unknown value", read(map[int32][]string{0: {"a", "b", "zz"}}), func(r *Result) bool { return len(r.Unknown) == 1 }, false},
		{"wrong partition", read(map[int32][]string{0: {"a", "b"}, 1: {"a"}}), func(r *Result) bool { return len(r.Misplaced) == 1 }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(ops, tc.first, tc.first, nil)
			if r.OK() != tc.ok || !tc.check(r) {
				t.Fatalf("ok=%v want %v:\n%s", r.OK(), tc.ok, r.Report())
			}
		})
	}
}

func TestCheckReadsDisagreeAndHW(t *testing.T) {
	ops := []Op{acked("a", 0, 0, 0, 10), acked("b", 0, 1, 20, 30)}
	first := read(map[int32][]string{0: {"a", "b"}})
	second := read(map[int32][]string{0: {"a", "x"}})
	r := Check(ops, first, second, nil)
	if r.OK() || len(r.Disagreements) != 1 || len(r.Lost) != 1 {
		t.Fatalf("%s", r.Report())
	}
	r = Check(ops, first, first, []HWRegression{{Before: HWSample{HW: 5}, After: HWSample{HW: 3}}})
	if r.OK() {
		t.Fatalf("a HW regression passed: %s", r.Report())
	}
	// Concurrent sends (b sent before a's ack) may land in either order.
	ops = []Op{acked("a", 0, 1, 0, 30), acked("b", 0, 0, 10, 20)}
	if r := Check(ops, read(map[int32][]string{0: {"b", "a"}}), read(map[int32][]string{0: {"b", "a"}}), nil); !r.OK() {
		t.Fatalf("concurrent ops flagged: %s", r.Report())
	}
}

type testErr struct{}

func (testErr) Error() string { return "test error" }

var errTest = testErr{}

// TestReportShowsTheOffsetsAroundALoss: the history names what was
// acknowledged and what was read at the offsets near a lost record.
func TestReportShowsTheOffsetsAroundALoss(t *testing.T) {
	ops := []Op{acked("a", 0, 0, 0, 10), acked("b", 0, 1, 20, 30), acked("c", 0, 2, 40, 50)}
	r := Check(ops, read(map[int32][]string{0: {"a", "x", "c"}}), read(map[int32][]string{0: {"a", "x", "c"}}), nil)
	rep := r.Report()
	for _, want := range []string{"LOST", `p0@1: read "x"; acknowledged here: b -> p0`, `p0@2: read "c"`} {
		if !strings.Contains(rep, want) {
			t.Fatalf("report lacks %q:\n%s", want, rep)
		}
	}
}
