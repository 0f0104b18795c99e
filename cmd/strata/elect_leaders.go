package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

type electLeadersOptions struct {
	preferred bool
	unclean   bool
	topic     string
	partition int32
}

// electionOutcome is one partition in the JSON of elect-leaders (stable names).
type electionOutcome struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Leader    int32  `json:"leader"` // after the election; -1: none
	// Result is "elected", "not_needed" (the right leader already led) or "failed".
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

func newElectLeadersCmd(g *globalOptions) *cobra.Command {
	var o electLeadersOptions
	cmd := &cobra.Command{
		Use:   "elect-leaders (--preferred | --unclean) [--topic T [--partition P]]",
		Short: "Move leadership back to preferred replicas (or elect leaders for leaderless partitions)",
		Long: `Run leader elections, like kafka-leader-election.sh.

--preferred moves each partition's leadership to its first replica when that
replica is alive and in sync (after a broker restart, leadership stays where
failover put it until this runs). --unclean elects a leader for leaderless
partitions from outside the ISR: acknowledged records may be lost.

Without --topic, every partition that needs an election; with --topic, its
partitions (or only --partition P). Exit 1 if an election failed.
JSON: {"results":[{"topic","partition","leader","result":"elected|not_needed|failed","error"}]}.`,
		Example: `  strata elect-leaders --preferred
  strata elect-leaders --preferred --topic orders --partition 3`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.preferred == o.unclean {
				return usagef("give exactly one of --preferred or --unclean")
			}
			hasPartition := cmd.Flags().Changed("partition")
			if hasPartition && o.topic == "" {
				return usagef("--partition needs --topic")
			}
			if hasPartition && o.partition < 0 {
				return usagef("--partition %d: want a partition index >= 0", o.partition)
			}
			typ := client.ElectPreferred
			if o.unclean {
				typ = client.ElectUnclean
			}
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				var tps []client.TopicPartition
				switch {
				case hasPartition:
					tps = []client.TopicPartition{{Topic: o.topic, Partition: o.partition}}
				case o.topic != "":
					ds, err := a.DescribeTopics(ctx, []string{o.topic}, client.DescribeTopicsOptions{})
					if err != nil {
						return clusterError("describe topic "+o.topic, err)
					}
					if ds[0].Err != nil {
						return clusterError(fmt.Sprintf("elect leaders of topic %q", o.topic), ds[0].Err)
					}
					for _, p := range ds[0].Partitions {
						tps = append(tps, client.TopicPartition{Topic: o.topic, Partition: p.Partition})
					}
				}
				res, err := a.ElectLeaders(ctx, typ, tps)
				if err != nil {
					return clusterError("elect leaders", err)
				}
				out := struct {
					Results []electionOutcome `json:"results"`
				}{Results: []electionOutcome{}}
				failed := 0
				var firstErr error
				for _, r := range res {
					e := electionOutcome{Topic: r.Topic, Partition: r.Partition, Leader: r.Leader, Result: "elected"}
					switch {
					case r.Err == nil:
					case client.ElectionNotNeeded(r.Err):
						e.Result = "not_needed"
					default:
						e.Result, e.Error = "failed", errorMessage(r.Err)
						if failed++; firstErr == nil {
							firstErr = clusterError(fmt.Sprintf("elect a leader for %s-%d", r.Topic, r.Partition), r.Err)
						}
					}
					out.Results = append(out.Results, e)
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					if len(out.Results) == 0 {
						fmt.Fprintln(tw, "No partition needs an election.")
						return
					}
					fmt.Fprintln(tw, "TOPIC\tPARTITION\tLEADER\tRESULT")
					for _, e := range out.Results {
						res := e.Result
						if e.Error != "" {
							res += ": " + e.Error
						}
						fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", e.Topic, e.Partition, nodeOrNone(e.Leader), res)
					}
				}); err != nil {
					return err
				}
				if failed > 1 {
					return fmt.Errorf("%d elections failed; the first: %w", failed, firstErr)
				}
				return firstErr
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.preferred, "preferred", false, "move leadership to the preferred (first) replica")
	f.BoolVar(&o.unclean, "unclean", false, "elect leaders for leaderless partitions, from outside the ISR if need be (may lose records)")
	f.StringVar(&o.topic, "topic", "", "only this topic's partitions")
	f.Int32Var(&o.partition, "partition", 0, "only this partition (with --topic)")
	return cmd
}
