package group

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

func TestRangeTable(t *testing.T) {
	type cur = map[string][]int32
	cases := []struct {
		name string
		spec AssignmentSpec
		want Assignment
	}{
		{
			// The example in Kafka's RangeAssignor javadoc.
			name: "two members, two topics of three",
			spec: AssignmentSpec{
				Members: map[string]MemberSpec{
					"C0": {Topics: []string{"t0", "t1"}},
					"C1": {Topics: []string{"t0", "t1"}},
				},
				Topics: map[string]int32{"t0": 3, "t1": 3},
			},
			want: Assignment{
				"C0": {"t0": {0, 1}, "t1": {0, 1}},
				"C1": {"t0": {2}, "t1": {2}},
			},
		},
		{
			name: "first n%m members get one more",
			spec: homogeneousSpec(3, 1, 11),
			want: Assignment{"m000": {"t00": {0, 1, 2, 3}}, "m001": {"t00": {4, 5, 6, 7}}, "m002": {"t00": {8, 9, 10}}},
		},
		{
			name: "more members than partitions",
			spec: homogeneousSpec(4, 1, 2),
			want: Assignment{"m000": {"t00": {0}}, "m001": {"t00": {1}}, "m002": {}, "m003": {}},
		},
		{
			name: "each topic split among its own subscribers",
			spec: AssignmentSpec{
				Members: map[string]MemberSpec{
					"a": {Topics: []string{"x"}},
					"b": {Topics: []string{"x", "y"}},
					"c": {Topics: []string{"y", "ghost"}},
				},
				Topics: map[string]int32{"x": 5, "y": 2, "z": 4},
			},
			want: Assignment{"a": {"x": {0, 1, 2}}, "b": {"x": {3, 4}, "y": {0}}, "c": {"y": {1}}},
		},
		{
			name: "static members first, by instance id; current is ignored",
			spec: AssignmentSpec{
				Members: map[string]MemberSpec{
					"a": {Topics: []string{"x"}, Current: cur{"x": {0, 1, 2, 3}}},
					"b": {Topics: []string{"x"}, InstanceID: "zeta"},
					"c": {Topics: []string{"x"}, InstanceID: "alpha"},
					"d": {Topics: []string{"x"}},
				},
				Topics: map[string]int32{"x": 4},
			},
			want: Assignment{"c": {"x": {0}}, "b": {"x": {1}}, "a": {"x": {2}}, "d": {"x": {3}}},
		},
		{
			name: "a restarted static member keeps its range under a new member id",
			spec: AssignmentSpec{
				Members: map[string]MemberSpec{
					"zz-new-id": {Topics: []string{"x"}, InstanceID: "i1"},
					"aa":        {Topics: []string{"x"}, InstanceID: "i2"},
				},
				Topics: map[string]int32{"x": 4},
			},
			want: Assignment{"zz-new-id": {"x": {0, 1}}, "aa": {"x": {2, 3}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Range{}.Assign(tc.spec)
			checkValid(t, tc.spec, got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestRangeRandomProperties checks, per topic, that the subscribers' counts
// differ by at most one, bigger shares first, and that each share is one
// contiguous run following the previous one.
func TestRangeRandomProperties(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 4))
		spec := randomSpec(rng, seed%2 == 0)
		for id, m := range spec.Members {
			if rng.IntN(3) == 0 {
				m.InstanceID = string(rune('a' + rng.IntN(26)))
				spec.Members[id] = m
			}
		}
		a := Range{}.Assign(spec)
		checkValid(t, spec, a)
		for topic, n := range spec.Topics {
			var shares [][]int32 // in partition order
			for _, topics := range a {
				if ps := topics[topic]; len(ps) > 0 {
					shares = append(shares, ps)
				}
			}
			slices.SortFunc(shares, func(x, y []int32) int { return int(x[0] - y[0]) })
			next := int32(0)
			for i, ps := range shares {
				if ps[0] != next || ps[len(ps)-1] != next+int32(len(ps))-1 {
					t.Fatalf("seed %d: %s share %v not contiguous after %d", seed, topic, ps, next)
				}
				if i > 0 && (len(ps) > len(shares[i-1]) || len(shares[i-1])-len(ps) > 1) {
					t.Fatalf("seed %d: %s shares %v uneven", seed, topic, shares)
				}
				next += int32(len(ps))
			}
			if len(shares) > 0 && next != n {
				t.Fatalf("seed %d: %s: %d of %d partitions assigned", seed, topic, next, n)
			}
		}
	}
}
