package group

import (
	"cmp"
	"slices"
)

// Range is Kafka's RangeAssignor: each topic on its own, its subscribers in a
// fixed order, its partitions cut into contiguous ranges, one per subscriber;
// with n partitions and m subscribers, the first n%m subscribers get one
// partition more than the others.
//
// The order is Kafka's (AbstractPartitionAssignor.MemberInfo): static members
// (those with an instance id) first, by instance id, then dynamic members by
// member id. A static member that restarts under a new member id therefore
// keeps its ranges. Ties (two members claiming one instance id) go by member
// id, so the output is a function of the input alone.
//
// Range ignores Current and Rack: it is not sticky.
type Range struct{}

// Name is "range".
func (Range) Name() string { return RangeAssignor }

// Assign implements Assignor.
func (Range) Assign(spec AssignmentSpec) Assignment {
	out := emptyAssignment(spec)
	type member struct{ id, instance string }
	subscribers := make(map[string][]member)
	for id, m := range spec.Members {
		for _, t := range subscribed(spec.Topics, m.Topics) {
			subscribers[t] = append(subscribers[t], member{id, m.InstanceID})
		}
	}
	// Topics are independent of each other, so the map's order does not
	// reach the output.
	for topic, members := range subscribers {
		slices.SortFunc(members, func(a, b member) int {
			switch {
			case a.instance != "" && b.instance != "":
				if c := cmp.Compare(a.instance, b.instance); c != 0 {
					return c
				}
			case a.instance != "":
				return -1
			case b.instance != "":
				return 1
			}
			return cmp.Compare(a.id, b.id)
		})
		n := partitionCount(spec.Topics[topic])
		per, extra := n/len(members), n%len(members)
		all := make([]int32, n)
		for i := range all {
			all[i] = int32(i)
		}
		start := 0
		for i, m := range members {
			k := per
			if i < extra {
				k++
			}
			if k == 0 {
				break // the members after this one get nothing either
			}
			out[m.id][topic] = all[start : start+k : start+k]
			start += k
		}
	}
	return out
}
