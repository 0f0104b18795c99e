package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

type reassignGenerateOptions struct {
	topics  string
	brokers string
}

func newReassignGenerateCmd(g *globalOptions) *cobra.Command {
	var o reassignGenerateOptions
	cmd := &cobra.Command{
		Use:   "generate --topics T,... --brokers ID,...",
		Short: "Print a plan spreading the topics' replicas over the given brokers",
		Long: `Print (on stdout) a plan that spreads every partition of the topics over the
given brokers, keeping each partition's replication factor: round robin with a
rotating start, as Kafka's tool does — partition p's first replica is broker
(p + s) mod n, its followers follow at a shift that grows every n partitions,
and the start s rotates from topic to topic so the preferred leaders spread.

The current assignment goes to stderr: keep it to roll back (execute it as a
plan). Nothing changes until strata reassign execute.`,
		Example: `  strata reassign generate --topics orders,audit --brokers 1,2,3 > plan.json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var topics []string
			for _, t := range strings.Split(o.topics, ",") {
				if t = strings.TrimSpace(t); t != "" && !slices.Contains(topics, t) {
					topics = append(topics, t)
				}
			}
			if len(topics) == 0 {
				return usagef("--topics is required: the topics to move, e.g. --topics orders,audit")
			}
			brokers, err := parseInt32List(o.brokers, "--brokers")
			if err != nil {
				return err
			}
			if len(brokers) == 0 {
				return usagef("--brokers is required: the broker ids to spread the replicas over, e.g. --brokers 1,2,3")
			}
			slices.Sort(brokers)
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				d, err := a.DescribeCluster(ctx)
				if err != nil {
					return clusterError("describe cluster", err)
				}
				var registered []int32
				for _, b := range d.Brokers {
					registered = append(registered, b.ID)
				}
				for _, b := range brokers {
					if !slices.Contains(registered, b) {
						return usagef("--brokers: broker %d is not registered in the cluster (registered: %s; see strata cluster describe)", b, ints(registered))
					}
				}
				ds, err := a.DescribeTopics(ctx, topics, client.DescribeTopicsOptions{})
				if err != nil {
					return clusterError("describe topics", err)
				}
				for _, t := range ds {
					if t.Err != nil {
						return clusterError(fmt.Sprintf("topic %q", t.Name), t.Err)
					}
				}
				current := &reassignPlan{Version: 1, Partitions: []planPartition{}}
				for _, t := range ds {
					for _, p := range t.Partitions {
						current.Partitions = append(current.Partitions, planPartition{Topic: t.Name, Partition: p.Partition, Replicas: p.Replicas})
					}
				}
				proposed, err := generatePlan(ds, brokers)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "Current assignment (keep it to roll back with strata reassign execute --plan):")
				if err := writePlan(cmd.ErrOrStderr(), current); err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "Proposed assignment (stdout):")
				return writePlan(cmd.OutOrStdout(), proposed)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.topics, "topics", "", "comma-separated topics to move (required)")
	f.StringVar(&o.brokers, "brokers", "", "comma-separated broker ids to spread the replicas over (required)")
	return cmd
}

// generatePlan assigns every partition of topics to brokers (sorted), as
// Kafka's AdminUtils.assignReplicasToBrokers does without racks, with the
// start index and the replica shift rotating by topic instead of random.
func generatePlan(topics []client.TopicDescription, brokers []int32) (*reassignPlan, error) {
	n := len(brokers)
	plan := &reassignPlan{Version: 1, Partitions: []planPartition{}}
	for k, t := range topics {
		start, shift := k%n, k%n
		for i, p := range t.Partitions {
			rf := len(p.Replicas)
			if rf > n {
				return nil, usagef("--brokers names %d brokers but %s-%d has %d replicas; name at least %d brokers", n, t.Name, p.Partition, rf, rf)
			}
			if i > 0 && i%n == 0 {
				shift++
			}
			first := (i + start) % n
			reps := []int32{brokers[first]}
			for j := range rf - 1 {
				reps = append(reps, brokers[replicaIndex(first, shift, j, n)])
			}
			plan.Partitions = append(plan.Partitions, planPartition{Topic: t.Name, Partition: p.Partition, Replicas: reps})
		}
	}
	return plan, nil
}

// replicaIndex is Kafka's: follower j of a partition whose first replica is
// at first, with the given shift, among n brokers.
func replicaIndex(first, shift, j, n int) int {
	return (first + 1 + (shift+j)%(n-1)) % n
}
