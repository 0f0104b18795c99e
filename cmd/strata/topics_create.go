package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

type topicsCreateOptions struct {
	partitions   int32
	rf           int32
	configs      []string
	validateOnly bool
}

// topicCreated is the JSON of topics create (field names are stable).
type topicCreated struct {
	Name              string            `json:"name"`
	ID                string            `json:"id"`
	Partitions        int32             `json:"partitions"`
	ReplicationFactor int32             `json:"replication_factor"`
	Configs           map[string]string `json:"configs"` // effective configs
	ValidateOnly      bool              `json:"validate_only"`
}

func newTopicsCreateCmd(g *globalOptions) *cobra.Command {
	var o topicsCreateOptions
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic",
		Long: `Create a topic. Without --partitions or --replication-factor the cluster's
defaults apply (num.partitions, default.replication.factor; both 1 in strata dev).
A replication factor above the number of live brokers is refused.

The command returns once the brokers know the topic (or after a few seconds),
so a produce right after it finds the topic.`,
		Example: `  strata topics create orders --partitions 6 --replication-factor 3
  strata topics create audit --config retention.ms=86400000 --config cleanup.policy=compact`,
		Args: nArgs(1, 1, "the topic NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if f.Changed("partitions") && o.partitions < 1 {
				return usagef("--partitions %d: want at least 1 (or leave it out for the cluster default)", o.partitions)
			}
			if f.Changed("replication-factor") && o.rf < 1 {
				return usagef("--replication-factor %d: want at least 1 (or leave it out for the cluster default)", o.rf)
			}
			configs, err := parseConfigs(o.configs)
			if err != nil {
				return err
			}
			name := args[0]
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				res, err := a.CreateTopics(ctx, []client.NewTopic{{Name: name, Partitions: o.partitions, ReplicationFactor: o.rf, Configs: configs}},
					client.CreateTopicsOptions{ValidateOnly: o.validateOnly})
				if err != nil {
					return clusterError(fmt.Sprintf("create topic %q", name), err)
				}
				r := res[0]
				if r.Err != nil {
					return clusterError(fmt.Sprintf("create topic %q", name), r.Err)
				}
				if !o.validateOnly {
					wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_ = a.WaitForTopics(wctx, true, name) // best effort: the topic exists either way
					cancel()
				}
				out := topicCreated{Name: name, ID: r.ID, Partitions: r.Partitions, ReplicationFactor: r.ReplicationFactor,
					Configs: r.Configs, ValidateOnly: o.validateOnly}
				if out.Configs == nil {
					out.Configs = map[string]string{}
				}
				return g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					verb := "Created"
					if o.validateOnly {
						verb = "Validated (not created)"
					}
					fmt.Fprintf(tw, "%s topic %s with %d partitions, replication factor %d.\n", verb, name, r.Partitions, r.ReplicationFactor)
				})
			})
		},
	}
	f := cmd.Flags()
	f.Int32Var(&o.partitions, "partitions", -1, "number of partitions (default: the cluster's num.partitions)")
	f.Int32Var(&o.rf, "replication-factor", -1, "replicas per partition, at most the live brokers (default: the cluster's default.replication.factor)")
	f.StringArrayVar(&o.configs, "config", nil, "topic config override key=value (repeatable)")
	f.BoolVar(&o.validateOnly, "validate-only", false, "check the request and show the placement's result, create nothing")
	return cmd
}
