package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stratalog/strata/client"
)

func newReassignCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reassign",
		Short: "Move partition replicas between brokers (generate, execute, verify, cancel a plan)",
		Long: `Move partition replicas between brokers, like kafka-reassign-partitions.sh:

  strata reassign generate --topics orders,audit --brokers 1,2,3 > plan.json
  strata reassign execute --plan plan.json
  strata reassign verify --plan plan.json     # exit 0 once every partition is done
  strata reassign cancel --plan plan.json     # back to the original replicas

A plan is JSON in the shape Kafka's tool uses:

  {"version":1,"partitions":[{"topic":"orders","partition":0,"replicas":[1,2,3]}]}

replicas is the target replica list, preferred leader first. A partition moves
in steps: the new replicas join and copy the log, then the old ones leave;
leadership moves if the leader leaves.`,
		Args: subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("name a subcommand: generate, execute, verify or cancel")
		},
	}
	cmd.AddCommand(newReassignGenerateCmd(g), newReassignExecuteCmd(g), newReassignVerifyCmd(g), newReassignCancelCmd(g))
	return cmd
}

// reassignPlan is a reassignment plan in Kafka's JSON shape. Format: version
// 1; do not rename the fields.
type reassignPlan struct {
	Version    int             `json:"version"`
	Partitions []planPartition `json:"partitions"`
}

type planPartition struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
}

func (p planPartition) tp() client.TopicPartition {
	return client.TopicPartition{Topic: p.Topic, Partition: p.Partition}
}

// readPlan reads and checks a plan file; every problem is bad usage.
func readPlan(path string) (*reassignPlan, error) {
	if path == "" {
		return nil, usagef("--plan FILE is required (make one with strata reassign generate)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--plan: %v", err)
	}
	return parsePlan(path, data)
}

func parsePlan(path string, data []byte) (*reassignPlan, error) {
	var p reassignPlan
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return nil, usagef("plan %s is not valid JSON (%v); want {\"version\":1,\"partitions\":[{\"topic\":\"T\",\"partition\":0,\"replicas\":[1,2]}]}", path, err)
	}
	if p.Version != 1 {
		return nil, usagef("plan %s: version %d: want \"version\": 1", path, p.Version)
	}
	if len(p.Partitions) == 0 {
		return nil, usagef("plan %s names no partitions; want \"partitions\":[{\"topic\":\"T\",\"partition\":0,\"replicas\":[1,2]}]", path)
	}
	seen := map[client.TopicPartition]bool{}
	for i, pp := range p.Partitions {
		switch {
		case pp.Topic == "":
			return nil, usagef("plan %s: partitions[%d] has no \"topic\"", path, i)
		case pp.Partition < 0:
			return nil, usagef("plan %s: %s partition %d: want a partition index >= 0", path, pp.Topic, pp.Partition)
		case len(pp.Replicas) == 0:
			return nil, usagef("plan %s: %s-%d has no \"replicas\" (to undo a reassignment use strata reassign cancel)", path, pp.Topic, pp.Partition)
		case seen[pp.tp()]:
			return nil, usagef("plan %s: %s-%d is named twice", path, pp.Topic, pp.Partition)
		}
		seen[pp.tp()] = true
		for j, r := range pp.Replicas {
			if r < 0 {
				return nil, usagef("plan %s: %s-%d: broker id %d is negative", path, pp.Topic, pp.Partition, r)
			}
			if slices.Contains(pp.Replicas[:j], r) {
				return nil, usagef("plan %s: %s-%d: broker %d is named twice in %v", path, pp.Topic, pp.Partition, r, pp.Replicas)
			}
		}
	}
	return &p, nil
}

// writePlan prints a plan as JSON, one partition per line (as Kafka's tool
// keeps it compact, but diffable).
func writePlan(w io.Writer, p *reassignPlan) error {
	var b strings.Builder
	fmt.Fprintf(&b, "{\"version\":%d,\"partitions\":[", p.Version)
	for i, pp := range p.Partitions {
		line, err := json.Marshal(pp)
		if err != nil {
			return fmt.Errorf("write plan: %w", err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n  ")
		b.Write(line)
	}
	b.WriteString("\n]}\n")
	_, err := io.WriteString(w, b.String())
	return err
}
