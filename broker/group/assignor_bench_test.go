package group

import (
	"fmt"
	"testing"
)

// The scale: 100 members over 1,000 partitions (10 topics of 100).
//
//	go test -run '^$' -bench Assign -benchmem ./broker/group/
func BenchmarkAssign(b *testing.B) {
	for _, as := range Assignors() {
		// Every member on every topic.
		fresh := homogeneousSpec(100, 10, 100)
		b.Run(as.Name()+"/homogeneous/fresh", func(b *testing.B) { benchAssign(b, as, fresh) })
		b.Run(as.Name()+"/homogeneous/join", func(b *testing.B) { benchAssign(b, as, joinOne(as, fresh)) })

		// Each member on 5 of the 10 topics.
		mixed := homogeneousSpec(100, 10, 100)
		for m := range 100 {
			var topics []string
			for t := range 10 {
				if (m+t)%2 == 0 || t == m%10 {
					topics = append(topics, fmt.Sprintf("t%02d", t))
				}
			}
			mixed.Members[fmt.Sprintf("m%03d", m)] = MemberSpec{Topics: topics}
		}
		b.Run(as.Name()+"/heterogeneous/fresh", func(b *testing.B) { benchAssign(b, as, mixed) })
		b.Run(as.Name()+"/heterogeneous/join", func(b *testing.B) { benchAssign(b, as, joinOne(as, mixed)) })
	}
}

// joinOne is spec's stable assignment by as, with a 101st member on all
// topics joining.
func joinOne(as Assignor, spec AssignmentSpec) AssignmentSpec {
	joined := withCurrent(spec, as.Assign(spec))
	var all []string
	for t := range len(spec.Topics) {
		all = append(all, fmt.Sprintf("t%02d", t))
	}
	joined.Members["new"] = MemberSpec{Topics: all}
	return joined
}

func benchAssign(b *testing.B, as Assignor, spec AssignmentSpec) {
	b.ReportAllocs()
	for b.Loop() {
		as.Assign(spec)
	}
}
