package group

import (
	"maps"
	"slices"
)

// Uniform is the default assignor, after Kafka's UniformAssignor (KIP-848):
// sticky and balanced. A member keeps the partitions of its Current that
// are still valid (the topic still exists, the member still subscribes to
// it, the partition number is below the topic's count, no earlier member by
// id claimed it too) as far as balance allows, and the rest are handed out
// so that the counts of partitions per member are even.
//
// Homogeneous subscriptions (every member that subscribes to anything
// subscribes to the same topics): with P partitions over M members each
// member ends with P/M or P/M+1 partitions. Members walk in member id order;
// one holding more than P/M keeps P/M+1 while such slots remain and P/M
// after that, so a member above its quota gives up only its excess and the
// number of moved partitions is the least possible. The leftover partitions
// go round-robin to the members below their quota, which spreads a fresh
// group's topics across members.
//
// Heterogeneous subscriptions: a partition goes only to a member that
// subscribes to its topic, and counts can only be as even as the
// subscriptions allow. Every valid Current partition is kept first; the
// unowned partitions go, topics with the fewest subscribers first, each to
// its least-loaded subscriber (ties to the lowest member id). Then the
// counts are evened out: a partition moves to a subscriber of its topic
// with at least two fewer partitions than its owner (partitions the owner
// did not hold before move first, so kept ones move only when balance
// needs it), and where that is not enough, one partition shifts along a
// chain of members (A gives one to B, which gives one of another topic to
// C) from a member to one with at least two fewer. It stops when no such
// move or chain is left.
//
// Members are walked in sorted order and partitions in (topic, partition)
// order, so the output depends on the input alone, never on map order.
// Rack is not used. Members that subscribe to nothing get an empty entry.
type Uniform struct{}

// Name is "uniform".
func (Uniform) Name() string { return UniformAssignor }

// Assign implements Assignor.
func (Uniform) Assign(spec AssignmentSpec) Assignment {
	b := newUniformBuilder(spec)
	if b.homogeneous() {
		b.assignHomogeneous()
	} else {
		b.assignHeterogeneous()
	}
	return b.result()
}

// uniformBuilder holds one run of Uniform. Members and topics are indexes
// into the sorted ids and names; a partition is a flat index: topic t's
// partition p is base[t]+p.
type uniformBuilder struct {
	spec        AssignmentSpec
	members     []string       // sorted member ids
	topics      []string       // sorted names of the topics some member subscribes to
	topicIdx    map[string]int // topic name -> index into topics
	base        []int          // topic -> first flat partition; base[len(topics)] is the total
	subs        [][]int        // member -> subscribed topics, ascending
	subscribers [][]int        // topic -> subscribed members, ascending
	owner       []int          // flat partition -> member, -1 while unowned
	kept        []bool         // flat partition -> its owner held it in Current
	count       []int          // member -> partitions owned
	ownedIn     []int          // member*len(topics)+topic -> partitions owned; only while shifting chains
}

func newUniformBuilder(spec AssignmentSpec) *uniformBuilder {
	b := &uniformBuilder{spec: spec, members: slices.Sorted(maps.Keys(spec.Members))}
	names := make([][]string, len(b.members))
	b.topicIdx = make(map[string]int)
	for m, id := range b.members {
		names[m] = subscribed(spec.Topics, spec.Members[id].Topics)
		for _, t := range names[m] {
			b.topicIdx[t] = 0
		}
	}
	b.topics = slices.Sorted(maps.Keys(b.topicIdx))
	b.base = make([]int, len(b.topics)+1)
	for t, name := range b.topics {
		b.topicIdx[name] = t
		b.base[t+1] = b.base[t] + partitionCount(spec.Topics[name])
	}
	b.subs = make([][]int, len(b.members))
	b.subscribers = make([][]int, len(b.topics))
	for m := range b.members {
		b.subs[m] = make([]int, len(names[m]))
		for i, name := range names[m] {
			t := b.topicIdx[name]
			b.subs[m][i] = t
			b.subscribers[t] = append(b.subscribers[t], m)
		}
	}
	total := b.base[len(b.topics)]
	b.owner = make([]int, total)
	for f := range b.owner {
		b.owner[f] = -1
	}
	b.kept = make([]bool, total)
	b.count = make([]int, len(b.members))
	return b
}

// homogeneous reports whether every member that subscribes to anything
// subscribes to the same topics.
func (b *uniformBuilder) homogeneous() bool {
	var first []int
	for _, s := range b.subs {
		switch {
		case len(s) == 0:
		case first == nil:
			first = s
		case !slices.Equal(first, s):
			return false
		}
	}
	return true
}

// claims returns the flat partitions of member m's Current that it may
// keep: topic known and subscribed, partition in range, not owned yet;
// ascending, without duplicates.
func (b *uniformBuilder) claims(m int) []int {
	var out []int
	for name, ps := range b.spec.Members[b.members[m]].Current {
		t, ok := b.topicIdx[name]
		if !ok {
			continue
		}
		if _, ok := slices.BinarySearch(b.subs[m], t); !ok {
			continue
		}
		n := b.base[t+1] - b.base[t]
		for _, p := range ps {
			if p >= 0 && int(p) < n && b.owner[b.base[t]+int(p)] < 0 {
				out = append(out, b.base[t]+int(p))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (b *uniformBuilder) take(f, m int, kept bool) {
	b.owner[f] = m
	b.kept[f] = kept
	b.count[m]++
}

func (b *uniformBuilder) move(t, f, to int) {
	from := b.owner[f]
	b.count[from]--
	b.count[to]++
	b.owner[f] = to
	b.kept[f] = false
	if b.ownedIn != nil {
		b.ownedIn[from*len(b.topics)+t]--
		b.ownedIn[to*len(b.topics)+t]++
	}
}

func (b *uniformBuilder) assignHomogeneous() {
	var active []int
	for m, s := range b.subs {
		if len(s) > 0 {
			active = append(active, m)
		}
	}
	if len(active) == 0 {
		return
	}
	minQuota, extra := len(b.owner)/len(active), len(b.owner)%len(active)
	target := make([]int, len(b.members))
	for _, m := range active {
		c := b.claims(m)
		q := minQuota
		if len(c) > minQuota && extra > 0 {
			q++
			extra--
		}
		for _, f := range c[:min(len(c), q)] {
			b.take(f, m, true)
		}
		target[m] = q
	}
	// Slots above the minimum left over go to the first members (by id)
	// still at the minimum; none of those gave anything up, since a member
	// is cut down to the minimum only once these slots have run out.
	var short []int
	for _, m := range active {
		if extra > 0 && target[m] == minQuota {
			target[m]++
			extra--
		}
		if b.count[m] < target[m] {
			short = append(short, m)
		}
	}
	i := 0
	for f, o := range b.owner {
		if o >= 0 {
			continue
		}
		m := short[i]
		b.take(f, m, false)
		if b.count[m] == target[m] {
			short = slices.Delete(short, i, i+1)
		} else {
			i++
		}
		if i >= len(short) {
			i = 0
		}
	}
}

func (b *uniformBuilder) assignHeterogeneous() {
	for m := range b.members {
		for _, f := range b.claims(m) {
			b.take(f, m, true)
		}
	}
	order := make([]int, len(b.topics))
	for t := range order {
		order[t] = t
	}
	slices.SortStableFunc(order, func(x, y int) int { return len(b.subscribers[x]) - len(b.subscribers[y]) })
	for _, t := range order {
		for f := b.base[t]; f < b.base[t+1]; f++ {
			if b.owner[f] < 0 {
				b.take(f, b.leastLoaded(t), false)
			}
		}
	}
	b.balanceMoves()
	b.balanceChains()
}

// leastLoaded returns the subscriber of topic t with the fewest partitions,
// the lowest member id among equals.
func (b *uniformBuilder) leastLoaded(t int) int {
	best := -1
	for _, m := range b.subscribers[t] {
		if best < 0 || b.count[m] < b.count[best] {
			best = m
		}
	}
	return best
}

// balanceMoves moves single partitions to a subscriber of their topic with
// at least two fewer partitions than the owner, partitions that are new to
// their owner before kept ones, until none is left to move.
func (b *uniformBuilder) balanceMoves() {
	for moved := true; moved; {
		moved = false
		for _, keptPass := range []bool{false, true} {
			for t := range b.topics {
				for f := b.base[t]; f < b.base[t+1]; f++ {
					if b.kept[f] != keptPass {
						continue
					}
					if m := b.leastLoaded(t); b.count[b.owner[f]] > b.count[m]+1 {
						b.move(t, f, m)
						moved = true
					}
				}
			}
		}
	}
}

// balanceChains evens out what single moves cannot: from the most loaded
// member u it searches (breadth first, so the shortest chain) for a member
// v with count(v) <= count(u)-2 reachable through "x owns a partition of a
// topic y subscribes to" and shifts one partition along each link. Every
// shift lowers the sum of squared counts, so this ends.
//
// A search from u that fails proves that every member it reached has at
// least count(u)-1 partitions and so does everything they reach; such
// members are dead for the rest of the round (sources are taken by
// descending count), which keeps a round linear in the graph's size.
func (b *uniformBuilder) balanceChains() {
	nt := len(b.topics)
	b.ownedIn = make([]int, len(b.members)*nt)
	for t := range b.topics {
		for f := b.base[t]; f < b.base[t+1]; f++ {
			b.ownedIn[b.owner[f]*nt+t]++
		}
	}
	var sources []int
	for m, s := range b.subs {
		if len(s) > 0 {
			sources = append(sources, m)
		}
	}
	prev := make([]int, len(b.members))
	via := make([]int, len(b.members))
	seen := make([]int, len(b.members)) // search stamp
	dead := make([]bool, len(b.members))
	stamp := 0
	var queue []int
	for {
		slices.SortStableFunc(sources, func(x, y int) int {
			if b.count[x] != b.count[y] {
				return b.count[y] - b.count[x]
			}
			return x - y
		})
		if len(sources) == 0 {
			return
		}
		low := b.count[sources[len(sources)-1]]
		clear(dead)
		shifted := false
		for _, u := range sources {
			if b.count[u] < low+2 {
				break
			}
			if dead[u] {
				continue
			}
			stamp++
			seen[u] = stamp
			queue = append(queue[:0], u)
			v := -1
		search:
			for i := 0; i < len(queue); i++ {
				x := queue[i]
				for _, t := range b.subs[x] {
					if b.ownedIn[x*nt+t] == 0 {
						continue
					}
					for _, y := range b.subscribers[t] {
						if seen[y] == stamp || dead[y] {
							continue
						}
						seen[y] = stamp
						prev[y], via[y] = x, t
						if b.count[y] <= b.count[u]-2 {
							v = y
							break search
						}
						queue = append(queue, y)
					}
				}
			}
			if v < 0 {
				for _, x := range queue {
					dead[x] = true
				}
				continue
			}
			for y := v; y != u; y = prev[y] {
				b.move(via[y], b.pick(via[y], prev[y]), y)
			}
			shifted = true
			break
		}
		if !shifted {
			return
		}
	}
}

// pick returns a partition of topic t owned by member m, one that is new
// to m if there is one.
func (b *uniformBuilder) pick(t, m int) int {
	found := -1
	for f := b.base[t]; f < b.base[t+1]; f++ {
		if b.owner[f] == m {
			if !b.kept[f] {
				return f
			}
			if found < 0 {
				found = f
			}
		}
	}
	return found
}

func (b *uniformBuilder) result() Assignment {
	out := make(Assignment, len(b.members))
	entries := make([]map[string][]int32, len(b.members))
	backing := make([][]int32, len(b.members))
	for m, id := range b.members {
		entries[m] = make(map[string][]int32, len(b.subs[m]))
		out[id] = entries[m]
		backing[m] = make([]int32, 0, b.count[m])
	}
	start := make([]int, len(b.members))
	for t, name := range b.topics {
		for _, m := range b.subscribers[t] {
			start[m] = len(backing[m])
		}
		for f := b.base[t]; f < b.base[t+1]; f++ {
			if m := b.owner[f]; m >= 0 {
				backing[m] = append(backing[m], int32(f-b.base[t]))
			}
		}
		for _, m := range b.subscribers[t] {
			if end := len(backing[m]); end > start[m] {
				entries[m][name] = backing[m][start[m]:end:end]
			}
		}
	}
	return out
}
