package group

import (
	"regexp"
	"slices"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// tx is one operation's change to a group, built on copies: the records it
// yields are written, then applied (Shard.write). Reads go through the tx so
// that later steps of an operation see the earlier ones.
type tx struct {
	s       *Shard
	g       *group // nil for a group that does not exist yet
	id      string
	meta    *pb.GroupMetadataValue          // nil: unchanged
	members map[string]*pb.GroupMemberValue // nil value: deleted
	offsets []Record
	rebal   bool // the group epoch must move and the target be recomputed
}

func (s *Shard) begin(id string) *tx {
	return &tx{s: s, g: s.groups[id], id: id, members: map[string]*pb.GroupMemberValue{}}
}

func (t *tx) groupMeta() *pb.GroupMetadataValue {
	if t.meta != nil {
		return t.meta
	}
	if t.g != nil {
		return t.g.meta
	}
	return &pb.GroupMetadataValue{}
}

// mutMeta is the group metadata to change (created with the group).
func (t *tx) mutMeta() *pb.GroupMetadataValue {
	if t.meta == nil {
		t.meta = clone(t.groupMeta())
	}
	return t.meta
}

// member is a member's value as of this tx, nil when absent.
func (t *tx) member(id string) *pb.GroupMemberValue {
	if v, ok := t.members[id]; ok {
		return v
	}
	if t.g != nil {
		if m := t.g.members[id]; m != nil {
			return m.v
		}
	}
	return nil
}

func (t *tx) setMember(id string, v *pb.GroupMemberValue) { t.members[id] = v }
func (t *tx) deleteMember(id string)                      { t.members[id] = nil }

// memberIDs lists the group's members as of this tx, sorted.
func (t *tx) memberIDs() []string {
	var ids []string
	if t.g != nil {
		for id := range t.g.members {
			if v, ok := t.members[id]; !ok || v != nil {
				ids = append(ids, id)
			}
		}
	}
	for id, v := range t.members {
		if v != nil && (t.g == nil || t.g.members[id] == nil) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// owners maps each partition owned (assigned or pending revocation) by a
// member other than except to its owner.
func (t *tx) owners(except string) map[TP]string {
	out := map[TP]string{}
	for _, id := range t.memberIDs() {
		if id == except {
			continue
		}
		v := t.member(id)
		for tp := range setOf(v.GetAssigned()) {
			out[tp] = id
		}
		for tp := range setOf(v.GetPendingRevocation()) {
			out[tp] = id
		}
	}
	return out
}

// records is the tx as records: the group metadata first (a group is
// created by its metadata record), then members, then offsets.
func (t *tx) records() []Record {
	var recs []Record
	if t.meta != nil {
		recs = append(recs, groupRecord(t.id, t.meta))
	}
	ids := make([]string, 0, len(t.members))
	for id := range t.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if v := t.members[id]; v != nil || (t.g != nil && t.g.members[id] != nil) {
			recs = append(recs, memberRecord(t.id, id, v))
		}
	}
	return append(recs, t.offsets...)
}

// subscribedTopics resolves a member's subscription against the metadata:
// the existing topics it names or its regex matches, sorted.
func (t *tx) subscribedTopics(v *pb.GroupMemberValue, all []string) []string {
	var out []string
	if re := v.GetSubscribedTopicRegex(); re != "" {
		rx, err := compileSubscription(re)
		if err != nil {
			return nil // validated when the member joined
		}
		for _, topic := range all {
			if rx.MatchString(topic) && t.s.md.Partitions(topic) > 0 {
				out = append(out, topic)
			}
		}
		return out
	}
	for _, topic := range v.GetSubscribedTopicNames() {
		if t.s.md.Partitions(topic) > 0 {
			out = append(out, topic)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// compileSubscription compiles a subscription regex anchored at both ends.
func compileSubscription(re string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + re + `)$`)
}

// rebalance moves the group epoch and recomputes every member's target with
// the group's assignor, sticky to the previous targets.
func (t *tx) rebalance() {
	meta := t.mutMeta()
	meta.GroupEpoch++
	a, ok := AssignorByName(meta.GetAssignor())
	if !ok {
		a, _ = AssignorByName("")
	}
	spec := AssignmentSpec{Members: map[string]MemberSpec{}, Topics: map[string]int32{}}
	all := t.s.md.Topics()
	for _, id := range t.memberIDs() {
		v := t.member(id)
		topics := t.subscribedTopics(v, all)
		for _, topic := range topics {
			spec.Topics[topic] = t.s.md.Partitions(topic)
		}
		cur := map[string][]int32{}
		for _, tp := range v.GetTarget() {
			cur[tp.GetTopic()] = tp.GetPartitions()
		}
		spec.Members[id] = MemberSpec{InstanceID: v.GetInstanceId(), Rack: v.GetRackId(), Topics: topics, Current: cur}
	}
	out := a.Assign(spec)
	for _, id := range t.memberIDs() {
		target := setOfAssignment(out[id])
		v := t.member(id)
		if !target.equal(setOf(v.GetTarget())) {
			v = clone(v)
			v.Target = target.list()
			t.setMember(id, v)
		}
	}
	meta.AssignmentEpoch = meta.GroupEpoch
}

// targetStale reports whether the metadata moved under the group's targets:
// a target names a partition that no longer exists, or a subscribed
// partition is in no target.
func (t *tx) targetStale() bool {
	all := t.s.md.Topics()
	want := tpSet{}
	have := tpSet{}
	for _, id := range t.memberIDs() {
		v := t.member(id)
		for _, topic := range t.subscribedTopics(v, all) {
			for p := int32(0); p < t.s.md.Partitions(topic); p++ {
				want[TP{topic, p}] = struct{}{}
			}
		}
		for tp := range setOf(v.GetTarget()) {
			have[tp] = struct{}{}
		}
	}
	return !want.equal(have)
}

// reconcile moves one member toward its target (KIP-848): first it must
// release what it owns outside the target (those partitions stay its own,
// pending revocation, until a heartbeat's owned list leaves them out); then
// it takes the target's epoch and the target partitions no other member
// owns. A partition therefore never has two owners. owned is what the member
// reported it owns (nil: not reported).
func (t *tx) reconcile(id string, owned tpSet) {
	orig := t.member(id)
	v := clone(orig)
	assigned, pending, target := setOf(v.GetAssigned()), setOf(v.GetPendingRevocation()), setOf(v.GetTarget())
	if len(pending) > 0 && owned != nil && len(owned.intersect(pending)) == 0 {
		pending = tpSet{}
	}
	if len(pending) == 0 {
		if revoke := assigned.minus(target); len(revoke) > 0 {
			pending = revoke
			assigned = assigned.intersect(target)
		} else {
			if ae := t.groupMeta().GetAssignmentEpoch(); v.GetMemberEpoch() != ae {
				v.PreviousMemberEpoch = v.GetMemberEpoch()
				v.MemberEpoch = ae
			}
			taken := t.owners(id)
			for tp := range target.minus(assigned) {
				if _, ok := taken[tp]; !ok {
					assigned[tp] = struct{}{}
				}
			}
		}
	}
	v.Assigned, v.PendingRevocation = assigned.list(), pending.list()
	if !equalMember(orig, v) {
		t.setMember(id, v)
	}
}

func equalMember(a, b *pb.GroupMemberValue) bool {
	return a.GetMemberEpoch() == b.GetMemberEpoch() &&
		setOf(a.GetAssigned()).equal(setOf(b.GetAssigned())) &&
		setOf(a.GetPendingRevocation()).equal(setOf(b.GetPendingRevocation())) &&
		a.GetPreviousMemberEpoch() == b.GetPreviousMemberEpoch()
}
