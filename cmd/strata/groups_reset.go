package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

type groupsResetOptions struct {
	toEarliest bool
	toLatest   bool
	toDatetime string
	shiftBy    int64
	toOffset   int64
	topics     []string
	execute    bool
}

// offsetResetJ is one partition of the reset plan in JSON (stable names).
type offsetResetJ struct {
	Topic          string `json:"topic"`
	Partition      int32  `json:"partition"`
	PreviousOffset int64  `json:"previous_offset"` // -1: none committed
	NewOffset      int64  `json:"new_offset"`
}

func newGroupsResetOffsetsCmd(g *globalOptions) *cobra.Command {
	var o groupsResetOptions
	cmd := &cobra.Command{
		Use:   "reset-offsets GROUP (--to-earliest | --to-latest | --to-datetime T | --shift-by N | --to-offset N) [--topic T[:P,P...]]... [--execute]",
		Short: "Move a consumer group's committed offsets (shows the plan unless --execute)",
		Long: `Move the committed offsets of a group without members: to the log start
(--to-earliest), the log end (--to-latest), the first record at or after a
time (--to-datetime, RFC 3339 or milliseconds since the Unix epoch; the log
end when no record is that recent), by N records from the committed offset
(--shift-by, negative goes back), or to one offset (--to-offset); new offsets
stay within the log. --topic T moves every partition of T, --topic T:0,2 the
partitions named (repeatable); without --topic, every partition the group has
an offset for.

Without --execute it only prints the plan (nothing changes); with --execute it
commits it. A group with members is refused (NON_EMPTY_GROUP, exit 1): stop
its consumers first.

JSON: {"group","executed","partitions":[{"topic","partition","previous_offset",
"new_offset"}]}; previous_offset is -1 where the group had no offset.`,
		Example: `  strata groups reset-offsets billing --to-earliest --topic orders
  strata groups reset-offsets billing --shift-by -100 --topic orders:0,1 --execute
  strata groups reset-offsets billing --to-datetime 2026-11-21T09:00:00Z --execute`,
		Args: nArgs(1, 1, "the GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := o.request(cmd, args[0])
			if err != nil {
				return err
			}
			return withAdmin(cmd, g, func(ctx context.Context, a *client.Admin) error {
				res, err := a.ResetOffsets(ctx, req)
				if err != nil {
					return clusterError(fmt.Sprintf("reset offsets of group %q", req.Group), err)
				}
				out := struct {
					Group      string         `json:"group"`
					Executed   bool           `json:"executed"`
					Partitions []offsetResetJ `json:"partitions"`
				}{Group: req.Group, Executed: req.Execute, Partitions: []offsetResetJ{}}
				for _, r := range res {
					out.Partitions = append(out.Partitions, offsetResetJ{Topic: r.Topic, Partition: r.Partition, PreviousOffset: r.Previous, NewOffset: r.New})
				}
				if err := g.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "TOPIC\tPARTITION\tPREVIOUS-OFFSET\tNEW-OFFSET")
					for _, p := range out.Partitions {
						fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", p.Topic, p.Partition, offsetOrDash(p.PreviousOffset), p.NewOffset)
					}
				}); err != nil {
					return err
				}
				if g.output == "table" {
					if req.Execute {
						fmt.Fprintf(cmd.ErrOrStderr(), "Committed the new offsets of group %s.\n", req.Group)
					} else {
						fmt.Fprintln(cmd.ErrOrStderr(), "Plan only: nothing changed. Run again with --execute to commit these offsets.")
					}
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.toEarliest, "to-earliest", false, "move to the log start offsets")
	f.BoolVar(&o.toLatest, "to-latest", false, "move to the log end offsets")
	f.StringVar(&o.toDatetime, "to-datetime", "", "move to the first record at or after this time (RFC 3339 or Unix ms)")
	f.Int64Var(&o.shiftBy, "shift-by", 0, "move the committed offsets by N (negative: back)")
	f.Int64Var(&o.toOffset, "to-offset", 0, "move to this offset")
	f.StringArrayVar(&o.topics, "topic", nil, "a topic (every partition) or topic:P,P (those partitions); repeatable")
	f.BoolVar(&o.execute, "execute", false, "commit the new offsets (without it only the plan is shown)")
	return cmd
}

// request checks the flags: exactly one target, well-formed --topic values.
func (o *groupsResetOptions) request(cmd *cobra.Command, group string) (client.ResetOffsetsRequest, error) {
	req := client.ResetOffsetsRequest{Group: group, Execute: o.execute}
	if strings.TrimSpace(group) == "" {
		return req, usagef("the GROUP is empty")
	}
	var set []string
	for _, name := range []string{"to-earliest", "to-latest", "to-datetime", "shift-by", "to-offset"} {
		if cmd.Flags().Changed(name) {
			set = append(set, "--"+name)
		}
	}
	switch {
	case len(set) == 0:
		return req, usagef("say where to move the offsets: --to-earliest, --to-latest, --to-datetime T, --shift-by N or --to-offset N")
	case len(set) > 1:
		return req, usagef("%s exclude each other: pick one", strings.Join(set, " and "))
	}
	switch set[0] {
	case "--to-earliest":
		if !o.toEarliest {
			return req, usagef("--to-earliest=false: say where to move the offsets")
		}
		req.To = client.ResetToEarliest()
	case "--to-latest":
		if !o.toLatest {
			return req, usagef("--to-latest=false: say where to move the offsets")
		}
		req.To = client.ResetToLatest()
	case "--to-datetime":
		t, err := parseTimestamp(o.toDatetime)
		if err != nil {
			return req, usagef("--to-datetime %q: want RFC 3339 (2026-11-21T09:00:00Z) or milliseconds since the Unix epoch", o.toDatetime)
		}
		req.To = client.ResetToTime(t)
	case "--shift-by":
		req.To = client.ResetShiftBy(o.shiftBy)
	case "--to-offset":
		if o.toOffset < 0 {
			return req, usagef("--to-offset %d: want an offset >= 0", o.toOffset)
		}
		req.To = client.ResetToOffset(o.toOffset)
	}
	seen := map[string]bool{}
	for _, spec := range o.topics {
		topic, list, hasParts := strings.Cut(spec, ":")
		if topic == "" || seen[topic] {
			return req, usagef("--topic %q: want a topic or topic:P,P, each topic once", spec)
		}
		seen[topic] = true
		if !hasParts {
			req.Topics = append(req.Topics, topic)
			continue
		}
		ps, err := parseInt32List(list, "--topic "+spec)
		if err != nil {
			return req, err
		}
		if len(ps) == 0 {
			return req, usagef("--topic %q: no partitions after the colon", spec)
		}
		for _, p := range ps {
			if p < 0 {
				return req, usagef("--topic %q: partition %d is negative", spec, p)
			}
			req.Partitions = append(req.Partitions, client.TopicPartition{Topic: topic, Partition: p})
		}
	}
	return req, nil
}
