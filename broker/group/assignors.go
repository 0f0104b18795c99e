package group

import "slices"

// Assignors lists the server-side assignors a group may choose; the first is
// the default.
func Assignors() []Assignor { return []Assignor{Uniform{}, Range{}} }

// AssignorByName finds the assignor a member asked for in
// GroupHeartbeat.server_assignor; the empty name means the default.
func AssignorByName(name string) (Assignor, bool) {
	all := Assignors()
	if name == "" {
		return all[0], true
	}
	for _, a := range all {
		if a.Name() == name {
			return a, true
		}
	}
	return nil, false
}

// The helpers below are shared by the assignors.

// subscribed returns the topics of want that exist in topics, sorted and
// without duplicates. The spec promises that already; the assignors do not
// rely on it. It returns want itself when it is clean, and never modifies it.
func subscribed(topics map[string]int32, want []string) []string {
	clean := true
	for i, t := range want {
		if _, ok := topics[t]; !ok || (i > 0 && want[i-1] >= t) {
			clean = false
			break
		}
	}
	if clean {
		return want
	}
	out := make([]string, 0, len(want))
	for _, t := range want {
		if _, ok := topics[t]; ok {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// partitionCount reads a topic's partition count; a negative count is none.
func partitionCount(n int32) int {
	return int(max(n, 0))
}

// emptyAssignment gives every member of spec an empty entry.
func emptyAssignment(spec AssignmentSpec) Assignment {
	out := make(Assignment, len(spec.Members))
	for id := range spec.Members {
		out[id] = map[string][]int32{}
	}
	return out
}
