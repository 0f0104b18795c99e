package controller

import (
	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// placeReplicas chooses replicas for count new partitions of replication
// factor rf among the eligible brokers (registered, unfenced, not shutting
// down), spreading load evenly over the whole cluster:
//
//   - the leader (first replica) of each partition is the broker with the
//     fewest preferred leaderships, then the fewest replicas;
//   - each follower is the broker whose rack has the fewest replicas of this
//     partition so far (rack-aware: a partition's replicas span as many racks
//     as possible), then the fewest replicas;
//   - ties break by ring position (broker ids sorted, rotated by the number
//     of partitions already placed, followers continuing after the leader),
//     so successive partitions start on successive brokers.
//
// Load counts come from the image, so the result is deterministic given the
// image. A replication factor above the eligible brokers is refused.
func placeReplicas(img *raftfsm.Image, count, rf int32) ([][]int32, error) {
	var ids []int32
	rack := map[int32]string{}
	for _, b := range img.Brokers() {
		if eligible(img, b.ID) {
			ids = append(ids, b.ID)
			rack[b.ID] = b.Rack
		}
	}
	if rf <= 0 {
		return nil, errorf(pb.ErrorCode_INVALID_REPLICATION_FACTOR, "replication factor %d is not positive", rf)
	}
	if int(rf) > len(ids) {
		return nil, errorf(pb.ErrorCode_INVALID_REPLICATION_FACTOR,
			"replication factor %d is larger than the %d available brokers", rf, len(ids))
	}
	n := len(ids)
	idx := map[int32]int{}
	for i, id := range ids {
		idx[id] = i
	}
	leaders := map[int32]int{}
	replicas := map[int32]int{}
	placed := 0
	rangePartitions(img, func(_ *raftfsm.Topic, _ int32, p *raftfsm.Partition) {
		placed++
		if len(p.Replicas) > 0 {
			leaders[p.Replicas[0]]++
		}
		for _, r := range p.Replicas {
			replicas[r]++
		}
	})
	out := make([][]int32, count)
	for p := range count {
		start := (placed + int(p)) % n
		ring := func(id int32, from int) int { return (idx[id] - from + n) % n }
		best := ids[0]
		for _, id := range ids[1:] {
			if less3(leaders[id], replicas[id], ring(id, start), leaders[best], replicas[best], ring(best, start)) {
				best = id
			}
		}
		reps := []int32{best}
		used := map[string]int{rack[best]: 1}
		lead := idx[best]
		for len(reps) < int(rf) {
			var pick int32 = -1
			for _, id := range ids {
				if contains(reps, id) {
					continue
				}
				if pick < 0 || less3(used[rack[id]], replicas[id], ring(id, lead), used[rack[pick]], replicas[pick], ring(pick, lead)) {
					pick = id
				}
			}
			reps = append(reps, pick)
			used[rack[pick]]++
		}
		leaders[reps[0]]++
		for _, r := range reps {
			replicas[r]++
		}
		out[p] = reps
	}
	return out, nil
}

func less3(a1, a2, a3, b1, b2, b3 int) bool {
	if a1 != b1 {
		return a1 < b1
	}
	if a2 != b2 {
		return a2 < b2
	}
	return a3 < b3
}

func contains(s []int32, x int32) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
