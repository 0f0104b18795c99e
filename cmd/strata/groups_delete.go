package main

import (
	"context"

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
				d := newDeletions("group")
				for _, r := range res {
					d.add(r.Group, r.Err)
				}
				return d.print(g, cmd.OutOrStdout())
			})
		},
	}
}
