package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

// topicDescription is one topic in the JSON of topics describe (stable names).
type topicDescription struct {
	Name              string                 `json:"name"`
	ID                string                 `json:"id"`
	Internal          bool                   `json:"internal"`
	PartitionCount    int                    `json:"partition_count"`
	ReplicationFactor int                    `json:"replication_factor"`
	Configs           map[string]string      `json:"configs"` // overrides only
	Partitions        []partitionDescription `json:"partitions"`
}

type partitionDescription struct {
	Partition       int32   `json:"partition"`
	Leader          int32   `json:"leader"` // -1: none
	LeaderEpoch     int32   `json:"leader_epoch"`
	Replicas        []int32 `json:"replicas"`
	ISR             []int32 `json:"isr"`
	Offline         []int32 `json:"offline"`
	UnderReplicated bool    `json:"under_replicated"`
}

type topicsDescribeOptions struct {
	underReplicated bool
}

func newTopicsDescribeCmd(g *globalOptions) *cobra.Command {
	var o topicsDescribeOptions
	cmd := &cobra.Command{
		Use:   "describe [NAME...]",
		Short: "Describe topics: partitions, leaders, replicas, ISR, config overrides",
		Long: `Describe the named topics (none: every topic): per partition the leader and
its epoch, the replicas (preferred leader first), the in-sync replicas and the
offline ones; per topic the config overrides. With --under-replicated, only
the partitions whose ISR is smaller than their replica set.

JSON: {"topics":[{"name","id","internal","partition_count","replication_factor",
"configs":{key:value},"partitions":[{"partition","leader","leader_epoch",
"replicas","isr","offline","under_replicated"}]}]}. An unknown topic exits 1
after the known ones are printed.`,
		Example: `  strata topics describe orders
  strata topics describe --under-replicated --output json`,
		RunE: func(cmd *cobra.Command, names []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				ds, err := a.DescribeTopics(ctx, names, client.DescribeTopicsOptions{UnderReplicated: o.underReplicated})
				if err != nil {
					return clusterError("describe topics", err)
				}
				var unknown []string
				var known []client.TopicDescription
				for _, d := range ds {
					if d.Err != nil {
						unknown = append(unknown, strconv.Quote(d.Name))
						continue
					}
					known = append(known, d)
				}
				overrides, err := topicOverrides(ctx, a, known)
				if err != nil {
					return err
				}
				out := struct {
					Topics []topicDescription `json:"topics"`
				}{Topics: []topicDescription{}}
				for _, d := range known {
					td := topicDescription{Name: d.Name, ID: d.ID, Internal: d.Internal, PartitionCount: len(d.Partitions),
						ReplicationFactor: d.ReplicationFactor(), Configs: overrides[d.Name], Partitions: []partitionDescription{}}
					if td.Configs == nil {
						td.Configs = map[string]string{}
					}
					for _, p := range d.Partitions {
						td.Partitions = append(td.Partitions, partitionDescription{Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
							Replicas: orEmpty(p.Replicas), ISR: orEmpty(p.ISR), Offline: orEmpty(p.Offline), UnderReplicated: p.UnderReplicated()})
					}
					out.Topics = append(out.Topics, td)
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) { describeTable(tw, out.Topics, o.underReplicated) }); err != nil {
					return err
				}
				switch len(unknown) {
				case 0:
					return nil
				case 1:
					return fmt.Errorf("topic %s does not exist; check the name (strata topics list)", unknown[0])
				}
				return fmt.Errorf("topics %s do not exist; check the names (strata topics list)", strings.Join(unknown, ", "))
			})
		},
	}
	cmd.Flags().BoolVar(&o.underReplicated, "under-replicated", false, "only partitions whose ISR is smaller than their replica set")
	return cmd
}

func describeTable(tw *tabwriter.Writer, topics []topicDescription, underReplicated bool) {
	if len(topics) == 0 && underReplicated {
		fmt.Fprintln(tw, "No under-replicated partitions.")
		return
	}
	for i, t := range topics {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		var cfgs []string
		for k, v := range t.Configs {
			cfgs = append(cfgs, k+"="+v)
		}
		sort.Strings(cfgs)
		line := fmt.Sprintf("Topic: %s  Id: %s  Partitions: %d  ReplicationFactor: %d", t.Name, t.ID, t.PartitionCount, t.ReplicationFactor)
		if len(cfgs) > 0 {
			line += "  Configs: " + strings.Join(cfgs, ",")
		}
		fmt.Fprintln(tw, line)
		fmt.Fprintln(tw, "PARTITION\tLEADER\tEPOCH\tREPLICAS\tISR\tOFFLINE")
		for _, p := range t.Partitions {
			leader := strconv.Itoa(int(p.Leader))
			if p.Leader < 0 {
				leader = "none"
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", p.Partition, leader, p.LeaderEpoch, ints(p.Replicas), ints(p.ISR), ints(p.Offline))
		}
	}
}

// topicOverrides is each topic's config overrides (source "topic").
func topicOverrides(ctx context.Context, a *client.Admin, topics []client.TopicDescription) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	if len(topics) == 0 {
		return out, nil
	}
	var rs []client.ConfigResource
	for _, t := range topics {
		rs = append(rs, client.TopicResource(t.Name))
	}
	res, err := a.DescribeConfigs(ctx, rs)
	if err != nil {
		return nil, clusterError("describe topic configs", err)
	}
	for _, r := range res {
		m := map[string]string{}
		for _, c := range r.Configs {
			if c.Source == "topic" {
				m[c.Key] = c.Value
			}
		}
		out[r.Resource.Name] = m
	}
	return out, nil
}
