package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
	pb "github.com/stratalog/strata/proto/strata/v1"
)

func newReassignCancelCmd(g *globalOptions) *cobra.Command {
	var plan string
	cmd := &cobra.Command{
		Use:   "cancel --plan FILE",
		Short: "Cancel the reassignments of a plan (back to the original replicas)",
		Long: `Cancel the reassignments in progress of the plan's partitions: each goes back
to its original replicas (replicas being added leave). A partition that is not
being reassigned is reported as not_in_progress and is no error. Exit 1 if a
cancel was refused (e.g. no original replica is in sync any more). The
replication throttle that execute --throttle set is removed from the plan's
brokers.
JSON: {"results":[{"topic","partition","result":"cancelled|not_in_progress|failed","error"}],
"throttle_removed":[broker ids]}.`,
		Example: `  strata reassign cancel --plan plan.json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := readPlan(plan)
			if err != nil {
				return err
			}
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				var tps []client.TopicPartition
				for _, pp := range p.Partitions {
					tps = append(tps, pp.tp())
				}
				res, err := a.CancelPartitionReassignments(ctx, tps)
				if err != nil {
					return clusterError("cancel reassignments", err)
				}
				removed, err := clearThrottle(ctx, a, planBrokers(p))
				if err != nil {
					return err
				}
				out := struct {
					Results         []reassignOutcome `json:"results"`
					ThrottleRemoved []int32           `json:"throttle_removed"`
				}{Results: []reassignOutcome{}, ThrottleRemoved: orEmpty(removed)}
				failed := 0
				var firstErr error
				for _, r := range res {
					oc := reassignOutcome{Topic: r.Topic, Partition: r.Partition, Result: "cancelled"}
					switch {
					case r.Err == nil:
					case errorCode(r.Err) == pb.ErrorCode_NO_REASSIGNMENT_IN_PROGRESS:
						oc.Result = "not_in_progress"
					default:
						oc.Result, oc.Error = "failed", errorMessage(r.Err)
						if failed++; firstErr == nil {
							firstErr = clusterError(fmt.Sprintf("cancel the reassignment of %s-%d", r.Topic, r.Partition), r.Err)
						}
					}
					out.Results = append(out.Results, oc)
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					reassignTable(tw, out.Results)
					if len(removed) > 0 {
						fmt.Fprintf(tw, "\nReplication throttle removed from brokers %s.\n", ints(removed))
					}
				}); err != nil {
					return err
				}
				if failed > 1 {
					return fmt.Errorf("%d of %d cancels refused; the first: %w", failed, len(out.Results), firstErr)
				}
				return firstErr
			})
		},
	}
	cmd.Flags().StringVar(&plan, "plan", "", "the plan file (required)")
	return cmd
}
