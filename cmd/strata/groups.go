package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

func newGroupsCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "List, describe, reset the offsets of and delete consumer groups",
		Long: `Manage consumer groups, like kafka-consumer-groups.sh.

A group's members read its topics' partitions, each partition to one member
at a time; each group reads every record (groups are independent of each
other). Members join with 'strata consume TOPIC --group G' or the Go client's
GroupConsumer; the group's coordinator (the leader of the group's partition
of __consumer_offsets) assigns the partitions and keeps the committed offsets.

Tables by default; --output json prints JSON whose field names are stable.
Exit codes: 0 success, 1 a request the cluster refused (or could not be
reached), 2 bad usage.`,
		Args: subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("name a subcommand: list, describe, reset-offsets or delete")
		},
	}
	cmd.AddCommand(
		newGroupsListCmd(g),
		newGroupsDescribeCmd(g),
		newGroupsResetOffsetsCmd(g),
		newGroupsDeleteCmd(g),
	)
	return cmd
}

// tpList formats partitions as topic:0,1 topic2:3 ("-" when none).
func tpList(tps []client.TopicPartition) string {
	if len(tps) == 0 {
		return "-"
	}
	var parts []string
	for i, tp := range tps {
		if i > 0 && tps[i-1].Topic == tp.Topic {
			parts[len(parts)-1] += fmt.Sprintf(",%d", tp.Partition)
			continue
		}
		parts = append(parts, fmt.Sprintf("%s:%d", tp.Topic, tp.Partition))
	}
	return strings.Join(parts, " ")
}

// jsonPartitions is a partition list in JSON: {"topic":[partitions]}.
func jsonPartitions(tps []client.TopicPartition) map[string][]int32 {
	out := map[string][]int32{}
	for _, tp := range tps {
		out[tp.Topic] = append(out[tp.Topic], tp.Partition)
	}
	return out
}

// offsetOrDash prints -1 (unknown, none) as "-".
func offsetOrDash(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}
