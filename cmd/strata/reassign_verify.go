package main

import (
	"context"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

// Partition states of reassign verify (JSON values, stable).
const (
	stateDone       = "done"
	stateInProgress = "in_progress"
	stateFailed     = "failed"
)

// reassignState is one partition in the JSON of reassign verify (stable names).
type reassignState struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	State     string  `json:"state"` // done, in_progress, failed
	Target    []int32 `json:"target"`
	Replicas  []int32 `json:"replicas"` // current replica set
	Adding    []int32 `json:"adding"`
	Removing  []int32 `json:"removing"`
	Detail    string  `json:"detail,omitempty"`
}

func newReassignVerifyCmd(g *globalOptions) *cobra.Command {
	var plan string
	cmd := &cobra.Command{
		Use:   "verify --plan FILE",
		Short: "Report each partition of a plan as done, in progress or failed",
		Long: `Report each partition of the plan:

  done         its replicas are the plan's target and no reassignment is running
  in_progress  it is moving (adding replicas join the ISR as they catch up)
  failed       no reassignment is running and its replicas are not the target
               (never started, cancelled, replaced) or the partition is unknown

Exit 0 once every partition is done; 1 while some are in progress or failed
(run it again, or execute the plan again for failed ones). Once every
partition is done, the replication throttle that execute --throttle set is
removed from the plan's brokers.
JSON: {"done":bool,"partitions":[{"topic","partition","state","target",
"replicas","adding","removing","detail"}],"throttle_removed":[broker ids]}.`,
		Example: `  strata reassign verify --plan plan.json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := readPlan(plan)
			if err != nil {
				return err
			}
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				states, err := verifyPlan(ctx, a, p)
				if err != nil {
					return err
				}
				counts := map[string]int{}
				for _, s := range states {
					counts[s.State]++
				}
				out := struct {
					Done            bool            `json:"done"`
					Partitions      []reassignState `json:"partitions"`
					ThrottleRemoved []int32         `json:"throttle_removed"`
				}{Done: counts[stateDone] == len(states), Partitions: states, ThrottleRemoved: []int32{}}
				if out.Done {
					removed, err := clearThrottle(ctx, a, planBrokers(p))
					if err != nil {
						return err
					}
					out.ThrottleRemoved = orEmpty(removed)
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "TOPIC\tPARTITION\tSTATE\tREPLICAS\tTARGET\tDETAIL")
					for _, s := range states {
						fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.Topic, s.Partition, s.State, ints(s.Replicas), ints(s.Target), s.Detail)
					}
					if len(out.ThrottleRemoved) > 0 {
						fmt.Fprintf(tw, "\nReplication throttle removed from brokers %s.\n", ints(out.ThrottleRemoved))
					}
				}); err != nil {
					return err
				}
				if out.Done {
					return nil
				}
				return fmt.Errorf("reassignment not done: %d of %d partitions done, %d in progress, %d failed; run verify again (execute the plan again for failed ones)",
					counts[stateDone], len(states), counts[stateInProgress], counts[stateFailed])
			})
		},
	}
	cmd.Flags().StringVar(&plan, "plan", "", "the plan file (required)")
	return cmd
}

// verifyPlan reads the state of every partition of the plan.
func verifyPlan(ctx context.Context, a *client.Admin, plan *reassignPlan) ([]reassignState, error) {
	var tps []client.TopicPartition
	var topics []string
	for _, p := range plan.Partitions {
		tps = append(tps, p.tp())
		if !slices.Contains(topics, p.Topic) {
			topics = append(topics, p.Topic)
		}
	}
	ongoing, err := a.ListPartitionReassignments(ctx, tps)
	if err != nil {
		return nil, clusterError("list reassignments", err)
	}
	byTP := map[client.TopicPartition]client.OngoingReassignment{}
	for _, o := range ongoing {
		byTP[o.TopicPartition] = o
	}
	// The brokers' metadata trails the controller: read it after the list.
	ds, err := a.DescribeTopics(ctx, topics, client.DescribeTopicsOptions{})
	if err != nil {
		return nil, clusterError("describe topics", err)
	}
	byName := map[string]client.TopicDescription{}
	for _, d := range ds {
		byName[d.Name] = d
	}
	var out []reassignState
	for _, p := range plan.Partitions {
		s := reassignState{Topic: p.Topic, Partition: p.Partition, Target: p.Replicas, Replicas: []int32{}, Adding: []int32{}, Removing: []int32{}}
		d := byName[p.Topic]
		o, moving := byTP[p.tp()]
		switch {
		case d.Err != nil:
			s.State, s.Detail = stateFailed, errorMessage(d.Err)
		case int(p.Partition) >= len(d.Partitions):
			s.State, s.Detail = stateFailed, fmt.Sprintf("topic %s has %d partitions", p.Topic, len(d.Partitions))
		case moving:
			s.Replicas, s.Adding, s.Removing = orEmpty(o.Replicas), orEmpty(o.Adding), orEmpty(o.Removing)
			s.State = stateInProgress
			var waiting []int32
			for _, r := range o.Adding {
				if !slices.Contains(o.ISR, r) {
					waiting = append(waiting, r)
				}
			}
			if len(waiting) > 0 {
				s.Detail = "waiting for " + ints(waiting) + " to catch up"
			}
			if !slices.Equal(o.Target(), p.Replicas) {
				s.Detail = "moving to " + ints(o.Target()) + ", not to the plan's target"
			}
		default:
			cur := d.Partitions[p.Partition].Replicas
			s.Replicas = orEmpty(cur)
			switch {
			case slices.Equal(cur, p.Replicas):
				s.State = stateDone
			case containsAll(cur, p.Replicas) && len(cur) > len(p.Replicas):
				// Finished at the controller; the broker's metadata has not caught up.
				s.State, s.Detail = stateInProgress, "finishing"
			default:
				s.State, s.Detail = stateFailed, "no reassignment running and the replicas are not the target (execute the plan again)"
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func containsAll(set, sub []int32) bool {
	for _, r := range sub {
		if !slices.Contains(set, r) {
			return false
		}
	}
	return true
}
