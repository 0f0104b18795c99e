package group

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// ---- Helpers shared with range_test.go and assignor_bench_test.go. ----

// homogeneousSpec has members m000.. each subscribed to topics t00..,
// each with parts partitions, nobody owning anything yet.
func homogeneousSpec(members, topics int, parts int32) AssignmentSpec {
	spec := AssignmentSpec{Members: map[string]MemberSpec{}, Topics: map[string]int32{}}
	var names []string
	for t := range topics {
		name := fmt.Sprintf("t%02d", t)
		names = append(names, name)
		spec.Topics[name] = parts
	}
	for m := range members {
		spec.Members[fmt.Sprintf("m%03d", m)] = MemberSpec{Topics: names}
	}
	return spec
}

// withCurrent returns a copy of spec whose members' Current is a; members
// missing from a have no Current.
func withCurrent(spec AssignmentSpec, a Assignment) AssignmentSpec {
	out := AssignmentSpec{Members: map[string]MemberSpec{}, Topics: spec.Topics}
	for id, m := range spec.Members {
		m.Current = a[id]
		out.Members[id] = m
	}
	return out
}

// owners maps "topic/partition" to the member that owns it.
func owners(a Assignment) map[string]string {
	out := map[string]string{}
	for id, topics := range a {
		for topic, ps := range topics {
			for _, p := range ps {
				out[fmt.Sprintf("%s/%d", topic, p)] = id
			}
		}
	}
	return out
}

// moved counts the partitions of prev (that still exist in next) whose
// owner in next is none of the members that held them in prev.
func moved(prev, next Assignment) int {
	held := map[string][]string{}
	for id, topics := range prev {
		for topic, ps := range topics {
			for _, p := range ps {
				tp := fmt.Sprintf("%s/%d", topic, p)
				held[tp] = append(held[tp], id)
			}
		}
	}
	n := 0
	for tp, id := range owners(next) {
		if ids, ok := held[tp]; ok && !slices.Contains(ids, id) {
			n++
		}
	}
	return n
}

func counts(a Assignment) map[string]int {
	out := map[string]int{}
	for id, topics := range a {
		for _, ps := range topics {
			out[id] += len(ps)
		}
	}
	return out
}

// checkValid asserts what every assignor promises: every member has an
// entry; every partition of a topic some member subscribes to goes to
// exactly one subscriber; nothing else is handed out; partitions are sorted;
// no empty lists.
func checkValid(t *testing.T, spec AssignmentSpec, a Assignment) {
	t.Helper()
	if len(a) != len(spec.Members) {
		t.Fatalf("assignment has %d members, spec %d", len(a), len(spec.Members))
	}
	want := map[string]bool{} // topic -> subscribed by someone
	for id, m := range spec.Members {
		topics, ok := a[id]
		if !ok || topics == nil {
			t.Fatalf("member %s missing from the assignment", id)
		}
		subs := map[string]bool{}
		for _, topic := range m.Topics {
			if _, ok := spec.Topics[topic]; ok {
				subs[topic] = true
				want[topic] = true
			}
		}
		for topic, ps := range topics {
			if !subs[topic] {
				t.Fatalf("member %s got %s, which it does not subscribe to", id, topic)
			}
			if len(ps) == 0 {
				t.Fatalf("member %s has an empty list for %s", id, topic)
			}
			if !slices.IsSorted(ps) {
				t.Fatalf("member %s: %s partitions not sorted: %v", id, topic, ps)
			}
		}
	}
	seen := map[string]int{}
	for _, topics := range a {
		for topic, ps := range topics {
			for _, p := range ps {
				if p < 0 || p >= spec.Topics[topic] {
					t.Fatalf("%s/%d out of range", topic, p)
				}
				seen[fmt.Sprintf("%s/%d", topic, p)]++
			}
		}
	}
	for topic := range want {
		for p := range spec.Topics[topic] {
			if n := seen[fmt.Sprintf("%s/%d", topic, p)]; n != 1 {
				t.Fatalf("%s/%d assigned %d times", topic, p, n)
			}
		}
	}
	total := 0
	for topic := range want {
		total += int(max(spec.Topics[topic], 0))
	}
	if len(seen) != total {
		t.Fatalf("%d partitions assigned, want %d", len(seen), total)
	}
}

// cloneSpec rebuilds spec's maps, inserting in a shuffled order, so that a
// second run sees different map iteration orders.
func cloneSpec(spec AssignmentSpec, rng *rand.Rand) AssignmentSpec {
	out := AssignmentSpec{Members: map[string]MemberSpec{}, Topics: map[string]int32{}}
	ids := slices.Collect(maps.Keys(spec.Members))
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	for _, id := range ids {
		m := spec.Members[id]
		if m.Current != nil {
			cur := map[string][]int32{}
			for topic, ps := range m.Current {
				cur[topic] = slices.Clone(ps)
			}
			m.Current = cur
		}
		out.Members[id] = m
	}
	for topic, n := range spec.Topics {
		out.Topics[topic] = n
	}
	return out
}

// randomSpec draws a group: up to 30 members, up to 8 topics of up to 40
// partitions (some empty), homogeneous or not, a Current from a previous
// assignment of a partly different group plus some garbage.
func randomSpec(rng *rand.Rand, homogeneous bool) AssignmentSpec {
	spec := AssignmentSpec{Members: map[string]MemberSpec{}, Topics: map[string]int32{}}
	var names []string
	for t := range rng.IntN(9) {
		name := fmt.Sprintf("t%d", t)
		names = append(names, name)
		spec.Topics[name] = int32(rng.IntN(41))
	}
	sub := func() []string {
		if homogeneous {
			return names
		}
		var out []string
		for _, n := range names {
			if rng.IntN(2) == 0 {
				out = append(out, n)
			}
		}
		return out
	}
	for m := range rng.IntN(31) {
		spec.Members[fmt.Sprintf("m%02d", m)] = MemberSpec{Topics: sub()}
	}
	// A previous assignment, of a group with some members gone, some new, and
	// topics that had other partition counts.
	prev := AssignmentSpec{Members: map[string]MemberSpec{}, Topics: map[string]int32{}}
	for name, n := range spec.Topics {
		prev.Topics[name] = max(0, n+int32(rng.IntN(11))-5)
	}
	prev.Topics["gone"] = 5
	for id, m := range spec.Members {
		if rng.IntN(4) != 0 {
			prev.Members[id] = m
		}
	}
	for m := range rng.IntN(4) {
		prev.Members[fmt.Sprintf("old%d", m)] = MemberSpec{Topics: append(slices.Clone(sub()), "gone")}
	}
	old := Uniform{}.Assign(prev)
	spec = withCurrent(spec, old)
	if len(spec.Members) > 0 && rng.IntN(3) == 0 { // garbage in some Current
		id := slices.Sorted(maps.Keys(spec.Members))[0]
		m := spec.Members[id]
		m.Current = map[string][]int32{"nope": {0}, "t0": {-1, 999, 0, 0}}
		spec.Members[id] = m
	}
	return spec
}

// ---- Properties every assignor must have. ----

func TestAssignorsRegistry(t *testing.T) {
	if a, ok := AssignorByName(""); !ok || a.Name() != UniformAssignor {
		t.Fatalf("default = %v, %v; want uniform", a, ok)
	}
	for _, name := range []string{UniformAssignor, RangeAssignor} {
		if a, ok := AssignorByName(name); !ok || a.Name() != name {
			t.Fatalf("AssignorByName(%q) = %v, %v", name, a, ok)
		}
	}
	if a, ok := AssignorByName("roundrobin"); ok || a != nil {
		t.Fatalf("unknown name answered %v", a)
	}
	if got := Assignors()[0].Name(); got != UniformAssignor {
		t.Fatalf("first assignor %q, want uniform", got)
	}
}

func TestAssignorsEdgeCases(t *testing.T) {
	cases := map[string]AssignmentSpec{
		"nil spec":      {},
		"empty members": {Members: map[string]MemberSpec{}, Topics: map[string]int32{"a": 3}},
		"no topics": {Members: map[string]MemberSpec{
			"m1": {}, "m2": {Topics: []string{}},
		}},
		"zero partitions": {
			Members: map[string]MemberSpec{"m1": {Topics: []string{"a", "b"}}, "m2": {Topics: []string{"a", "b"}}},
			Topics:  map[string]int32{"a": 0, "b": 3},
		},
		"negative partitions": {
			Members: map[string]MemberSpec{"m1": {Topics: []string{"a"}}},
			Topics:  map[string]int32{"a": -4},
		},
		"unknown topics": {
			Members: map[string]MemberSpec{
				"m1": {Topics: []string{"a", "ghost"}},
				"m2": {Topics: []string{"ghost"}},
				"m3": {Topics: []string{"a"}},
			},
			Topics: map[string]int32{"a": 4},
		},
		"unsorted duplicate topics": {
			Members: map[string]MemberSpec{
				"m1": {Topics: []string{"b", "a", "b"}},
				"m2": {Topics: []string{"a", "b"}},
			},
			Topics: map[string]int32{"a": 3, "b": 2},
		},
		"bad current": {
			Members: map[string]MemberSpec{
				"m1": {Topics: []string{"a"}, Current: map[string][]int32{
					"a": {-1, 7, 0, 0, 2}, "b": {0}, "ghost": {1},
				}},
				"m2": {Topics: []string{"a"}, Current: map[string][]int32{"a": {0, 1}}},
				"m3": {Current: map[string][]int32{"a": {2}}},
			},
			Topics: map[string]int32{"a": 3, "b": 1},
		},
		"more members than partitions": homogeneousSpec(7, 1, 3),
	}
	for _, as := range Assignors() {
		for name, spec := range cases {
			t.Run(as.Name()+"/"+name, func(t *testing.T) {
				a := as.Assign(spec)
				checkValid(t, spec, a)
			})
		}
	}
}

func TestAssignorsRandomValidDeterministic(t *testing.T) {
	for _, as := range Assignors() {
		for seed := range uint64(300) {
			rng := rand.New(rand.NewPCG(seed, 1))
			spec := randomSpec(rng, seed%2 == 0)
			a := as.Assign(spec)
			checkValid(t, spec, a)
			for range 3 {
				if b := as.Assign(cloneSpec(spec, rng)); !reflect.DeepEqual(a, b) {
					t.Fatalf("%s seed %d: two runs differ:\n%v\n%v", as.Name(), seed, a, b)
				}
			}
		}
	}
}

// ---- Uniform. ----

func TestUniformTable(t *testing.T) {
	type cur = map[string][]int32
	cases := []struct {
		name  string
		spec  AssignmentSpec
		want  Assignment
		moves int // partitions that change owner relative to Current
	}{
		{
			name: "fresh, three members, six partitions",
			spec: homogeneousSpec(3, 1, 6),
			want: Assignment{"m000": {"t00": {0, 3}}, "m001": {"t00": {1, 4}}, "m002": {"t00": {2, 5}}},
		},
		{
			name: "fresh, partitions spread over topics",
			spec: homogeneousSpec(2, 2, 2),
			want: Assignment{"m000": {"t00": {0}, "t01": {0}}, "m001": {"t00": {1}, "t01": {1}}},
		},
		{
			name: "balanced current kept as is",
			spec: withCurrent(homogeneousSpec(3, 1, 6), Assignment{
				"m000": {"t00": {4, 5}}, "m001": {"t00": {0, 2}}, "m002": {"t00": {1, 3}},
			}),
			want: Assignment{"m000": {"t00": {4, 5}}, "m001": {"t00": {0, 2}}, "m002": {"t00": {1, 3}}},
		},
		{
			name:  "one owner of everything gives up only its excess",
			spec:  withCurrent(homogeneousSpec(3, 1, 6), Assignment{"m001": {"t00": {0, 1, 2, 3, 4, 5}}}),
			want:  Assignment{"m000": {"t00": {2, 4}}, "m001": {"t00": {0, 1}}, "m002": {"t00": {3, 5}}},
			moves: 4,
		},
		{
			name: "extra slots go to members already above the minimum",
			spec: withCurrent(homogeneousSpec(3, 1, 7), Assignment{
				"m000": {"t00": {0}}, "m001": {"t00": {1, 2, 3}}, "m002": {"t00": {4, 5, 6}},
			}),
			want:  Assignment{"m000": {"t00": {0, 6}}, "m001": {"t00": {1, 2, 3}}, "m002": {"t00": {4, 5}}},
			moves: 1,
		},
		{
			name: "unsubscribed topic and vanished partitions are dropped from current",
			spec: AssignmentSpec{
				Members: map[string]MemberSpec{
					"a": {Topics: []string{"x"}, Current: cur{"x": {0, 1, 5}, "y": {0}}},
					"b": {Topics: []string{"x"}, Current: cur{"x": {2}}},
				},
				Topics: map[string]int32{"x": 4, "y": 2},
			},
			want: Assignment{"a": {"x": {0, 1}}, "b": {"x": {2, 3}}},
		},
		{
			name: "heterogeneous: partitions only to subscribers, least loaded first",
			spec: AssignmentSpec{
				Members: map[string]MemberSpec{
					"a": {Topics: []string{"x"}},
					"b": {Topics: []string{"x", "y"}},
					"c": {Topics: []string{"y"}},
				},
				Topics: map[string]int32{"x": 3, "y": 3},
			},
			// x (2 subscribers) and y (2) tie, x first by name: a, b, a; then y: c, b, c.
			want: Assignment{"a": {"x": {0, 2}}, "b": {"x": {1}, "y": {1}}, "c": {"y": {0, 2}}},
		},
		{
			name: "heterogeneous: a chain evens out what single moves cannot",
			spec: AssignmentSpec{
				Members: map[string]MemberSpec{
					"a": {Topics: []string{"x"}, Current: cur{"x": {0, 1, 2, 3}}},
					"b": {Topics: []string{"x", "y"}, Current: cur{"x": {4}, "y": {0, 1}}},
					"c": {Topics: []string{"y"}, Current: cur{"y": {2, 3}}},
				},
				Topics: map[string]int32{"x": 5, "y": 4},
			},
			want:  Assignment{"a": {"x": {1, 2, 3}}, "b": {"x": {0, 4}, "y": {1}}, "c": {"y": {0, 2, 3}}},
			moves: 2,
		},
		{
			name: "heterogeneous: kept partitions move only as far as balance needs",
			spec: AssignmentSpec{
				Members: map[string]MemberSpec{
					"a": {Topics: []string{"x", "y"}, Current: cur{"x": {0, 1, 2, 3}, "y": {0, 1}}},
					"b": {Topics: []string{"x"}},
					"c": {Topics: []string{"y"}},
				},
				Topics: map[string]int32{"x": 4, "y": 2},
			},
			// a must end with two of its six; it gives up exactly four.
			want:  Assignment{"a": {"x": {0, 3}}, "b": {"x": {1, 2}}, "c": {"y": {0, 1}}},
			moves: 4,
		},
		{
			name: "member subscribed to nothing gets an empty entry",
			spec: AssignmentSpec{
				Members: map[string]MemberSpec{"a": {Topics: []string{"x"}}, "idle": {}},
				Topics:  map[string]int32{"x": 2},
			},
			want: Assignment{"a": {"x": {0, 1}}, "idle": {}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Uniform{}.Assign(tc.spec)
			checkValid(t, tc.spec, got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
			prev := Assignment{}
			for id, m := range tc.spec.Members {
				prev[id] = m.Current
			}
			if n := moved(prev, got); n != tc.moves {
				t.Fatalf("%d partitions moved, want %d", n, tc.moves)
			}
		})
	}
}

// validClaims is what a member of a homogeneous spec may keep of its
// Current, by the rules Uniform documents (earlier member ids win a
// partition claimed twice).
func validClaims(spec AssignmentSpec) map[string]int {
	taken := map[string]bool{}
	out := map[string]int{}
	for _, id := range slices.Sorted(maps.Keys(spec.Members)) {
		m := spec.Members[id]
		for topic, ps := range m.Current {
			if !slices.Contains(m.Topics, topic) {
				continue
			}
			for _, p := range ps {
				tp := fmt.Sprintf("%s/%d", topic, p)
				if p >= 0 && p < spec.Topics[topic] && !taken[tp] {
					taken[tp] = true
					out[id]++
				}
			}
		}
	}
	return out
}

func TestUniformRandomProperties(t *testing.T) {
	for seed := range uint64(500) {
		homogeneous := seed%2 == 0
		rng := rand.New(rand.NewPCG(seed, 2))
		spec := randomSpec(rng, homogeneous)
		a := Uniform{}.Assign(spec)
		checkValid(t, spec, a)
		c := counts(a)

		if homogeneous && len(spec.Members) > 0 {
			lo, hi := -1, 0
			for id := range spec.Members {
				lo, hi = min(c[id], lo), max(c[id], hi)
				if lo < 0 {
					lo = c[id]
				}
			}
			if hi-lo > 1 {
				t.Fatalf("seed %d: counts %v not balanced", seed, c)
			}
			// The least possible number of moves: every member above the
			// minimum quota gives up its excess, less the extra slots.
			total := 0
			for _, n := range spec.Topics {
				total += int(n)
			}
			minQuota, extra := total/len(spec.Members), total%len(spec.Members)
			want, above := 0, 0
			for _, n := range validClaims(spec) {
				if n > minQuota {
					want += n - minQuota
					above++
				}
			}
			want -= min(extra, above)
			prev := Assignment{}
			for id, m := range spec.Members {
				prev[id] = m.Current
			}
			if got := moved(prev, a); got != want {
				t.Fatalf("seed %d: %d partitions moved, least possible %d", seed, got, want)
			}
		}
		if !homogeneous {
			// No single partition can move to a subscriber of its topic
			// with two fewer partitions than its owner.
			for owner, topics := range a {
				for topic := range topics {
					for id, m := range spec.Members {
						if slices.Contains(m.Topics, topic) && c[id] < c[owner]-1 {
							t.Fatalf("seed %d: %s (%d) could give %s to %s (%d)", seed, owner, c[owner], topic, id, c[id])
						}
					}
				}
			}
		}
		// Nothing changed: running again on its own output changes nothing.
		if again := (Uniform{}).Assign(withCurrent(spec, a)); !reflect.DeepEqual(a, again) {
			t.Fatalf("seed %d: not stable:\n%v\n%v", seed, a, again)
		}
	}
}

func TestUniformJoinAndLeaveMoveLittle(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 3))
		n := 1 + rng.IntN(40)
		spec := homogeneousSpec(n, 1+rng.IntN(6), int32(rng.IntN(60)))
		// A balanced group that has been through a few changes already.
		stable := Uniform{}.Assign(spec)
		total := 0
		for _, p := range spec.Topics {
			total += int(p)
		}

		// One member joins.
		joined := withCurrent(spec, stable)
		joined.Members["new"] = MemberSpec{Topics: spec.Members["m000"].Topics}
		after := Uniform{}.Assign(joined)
		checkValid(t, joined, after)
		if got, limit := moved(stable, after), (total+n)/(n+1); got > limit {
			t.Fatalf("seed %d: join of 1 to %d over %d partitions moved %d, limit %d", seed, n, total, got, limit)
		}

		// One member leaves: only its partitions move.
		gone := fmt.Sprintf("m%03d", rng.IntN(n))
		left := withCurrent(spec, stable)
		delete(left.Members, gone)
		after = Uniform{}.Assign(left)
		checkValid(t, left, after)
		now := owners(after)
		for tp, id := range owners(stable) {
			if id != gone && now[tp] != id {
				t.Fatalf("seed %d: %s moved from %s to %s when %s left", seed, tp, id, now[tp], gone)
			}
		}
	}
}

func TestUniformHeterogeneousStickyOnJoin(t *testing.T) {
	// Two topics, members alternately subscribed to one or both; a member
	// joining takes its share without reshuffling the rest.
	spec := AssignmentSpec{Members: map[string]MemberSpec{}, Topics: map[string]int32{"x": 30, "y": 30}}
	for m := range 10 {
		topics := []string{"x", "y"}
		if m%2 == 1 {
			topics = []string{"x"}
		}
		spec.Members[fmt.Sprintf("m%d", m)] = MemberSpec{Topics: topics}
	}
	stable := Uniform{}.Assign(spec)
	checkValid(t, spec, stable)
	joined := withCurrent(spec, stable)
	joined.Members["new"] = MemberSpec{Topics: []string{"y"}}
	after := Uniform{}.Assign(joined)
	checkValid(t, joined, after)
	c := counts(after)
	if got, limit := moved(stable, after), c["new"]; got != limit {
		t.Fatalf("%d partitions moved; the new member got %d", got, limit)
	}
	if c["new"] < 5 {
		t.Fatalf("new member got %d partitions of 60 over 11 members", c["new"])
	}
}
