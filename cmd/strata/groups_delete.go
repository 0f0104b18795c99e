package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

func newGroupsDeleteCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete GROUP...",
		Short: "Delete consumer groups and their committed offsets",
		Long: `Delete consumer groups: their committed offsets are removed. A group with
members is refused (stop its consumers first), as is a group that does not
exist; either exits 1 after the other groups are deleted.
JSON: {"deleted":["GROUP",...]}.`,
		Example: `  strata groups delete billing`,
		Args:    nArgs(1, -1, "the GROUP"),
		RunE: func(cmd *cobra.Command, groups []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				res, err := a.DeleteGroups(ctx, groups...)
				if err != nil {
					return clusterError("delete groups", err)
				}
				out := struct {
					Deleted []string `json:"deleted"`
				}{Deleted: []string{}}
				var firstErr error
				for _, r := range res {
					if r.Err != nil {
						if firstErr == nil {
							firstErr = clusterError(fmt.Sprintf("delete group %q", r.Group), r.Err)
						}
						continue
					}
					out.Deleted = append(out.Deleted, r.Group)
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					for _, n := range out.Deleted {
						fmt.Fprintf(tw, "Deleted group %s.\n", n)
					}
				}); err != nil {
					return err
				}
				return firstErr
			})
		},
	}
}
