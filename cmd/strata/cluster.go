package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

func newClusterCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Describe the cluster: brokers and the controller quorum",
		Args:  subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("name a subcommand: describe")
		},
	}
	cmd.AddCommand(newClusterDescribeCmd(g))
	return cmd
}

// clusterDescription is the JSON of cluster describe (stable names).
type clusterDescription struct {
	ClusterID      string              `json:"cluster_id"`
	ControllerID   int32               `json:"controller_id"` // -1: unknown
	MetadataOffset int64               `json:"metadata_offset"`
	Brokers        []brokerDescription `json:"brokers"`
	Quorum         quorumDescription   `json:"quorum"`
}

type brokerDescription struct {
	ID                   int32  `json:"id"`
	Address              string `json:"address"`
	Rack                 string `json:"rack"`
	Epoch                int64  `json:"epoch"`
	Fenced               bool   `json:"fenced"`
	InControlledShutdown bool   `json:"in_controlled_shutdown"`
}

type quorumDescription struct {
	LeaderID      int32         `json:"leader_id"` // -1: none
	LeaderAddress string        `json:"leader_address"`
	Term          uint64        `json:"term"`
	LastIndex     uint64        `json:"last_index"`
	CommitIndex   uint64        `json:"commit_index"`
	AppliedIndex  uint64        `json:"applied_index"`
	Voters        []quorumVoter `json:"voters"`
}

type quorumVoter struct {
	ID         int32  `json:"id"`
	Address    string `json:"address"`
	Suffrage   string `json:"suffrage"`
	Leader     bool   `json:"leader"`
	MatchIndex int64  `json:"match_index"` // -1: unknown
	Lag        int64  `json:"lag"`         // committed entries behind the leader; -1: unknown
}

func newClusterDescribeCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "describe",
		Short: "Show the brokers (fenced? rack, epoch) and the controller quorum (leader, voters, lag)",
		Long: `Show every registered broker (address, rack, broker epoch, fenced, in
controlled shutdown) and the controller quorum (Raft leader, term, indexes,
voters and how far each trails).

A voter's lag is shown as ? (JSON: -1) when the Raft library does not report
the voter's progress.

JSON: {"cluster_id","controller_id","metadata_offset","brokers":[{"id","address",
"rack","epoch","fenced","in_controlled_shutdown"}],"quorum":{"leader_id",
"leader_address","term","last_index","commit_index","applied_index",
"voters":[{"id","address","suffrage","leader","match_index","lag"}]}}.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				d, err := a.DescribeCluster(ctx)
				if err != nil {
					return clusterError("describe cluster", err)
				}
				q, err := a.DescribeQuorum(ctx)
				if err != nil {
					return clusterError("describe the controller quorum", err)
				}
				out := clusterDescription{ClusterID: d.ClusterID, ControllerID: d.ControllerID, MetadataOffset: d.MetadataOffset,
					Brokers: []brokerDescription{},
					Quorum: quorumDescription{LeaderID: q.LeaderID, LeaderAddress: q.LeaderAddr, Term: q.Term, LastIndex: q.LastIndex,
						CommitIndex: q.CommitIndex, AppliedIndex: q.AppliedIndex, Voters: []quorumVoter{}}}
				for _, b := range d.Brokers {
					out.Brokers = append(out.Brokers, brokerDescription{ID: b.ID, Address: b.Addr, Rack: b.Rack, Epoch: b.Epoch,
						Fenced: b.Fenced, InControlledShutdown: b.InControlledShutdown})
				}
				for _, v := range q.Voters {
					out.Quorum.Voters = append(out.Quorum.Voters, quorumVoter{ID: v.ID, Address: v.Addr, Suffrage: v.Suffrage,
						Leader: v.ID == q.LeaderID, MatchIndex: v.MatchIndex, Lag: v.Lag(q)})
				}
				return g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) { clusterTable(tw, out) })
			})
		},
	}
}

func clusterTable(tw *tabwriter.Writer, d clusterDescription) {
	fmt.Fprintf(tw, "Cluster id: %s  Active controller: %s  Metadata offset: %d\n\n", d.ClusterID, nodeOrNone(d.ControllerID), d.MetadataOffset)
	fmt.Fprintln(tw, "BROKER\tADDRESS\tRACK\tEPOCH\tSTATE")
	for _, b := range d.Brokers {
		state := "active"
		switch {
		case b.InControlledShutdown:
			state = "shutting down"
		case b.Fenced:
			state = "fenced"
		}
		rack := b.Rack
		if rack == "" {
			rack = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", b.ID, b.Address, rack, b.Epoch, state)
	}
	q := d.Quorum
	fmt.Fprintf(tw, "\nController quorum: leader %s  term %d  last index %d  commit index %d  applied index %d\n",
		nodeOrNone(q.LeaderID), q.Term, q.LastIndex, q.CommitIndex, q.AppliedIndex)
	fmt.Fprintln(tw, "VOTER\tADDRESS\tROLE\tLAG")
	for _, v := range q.Voters {
		role := "follower"
		if v.Leader {
			role = "leader"
		}
		if v.Suffrage != "voter" {
			role = v.Suffrage
		}
		lag := "?"
		if v.Lag >= 0 {
			lag = fmt.Sprint(v.Lag)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", v.ID, v.Address, role, lag)
	}
}

func nodeOrNone(id int32) string {
	if id < 0 {
		return "none"
	}
	return fmt.Sprint(id)
}
