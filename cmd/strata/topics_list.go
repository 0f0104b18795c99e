package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

// topicListing is one topic in the JSON of topics list (stable names).
type topicListing struct {
	Name              string `json:"name"`
	ID                string `json:"id"`
	Internal          bool   `json:"internal"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
}

func newTopicsListCmd(g *globalOptions) *cobra.Command {
	var internal bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List topics",
		Long: `List the topics, sorted by name, with their partition count and replication
factor. JSON: {"topics":[{"name","id","internal","partitions","replication_factor"}]}.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				ls, err := a.ListTopics(ctx)
				if err != nil {
					return clusterError("list topics", err)
				}
				out := struct {
					Topics []topicListing `json:"topics"`
				}{Topics: []topicListing{}}
				for _, l := range ls {
					if l.Internal && !internal {
						continue
					}
					out.Topics = append(out.Topics, topicListing{Name: l.Name, ID: l.ID, Internal: l.Internal, Partitions: l.Partitions, ReplicationFactor: l.ReplicationFactor})
				}
				return g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICATION-FACTOR\tID")
					for _, t := range out.Topics {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", t.Name, t.Partitions, t.ReplicationFactor, t.ID)
					}
				})
			})
		},
	}
	cmd.Flags().BoolVar(&internal, "internal", false, "include internal topics (__consumer_offsets, ...)")
	return cmd
}
