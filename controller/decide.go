package controller

import (
	"fmt"
	"slices"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// This file holds the building blocks of the active controller's decisions.
// A decision is a pure function of the image (and the request) that returns
// records; it never looks at the clock, the network or Raft, so the same image
// and request always give the same records (see decide_test.go and testdata/).

// txn accumulates the records of one decision and keeps a working image with
// them applied, so later steps of the same decision see earlier ones (a
// fenced broker is no longer eligible, a created topic exists). The working
// image's offset is fictitious: it only serves decisions.
type txn struct {
	img  *raftfsm.Image
	recs []*pb.MetadataRecord
}

func newTxn(img *raftfsm.Image) *txn { return &txn{img: img} }

// add applies r to the working image and keeps it. A record the image
// rejects is a bug in the decision: it is returned as UNKNOWN_SERVER_ERROR and
// the txn is unchanged.
func (t *txn) add(r *pb.MetadataRecord) error {
	img, err := raftfsm.ApplyRecord(t.img, t.img.Offset()+1, r)
	if err != nil {
		return errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "controller decision rejected by the state machine: %v", err)
	}
	t.img = img
	t.recs = append(t.recs, r)
	return nil
}

// addAll applies recs as one batch (one image copy, however many records
// touch the same topic) and keeps them; all or none.
func (t *txn) addAll(recs []*pb.MetadataRecord) error {
	if len(recs) == 0 {
		return nil
	}
	img, err := raftfsm.ReplayRecords(t.img, t.img.Offset()+1, recs)
	if err != nil {
		return errorf(pb.ErrorCode_UNKNOWN_SERVER_ERROR, "controller decision rejected by the state machine: %v", err)
	}
	t.img = img
	t.recs = append(t.recs, recs...)
	return nil
}

// mark and rollback let a multi-item request drop one item's records.
func (t *txn) mark() (*raftfsm.Image, int) { return t.img, len(t.recs) }
func (t *txn) rollback(img *raftfsm.Image, n int) {
	t.img = img
	t.recs = t.recs[:n]
}

// item runs one item of a multi-item request: what decide wrote stays only
// if it succeeds, so a failing item changes nothing while the others go on.
func (t *txn) item(decide func() error) error {
	img, n := t.mark()
	err := decide()
	if err != nil {
		t.rollback(img, n)
	}
	return err
}

// eligible reports whether broker id may lead or join an ISR: registered,
// unfenced and not in controlled shutdown.
func eligible(img *raftfsm.Image, id int32) bool {
	b := img.Broker(id)
	return b != nil && !b.Fenced && !b.InControlledShutdown
}

// pstate is a partition's mutable state while a decision edits it.
type pstate struct {
	Replicas, ISR, Adding, Removing []int32
	Leader                          int32
}

func stateOf(p *raftfsm.Partition) pstate {
	return pstate{
		Replicas: slices.Clone(p.Replicas),
		ISR:      slices.Clone(p.ISR),
		Adding:   slices.Clone(p.Adding),
		Removing: slices.Clone(p.Removing),
		Leader:   p.Leader,
	}
}

func (s pstate) String() string {
	return fmt.Sprintf("replicas=%v isr=%v leader=%d adding=%v removing=%v", s.Replicas, s.ISR, s.Leader, s.Adding, s.Removing)
}

// changeRecord is the PartitionChangeRecord taking cur to next, or nil when
// nothing changes. Only changed fields are set; the partition epoch is bumped
// and the leader epoch is bumped when the leader changes.
func changeRecord(id raftfsm.TopicID, index int32, cur *raftfsm.Partition, next pstate) *pb.MetadataRecord {
	r := &pb.PartitionChangeRecord{
		TopicId:        id.Bytes(),
		Partition:      index,
		LeaderEpoch:    cur.LeaderEpoch,
		PartitionEpoch: cur.PartitionEpoch + 1,
	}
	changed := false
	if next.Leader != cur.Leader {
		l := next.Leader
		r.Leader = &l
		r.LeaderEpoch = cur.LeaderEpoch + 1
		changed = true
	}
	list := func(cur, next []int32) *pb.Int32List {
		if slices.Equal(cur, next) {
			return nil
		}
		changed = true
		return &pb.Int32List{Values: slices.Clone(next)}
	}
	r.Isr = list(cur.ISR, next.ISR)
	r.Replicas = list(cur.Replicas, next.Replicas)
	r.AddingReplicas = list(cur.Adding, next.Adding)
	r.RemovingReplicas = list(cur.Removing, next.Removing)
	if !changed {
		return nil
	}
	return &pb.MetadataRecord{Record: &pb.MetadataRecord_PartitionChange{PartitionChange: r}}
}

// electionOrder is the order leaders are picked in: the replicas in
// preference order, those being removed by a reassignment last.
func electionOrder(s pstate) []int32 {
	out := make([]int32, 0, len(s.Replicas))
	for _, r := range s.Replicas {
		if !slices.Contains(s.Removing, r) {
			out = append(out, r)
		}
	}
	for _, r := range s.Replicas {
		if slices.Contains(s.Removing, r) {
			out = append(out, r)
		}
	}
	return out
}

// electLeader sets s.Leader to the first eligible ISR member in election
// order. With unclean, and no eligible ISR member, it takes the first
// eligible replica and makes it the whole ISR. Otherwise the partition is
// left leaderless (NoLeader) with its ISR unchanged.
func electLeader(img *raftfsm.Image, s *pstate, unclean bool) {
	order := electionOrder(*s)
	for _, r := range order {
		if slices.Contains(s.ISR, r) && eligible(img, r) {
			s.Leader = r
			return
		}
	}
	if unclean {
		for _, r := range order {
			if eligible(img, r) {
				s.Leader = r
				s.ISR = []int32{r}
				return
			}
		}
	}
	s.Leader = raftfsm.NoLeader
}

// leaderOK reports whether s's leader may keep leading.
func leaderOK(img *raftfsm.Image, s pstate) bool {
	return s.Leader != raftfsm.NoLeader && slices.Contains(s.ISR, s.Leader) && eligible(img, s.Leader)
}

// uncleanAllowed reads unclean.leader.election.enable for t (topic override,
// then the cluster default, then false).
func uncleanAllowed(img *raftfsm.Image, t *raftfsm.Topic) bool {
	v, _ := effectiveConfig(img, t, "unclean.leader.election.enable")
	return v == "true"
}

func remove(s []int32, id int32) []int32 {
	out := make([]int32, 0, len(s))
	for _, x := range s {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

// rangePartitions calls fn for every partition of every topic in name order.
func rangePartitions(img *raftfsm.Image, fn func(t *raftfsm.Topic, i int32, p *raftfsm.Partition)) {
	for _, t := range img.Topics() {
		for i, p := range t.Partitions() {
			fn(t, int32(i), p)
		}
	}
}

func partitionRecord(id raftfsm.TopicID, index int32, s pstate) *pb.MetadataRecord {
	return &pb.MetadataRecord{Record: &pb.MetadataRecord_Partition{Partition: &pb.PartitionRecord{
		TopicId:          id.Bytes(),
		Partition:        index,
		Replicas:         s.Replicas,
		Isr:              s.ISR,
		Leader:           s.Leader,
		AddingReplicas:   s.Adding,
		RemovingReplicas: s.Removing,
	}}}
}
