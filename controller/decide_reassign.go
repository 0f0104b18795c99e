package controller

import (
	"slices"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// Reassignment moves a partition from its original replicas O to a target
// T, in steps, each one a PartitionChangeRecord:
//
//  1. start:    replicas = T + (O - T), adding = T - O, removing = O - T;
//     the new replicas start fetching from the leader.
//  2. progress: the leader adds them to the ISR with AlterPartition as they
//     catch up (ListPartitionReassignments shows which have joined).
//  3. finish:   once every adding replica is in the ISR, one record sets
//     replicas = T, ISR = ISR ∩ T, clears adding/removing and, when the
//     leader is leaving, elects a new one from the ISR in T's order. The
//     finish is folded into the AlterPartition that completes the ISR (or into
//     the start when nothing is added).
//
// Cancel (an empty target) goes back to O: adding replicas leave the replica
// set and the ISR; a leader among them is replaced.

// decideReassign starts (or replaces, or cancels) a reassignment.
func decideReassign(t *txn, tp *raftfsm.Topic, index int32, target []int32) error {
	p := tp.Partition(index)
	if p == nil {
		return errorf(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, "topic %q has no partition %d", tp.Name(), index)
	}
	s := stateOf(p)
	orig := originalReplicas(s)
	if len(target) == 0 { // cancel
		if !p.IsReassigning() {
			return errorf(pb.ErrorCode_NO_REASSIGNMENT_IN_PROGRESS, "no reassignment of %s-%d in progress", tp.Name(), index)
		}
		if !revertTo(t.img, tp, &s, orig) {
			return errorf(pb.ErrorCode_REASSIGNMENT_IN_PROGRESS, "no original replica of %s-%d is in sync; the reassignment can not be cancelled", tp.Name(), index)
		}
	} else {
		if err := validateReplicaList(t.img, target); err != nil {
			return err
		}
		if !p.IsReassigning() && slices.Equal(target, p.Replicas) {
			return nil // already there
		}
		s.Adding, s.Removing = nil, nil
		s.Replicas = slices.Clone(target)
		for _, r := range target {
			if !slices.Contains(orig, r) {
				s.Adding = append(s.Adding, r)
			}
		}
		for _, r := range orig {
			if !slices.Contains(target, r) {
				s.Removing = append(s.Removing, r)
				s.Replicas = append(s.Replicas, r)
			}
		}
		// Replicas of a replaced reassignment that are no longer wanted leave the ISR.
		s.ISR = keepIf(s.ISR, func(r int32) bool { return slices.Contains(s.Replicas, r) })
		if len(s.ISR) == 0 {
			return errorf(pb.ErrorCode_INVALID_REPLICA_ASSIGNMENT, "target %v keeps no ISR member", target)
		}
		if !leaderOK(t.img, s) {
			electLeader(t.img, &s, false)
		}
		advanceReassignment(t.img, tp, &s)
	}
	if r := changeRecord(tp.ID(), index, p, s); r != nil {
		return t.add(r)
	}
	return nil
}

// originalReplicas is the replica set before the reassignment in progress:
// replicas minus adding, in order.
func originalReplicas(s pstate) []int32 {
	return keepIf(s.Replicas, func(r int32) bool { return !slices.Contains(s.Adding, r) })
}

// advanceReassignment finishes s's reassignment if every adding replica is in
// the ISR (step 3 above). It is a no-op otherwise.
func advanceReassignment(img *raftfsm.Image, tp *raftfsm.Topic, s *pstate) {
	if len(s.Adding) == 0 && len(s.Removing) == 0 {
		return
	}
	for _, r := range s.Adding {
		if !slices.Contains(s.ISR, r) {
			return
		}
	}
	target := keepIf(s.Replicas, func(r int32) bool { return !slices.Contains(s.Removing, r) })
	isr := keepIf(s.ISR, func(r int32) bool { return slices.Contains(target, r) })
	if len(isr) == 0 {
		return // nobody of the target is in sync yet
	}
	s.Replicas, s.ISR, s.Adding, s.Removing = target, isr, nil, nil
	if !leaderOK(img, *s) {
		electLeader(img, s, false)
	}
}

// revertTo cancels s's reassignment back to the original replicas; false
// when no original replica is in the ISR (the cancel would lose data).
func revertTo(img *raftfsm.Image, tp *raftfsm.Topic, s *pstate, orig []int32) bool {
	isr := keepIf(s.ISR, func(r int32) bool { return slices.Contains(orig, r) })
	if len(isr) == 0 {
		return false
	}
	s.Replicas, s.ISR, s.Adding, s.Removing = orig, isr, nil, nil
	if !leaderOK(img, *s) {
		electLeader(img, s, uncleanAllowed(img, tp))
	}
	return true
}

func keepIf(s []int32, keep func(int32) bool) []int32 {
	var out []int32
	for _, x := range s {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}
