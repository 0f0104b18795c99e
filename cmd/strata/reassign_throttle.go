package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/stratalog/strata/broker"
	"github.com/stratalog/strata/client"
)

// A reassignment's throttle is the dynamic broker config
// follower.replication.throttled.rate (broker.ThrottleConfigKey), set by
// `reassign execute --throttle` on every broker named in the plan's targets
// (the brokers that may receive a replica) and removed from them by
// `reassign verify` once every partition is done, or by `reassign cancel`.
// The brokers apply it at once to the fetches of replicas being added.

// planBrokers are the brokers of the plan's target replicas, sorted.
func planBrokers(plan *reassignPlan) []int32 {
	var ids []int32
	for _, p := range plan.Partitions {
		for _, r := range p.Replicas {
			if !slices.Contains(ids, r) {
				ids = append(ids, r)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// setThrottle sets the rate on every broker in ids, all or none.
func setThrottle(ctx context.Context, a *client.Admin, ids []int32, bytesPerSec int64) error {
	return alterThrottle(ctx, a, ids, client.ConfigOp{Op: client.ConfigSet, Key: broker.ThrottleConfigKey, Value: fmt.Sprint(bytesPerSec)})
}

// clearThrottle removes the rate from those of ids that have it set, and
// returns them.
func clearThrottle(ctx context.Context, a *client.Admin, ids []int32) ([]int32, error) {
	var rs []client.ConfigResource
	for _, id := range ids {
		rs = append(rs, client.BrokerResource(id))
	}
	cfgs, err := a.DescribeConfigs(ctx, rs, broker.ThrottleConfigKey)
	if err != nil {
		return nil, clusterError("describe broker configs", err)
	}
	var set []int32
	for _, rc := range cfgs {
		id, err := strconv.ParseInt(rc.Resource.Name, 10, 32)
		if rc.Err != nil || err != nil {
			continue
		}
		for _, e := range rc.Configs {
			if e.Key == broker.ThrottleConfigKey && e.Source == "broker" {
				set = append(set, int32(id))
			}
		}
	}
	slices.Sort(set)
	if len(set) == 0 {
		return nil, nil
	}
	return set, alterThrottle(ctx, a, set, client.ConfigOp{Op: client.ConfigDelete, Key: broker.ThrottleConfigKey})
}

func alterThrottle(ctx context.Context, a *client.Admin, ids []int32, op client.ConfigOp) error {
	var chs []client.ConfigChange
	for _, id := range ids {
		chs = append(chs, client.ConfigChange{Resource: client.BrokerResource(id), Ops: []client.ConfigOp{op}})
	}
	res, err := a.AlterConfigs(ctx, chs, client.AlterConfigsOptions{})
	if err != nil {
		return clusterError("set the replication throttle", err)
	}
	for _, r := range res {
		if r.Err != nil {
			return clusterError(fmt.Sprintf("%s on broker %s", broker.ThrottleConfigKey, r.Resource.Name), r.Err)
		}
	}
	return nil
}
