package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

func newTopicsDeleteCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete topics and their data",
		Long: `Delete topics: their partitions and data go away on every broker. There is no
undo. A topic that does not exist exits 1 (the others are still deleted).
JSON: {"deleted":["NAME",...]}.`,
		Example: `  strata topics delete orders`,
		Args:    nArgs(1, -1, "the topic NAME"),
		RunE: func(cmd *cobra.Command, names []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				res, err := a.DeleteTopics(ctx, names...)
				if err != nil {
					return clusterError("delete topics", err)
				}
				d := newDeletions("topic")
				for _, r := range res {
					d.add(r.Name, r.Err)
				}
				if len(d.Deleted) > 0 {
					wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_ = a.WaitForTopics(wctx, false, d.Deleted...) // best effort: deleted either way
					cancel()
				}
				return d.print(g, cmd.OutOrStdout())
			})
		},
	}
	return cmd
}
