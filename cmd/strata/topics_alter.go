package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

type topicsAlterOptions struct {
	partitions    int32
	configs       []string
	deleteConfigs []string
}

// topicAltered is the JSON of topics alter (stable names).
type topicAltered struct {
	Name           string            `json:"name"`
	Partitions     int32             `json:"partitions,omitempty"` // the new count, when --partitions was given
	ConfigsSet     map[string]string `json:"configs_set"`
	ConfigsDeleted []string          `json:"configs_deleted"`
}

func newTopicsAlterCmd(g *globalOptions) *cobra.Command {
	var o topicsAlterOptions
	cmd := &cobra.Command{
		Use:   "alter NAME (--partitions N | --config k=v ... | --delete-config k ...)",
		Short: "Add partitions to a topic or change its configs",
		Long: `Grow a topic to --partitions N (partitions never shrink: a count not above the
current one is refused), and/or set (--config key=value) or remove
(--delete-config key, back to the default) config overrides. The configs of
one call are applied together or not at all.

Adding partitions changes which partition a key maps to.`,
		Example: `  strata topics alter orders --partitions 12
  strata topics alter orders --config retention.ms=3600000 --delete-config cleanup.policy`,
		Args: nArgs(1, 1, "the topic NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			f := cmd.Flags()
			if !f.Changed("partitions") && len(o.configs) == 0 && len(o.deleteConfigs) == 0 {
				return usagef("nothing to alter: give --partitions N, --config key=value or --delete-config key")
			}
			if f.Changed("partitions") && o.partitions < 1 {
				return usagef("--partitions %d: want the new total count, larger than the current one", o.partitions)
			}
			set, err := parseConfigs(o.configs)
			if err != nil {
				return err
			}
			var ops []client.ConfigOp
			for k, v := range set {
				ops = append(ops, client.ConfigOp{Key: k, Op: client.ConfigSet, Value: v})
			}
			for _, k := range o.deleteConfigs {
				if _, both := set[k]; both {
					return usagef("%s is both in --config and --delete-config", k)
				}
				ops = append(ops, client.ConfigOp{Key: k, Op: client.ConfigDelete})
			}
			sort.Slice(ops, func(i, j int) bool { return ops[i].Key < ops[j].Key })
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				out := topicAltered{Name: name, ConfigsSet: set, ConfigsDeleted: orEmpty(o.deleteConfigs)}
				if f.Changed("partitions") {
					res, err := a.CreatePartitions(ctx, []client.NewPartitions{{Topic: name, Count: o.partitions}}, client.CreatePartitionsOptions{})
					if err == nil {
						err = res[0].Err
					}
					if err != nil {
						return clusterError(fmt.Sprintf("alter topic %q: --partitions %d", name, o.partitions), err)
					}
					out.Partitions = o.partitions
				}
				if len(ops) > 0 {
					res, err := a.AlterConfigs(ctx, []client.ConfigChange{{Resource: client.TopicResource(name), Ops: ops}}, client.AlterConfigsOptions{})
					if err == nil {
						err = res[0].Err
					}
					if err != nil {
						what := fmt.Sprintf("alter topic %q configs", name)
						if out.Partitions > 0 {
							what += fmt.Sprintf(" (the topic now has %d partitions)", out.Partitions)
						}
						return clusterError(what, err)
					}
				}
				return g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					if out.Partitions > 0 {
						fmt.Fprintf(tw, "Topic %s now has %d partitions.\n", name, out.Partitions)
					}
					for _, op := range ops {
						if op.Op == client.ConfigSet {
							fmt.Fprintf(tw, "Topic %s: set %s=%s.\n", name, op.Key, op.Value)
						} else {
							fmt.Fprintf(tw, "Topic %s: removed the %s override (back to the default).\n", name, op.Key)
						}
					}
				})
			})
		},
	}
	f := cmd.Flags()
	f.Int32Var(&o.partitions, "partitions", 0, "the new total partition count (larger than the current one)")
	f.StringArrayVar(&o.configs, "config", nil, "set a config override key=value (repeatable)")
	f.StringArrayVar(&o.deleteConfigs, "delete-config", nil, "remove a config override, back to the default (repeatable)")
	return cmd
}
