package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

// groupDescription is one group in the JSON of groups describe (stable names).
type groupDescription struct {
	Group           string         `json:"group"`
	State           string         `json:"state"`
	GroupEpoch      int32          `json:"group_epoch"`
	AssignmentEpoch int32          `json:"assignment_epoch"`
	Assignor        string         `json:"assignor"`
	Coordinator     int32          `json:"coordinator"`
	Members         []groupMember  `json:"members"`
	Offsets         []groupOffsetJ `json:"offsets"`
}

type groupMember struct {
	MemberID          string             `json:"member_id"`
	InstanceID        string             `json:"instance_id"`
	ClientID          string             `json:"client_id"`
	Rack              string             `json:"rack"`
	MemberEpoch       int32              `json:"member_epoch"`
	State             string             `json:"state"`
	SubscribedTopics  []string           `json:"subscribed_topics"`
	SubscribedRegex   string             `json:"subscribed_regex"`
	Assigned          map[string][]int32 `json:"assigned"`
	PendingRevocation map[string][]int32 `json:"pending_revocation"`
	Target            map[string][]int32 `json:"target"`
	LastHeartbeatMs   int64              `json:"last_heartbeat_ms"`
}

type groupOffsetJ struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	CurrentOffset int64  `json:"current_offset"` // -1: none committed
	LogEndOffset  int64  `json:"log_end_offset"` // -1 unknown
	Lag           int64  `json:"lag"`            // -1 unknown
	MemberID      string `json:"member_id"`
}

func newGroupsDescribeCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "describe GROUP...",
		Short: "Describe consumer groups: state, members, committed offsets and lag",
		Long: `Describe consumer groups, each as its coordinator has it: the state (empty,
assigning, reconciling, stable), the epochs and the assignor; per committed
partition the committed offset, the log end offset, the lag and the member
that owns it now; per member its epoch, state (stable, unrevoked_partitions:
giving partitions up, unreleased_partitions: waiting for partitions another
member still owns), client id and partitions. A group that does not exist
exits 1 after the others are printed.

JSON: {"groups":[{"group","state","group_epoch","assignment_epoch","assignor",
"coordinator","members":[{"member_id","instance_id","client_id","rack",
"member_epoch","state","subscribed_topics","subscribed_regex","assigned",
"pending_revocation","target","last_heartbeat_ms"}],"offsets":[{"topic",
"partition","current_offset","log_end_offset","lag","member_id"}]}]}; partition
sets are {"topic":[partitions]}.`,
		Example: `  strata groups describe billing
  strata groups describe billing audit --output json`,
		Args: nArgs(1, -1, "the GROUP"),
		RunE: func(cmd *cobra.Command, groups []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				ds, err := a.DescribeGroups(ctx, groups...)
				if err != nil {
					return clusterError("describe groups", err)
				}
				out := struct {
					Groups []groupDescription `json:"groups"`
				}{Groups: []groupDescription{}}
				var firstErr error
				for _, d := range ds {
					if d.Err != nil {
						if firstErr == nil {
							firstErr = clusterError(fmt.Sprintf("describe group %q", d.Group), d.Err)
						}
						continue
					}
					out.Groups = append(out.Groups, describedGroup(d))
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) { groupsTable(tw, out.Groups) }); err != nil {
					return err
				}
				return firstErr
			})
		},
	}
}

func describedGroup(d client.GroupDescription) groupDescription {
	gd := groupDescription{Group: d.Group, State: d.State, GroupEpoch: d.GroupEpoch, AssignmentEpoch: d.AssignmentEpoch,
		Assignor: d.Assignor, Coordinator: d.CoordinatorID, Members: []groupMember{}, Offsets: []groupOffsetJ{}}
	for _, m := range d.Members {
		gm := groupMember{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, Rack: m.Rack, MemberEpoch: m.MemberEpoch,
			State: m.State, SubscribedTopics: orEmpty(m.SubscribedTopics), SubscribedRegex: m.SubscribedRegex,
			Assigned: jsonPartitions(m.Assigned), PendingRevocation: jsonPartitions(m.PendingRevocation), Target: jsonPartitions(m.Target)}
		if !m.LastHeartbeat.IsZero() {
			gm.LastHeartbeatMs = m.LastHeartbeat.UnixMilli()
		}
		gd.Members = append(gd.Members, gm)
	}
	for _, o := range d.Offsets {
		gd.Offsets = append(gd.Offsets, groupOffsetJ{Topic: o.Topic, Partition: o.Partition, CurrentOffset: o.Committed,
			LogEndOffset: o.LogEnd, Lag: o.Lag, MemberID: o.MemberID})
	}
	return gd
}

func groupsTable(tw *tabwriter.Writer, groups []groupDescription) {
	for i, d := range groups {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "Group: %s  State: %s  Members: %d  GroupEpoch: %d  AssignmentEpoch: %d  Assignor: %s  Coordinator: %d\n",
			d.Group, d.State, len(d.Members), d.GroupEpoch, d.AssignmentEpoch, orDash(d.Assignor), d.Coordinator)
		if len(d.Offsets) == 0 {
			fmt.Fprintln(tw, "No committed offsets.")
		} else {
			fmt.Fprintln(tw, "TOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG\tMEMBER-ID")
			for _, o := range d.Offsets {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", o.Topic, o.Partition, offsetOrDash(o.CurrentOffset), offsetOrDash(o.LogEndOffset), offsetOrDash(o.Lag), orDash(o.MemberID))
			}
		}
		if len(d.Members) > 0 {
			fmt.Fprintln(tw, "MEMBER-ID\tINSTANCE-ID\tCLIENT-ID\tEPOCH\tSTATE\tASSIGNED\tPENDING-REVOCATION")
			for _, m := range d.Members {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", m.MemberID, orDash(m.InstanceID), orDash(m.ClientID), m.MemberEpoch, m.State,
					partsString(m.Assigned), partsString(m.PendingRevocation))
			}
		}
	}
}

// partsString prints {"t":[0,1]} as t:0,1 ("-" when empty), topics sorted.
func partsString(m map[string][]int32) string {
	var tps []client.TopicPartition
	for t, ps := range m {
		for _, p := range ps {
			tps = append(tps, client.TopicPartition{Topic: t, Partition: p})
		}
	}
	sortTPs(tps)
	return tpList(tps)
}

func sortTPs(tps []client.TopicPartition) {
	slices.SortFunc(tps, func(a, b client.TopicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
