package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

// groupListing is one group in the JSON of groups list (stable names).
type groupListing struct {
	Group       string `json:"group"`
	State       string `json:"state"`
	Members     int    `json:"members"`
	Coordinator int32  `json:"coordinator"`
}

func newGroupsListCmd(g *globalOptions) *cobra.Command {
	var states []string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List consumer groups",
		Long: `List the consumer groups of the cluster (every broker lists the groups it
coordinates), sorted by name, with their state (empty, assigning,
reconciling, stable), member count and coordinator broker. --state keeps only
groups in the states named. A broker that does not answer exits 1 after the
groups of the others are printed.
JSON: {"groups":[{"group","state","members","coordinator"}]}.`,
		Example: `  strata groups list
  strata groups list --state stable --output json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range states {
				switch s {
				case client.GroupStateEmpty, client.GroupStateAssigning, client.GroupStateReconciling, client.GroupStateStable:
				default:
					return usagef("--state %q: want empty, assigning, reconciling or stable", s)
				}
			}
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				ls, listErr := a.ListGroups(ctx, states...)
				if listErr != nil && len(ls) == 0 {
					return clusterError("list groups", listErr)
				}
				out := struct {
					Groups []groupListing `json:"groups"`
				}{Groups: []groupListing{}}
				for _, l := range ls {
					out.Groups = append(out.Groups, groupListing{Group: l.Group, State: l.State, Members: l.Members, Coordinator: l.CoordinatorID})
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS\tCOORDINATOR")
					for _, l := range out.Groups {
						fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", l.Group, l.State, l.Members, l.Coordinator)
					}
				}); err != nil {
					return err
				}
				return clusterError("list groups", listErr)
			})
		},
	}
	cmd.Flags().StringSliceVar(&states, "state", nil, "only groups in this state (empty, assigning, reconciling, stable); repeatable")
	return cmd
}
