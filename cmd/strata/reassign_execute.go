package main

import (
	"context"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/broker"
	"github.com/stratalog/strata/client"
)

type reassignExecuteOptions struct {
	plan     string
	throttle int64
}

// reassignOutcome is one partition in the JSON of reassign execute and
// cancel (stable names).
type reassignOutcome struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Result: execute "started" or "failed"; cancel "cancelled",
	// "not_in_progress" or "failed".
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

func newReassignExecuteCmd(g *globalOptions) *cobra.Command {
	var o reassignExecuteOptions
	cmd := &cobra.Command{
		Use:   "execute --plan FILE",
		Short: "Start the reassignments of a plan",
		Long: `Start moving every partition of the plan to its target replicas, and return
once the controller has accepted them (the data moves in the background:
follow it with strata reassign verify). A partition already being reassigned
gets the new target instead.

The current assignment of the plan's partitions is printed first: keep it to
roll back. Exit 1 if a partition was refused (the others still start).

--throttle BYTES_PER_S caps the replication traffic of the move: it sets the
dynamic broker config follower.replication.throttled.rate on every broker of
the plan's targets first (brokers apply it at once to the fetches of replicas
being added, all partitions of a broker together), and strata reassign verify
removes it once every partition is done (cancel removes it too). It overrides
strata server --replication-throttle while set.

JSON: {"current":PLAN,"throttle":{"bytes_per_sec","brokers"}|null,
"results":[{"topic","partition","result":"started|failed","error"}]}.`,
		Example: `  strata reassign execute --plan plan.json
  strata reassign execute --plan plan.json --throttle 10000000   # 10 MB/s per receiving broker`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("throttle") && o.throttle <= 0 {
				return usagef("--throttle must be a positive number of bytes/s, got %d (leave it out for no throttle)", o.throttle)
			}
			plan, err := readPlan(o.plan)
			if err != nil {
				return err
			}
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				current, err := currentAssignment(ctx, a, plan)
				if err != nil {
					return err
				}
				var throttle *throttleSetting
				if o.throttle > 0 {
					throttle = &throttleSetting{BytesPerSec: o.throttle, Brokers: planBrokers(plan)}
					if err := setThrottle(ctx, a, throttle.Brokers, o.throttle); err != nil {
						return err
					}
				}
				var rs []client.Reassignment
				for _, p := range plan.Partitions {
					rs = append(rs, client.Reassignment{TopicPartition: p.tp(), Replicas: p.Replicas})
				}
				res, err := a.AlterPartitionReassignments(ctx, rs)
				if err != nil {
					return clusterError("start reassignments", err)
				}
				out := struct {
					Current  *reassignPlan     `json:"current"`
					Throttle *throttleSetting  `json:"throttle"`
					Results  []reassignOutcome `json:"results"`
				}{Current: current, Throttle: throttle, Results: []reassignOutcome{}}
				failed := 0
				var firstErr error
				for _, r := range res {
					oc := reassignOutcome{Topic: r.Topic, Partition: r.Partition, Result: "started"}
					if r.Err != nil {
						oc.Result, oc.Error = "failed", errorMessage(r.Err)
						if failed++; firstErr == nil {
							firstErr = clusterError(fmt.Sprintf("reassign %s-%d", r.Topic, r.Partition), r.Err)
						}
					}
					out.Results = append(out.Results, oc)
				}
				if g.output == "table" {
					fmt.Fprintln(cmd.OutOrStdout(), "Current assignment (keep it to roll back with strata reassign execute --plan):")
					if err := writePlan(cmd.OutOrStdout(), current); err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout())
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					reassignTable(tw, out.Results)
					if throttle != nil {
						fmt.Fprintf(tw, "\nReplication throttled to %d bytes/s on brokers %s (%s; verify removes it when done).\n",
							throttle.BytesPerSec, ints(throttle.Brokers), broker.ThrottleConfigKey)
					}
					if failed < len(out.Results) {
						fmt.Fprintln(tw, "\nFollow the progress with: strata reassign verify --plan", o.plan)
					}
				}); err != nil {
					return err
				}
				if failed > 1 {
					return fmt.Errorf("%d of %d partitions refused; the first: %w", failed, len(out.Results), firstErr)
				}
				return firstErr
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.plan, "plan", "", "the plan file (required)")
	f.Int64Var(&o.throttle, "throttle", 0, "cap in bytes/s on the replication traffic each receiving broker fetches for the move (removed by verify once done)")
	return cmd
}

// throttleSetting is the throttle execute set (JSON names stable).
type throttleSetting struct {
	BytesPerSec int64   `json:"bytes_per_sec"`
	Brokers     []int32 `json:"brokers"`
}

// currentAssignment is the plan's partitions' replicas now (unknown
// partitions left out: execute reports them).
func currentAssignment(ctx context.Context, a *client.Admin, plan *reassignPlan) (*reassignPlan, error) {
	var topics []string
	seen := map[string]bool{}
	for _, p := range plan.Partitions {
		if !seen[p.Topic] {
			seen[p.Topic] = true
			topics = append(topics, p.Topic)
		}
	}
	ds, err := a.DescribeTopics(ctx, topics, client.DescribeTopicsOptions{})
	if err != nil {
		return nil, clusterError("describe topics", err)
	}
	byName := map[string]client.TopicDescription{}
	for _, d := range ds {
		byName[d.Name] = d
	}
	// A partition being reassigned lists its adding replicas too: its
	// original replicas are the others.
	ongoing, err := a.ListPartitionReassignments(ctx, nil)
	if err != nil {
		return nil, clusterError("list reassignments", err)
	}
	adding := map[client.TopicPartition][]int32{}
	for _, o := range ongoing {
		adding[o.TopicPartition] = o.Adding
	}
	cur := &reassignPlan{Version: 1, Partitions: []planPartition{}}
	for _, p := range plan.Partitions {
		d := byName[p.Topic]
		if d.Err != nil || int(p.Partition) >= len(d.Partitions) {
			continue
		}
		var reps []int32
		for _, r := range d.Partitions[p.Partition].Replicas {
			if !slices.Contains(adding[p.tp()], r) {
				reps = append(reps, r)
			}
		}
		cur.Partitions = append(cur.Partitions, planPartition{Topic: p.Topic, Partition: p.Partition, Replicas: reps})
	}
	return cur, nil
}

func reassignTable(tw *tabwriter.Writer, rs []reassignOutcome) {
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tRESULT")
	for _, r := range rs {
		res := r.Result
		if r.Error != "" {
			res += ": " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", r.Topic, r.Partition, res)
	}
}
