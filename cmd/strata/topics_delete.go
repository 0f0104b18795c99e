package main

import (
	"context"
	"fmt"
	"text/tabwriter"
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
				out := struct {
					Deleted []string `json:"deleted"`
				}{Deleted: []string{}}
				var firstErr error
				for _, r := range res {
					if r.Err != nil {
						if firstErr == nil {
							firstErr = clusterError(fmt.Sprintf("delete topic %q", r.Name), r.Err)
						}
						continue
					}
					out.Deleted = append(out.Deleted, r.Name)
				}
				if len(out.Deleted) > 0 {
					wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_ = a.WaitForTopics(wctx, false, out.Deleted...) // best effort: deleted either way
					cancel()
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					for _, n := range out.Deleted {
						fmt.Fprintf(tw, "Deleted topic %s.\n", n)
					}
				}); err != nil {
					return err
				}
				return firstErr
			})
		},
	}
	return cmd
}
