package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/broker/brokertest"
)

// adminRun runs the strata command line in-process against bootstrap and
// returns stdout, the error message main would print, and the exit code.
func adminRun(t *testing.T, bootstrap string, args ...string) (stdout, msg string, code int) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if bootstrap != "" {
		args = append([]string{"--bootstrap", bootstrap, "--timeout", "10s"}, args...)
	}
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err != nil {
		return out.String(), err.Error(), exitCode(err)
	}
	return out.String(), "", 0
}

// wantRun checks a run's exit code and that its error message names
// something (every part of want must appear).
func wantRun(t *testing.T, bootstrap string, code int, want []string, args ...string) string {
	t.Helper()
	out, msg, got := adminRun(t, bootstrap, args...)
	if got != code {
		t.Fatalf("strata %s: exit %d (%s), want %d\nstdout: %s", strings.Join(args, " "), got, msg, code, out)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("strata %s: message %q lacks %q", strings.Join(args, " "), msg, w)
		}
	}
	return out
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
}

func newAdminCluster(t *testing.T) string {
	t.Helper()
	c := brokertest.NewCluster(t, brokertest.Options{Brokers: 3})
	return strings.Join(c.Bootstrap(), ",")
}

func TestTopicsCommands(t *testing.T) {
	bs := newAdminCluster(t)

	out := wantRun(t, bs, 0, nil, "topics", "create", "orders", "--partitions", "3", "--replication-factor", "2", "--config", "retention.ms=60000")
	if !strings.Contains(out, "Created topic orders with 3 partitions, replication factor 2.") {
		t.Errorf("create: %q", out)
	}
	var created topicCreated
	decodeJSON(t, wantRun(t, bs, 0, nil, "topics", "create", "defaults", "--output", "json"), &created)
	if created.Name != "defaults" || created.Partitions != 1 || created.ReplicationFactor != 1 || len(created.ID) != 36 || created.ValidateOnly {
		t.Errorf("create with the cluster defaults: %+v", created)
	}

	// Refused by the cluster: exit 1, saying why and what to do.
	wantRun(t, bs, 1, []string{`create topic "orders"`, "already exists", "TOPIC_ALREADY_EXISTS"}, "topics", "create", "orders")
	wantRun(t, bs, 1, []string{"replication factor 5", "3 available brokers", "live brokers"}, "topics", "create", "big", "--replication-factor", "5")
	wantRun(t, bs, 1, []string{"retention.ms", "INVALID_CONFIG"}, "topics", "create", "badcfg", "--config", "retention.ms=soon")
	// Bad usage: exit 2.
	wantRun(t, bs, 2, []string{"want key=value"}, "topics", "create", "x", "--config", "retention.ms")
	wantRun(t, bs, 2, []string{"--partitions 0"}, "topics", "create", "x", "--partitions", "0")
	wantRun(t, bs, 2, []string{"invalid argument"}, "topics", "create", "x", "--partitions", "many")
	wantRun(t, bs, 2, []string{"missing the topic NAME"}, "topics", "create")
	wantRun(t, bs, 2, []string{"unknown flag"}, "topics", "list", "--colour")
	wantRun(t, bs, 2, []string{`unknown command "frob"`, "create, delete, describe, list"}, "topics", "frob")
	wantRun(t, bs, 2, []string{"name a subcommand"}, "topics")
	wantRun(t, bs, 2, []string{"--output", "table or json"}, "topics", "list", "--output", "yaml")

	out = wantRun(t, bs, 0, nil, "topics", "list")
	if !strings.Contains(out, "TOPIC") || !strings.Contains(out, "orders") || !strings.Contains(out, "defaults") {
		t.Errorf("list: %q", out)
	}
	var list struct {
		Topics []topicListing `json:"topics"`
	}
	decodeJSON(t, wantRun(t, bs, 0, nil, "topics", "list", "--output", "json"), &list)
	if len(list.Topics) != 2 || list.Topics[0].Name != "defaults" || list.Topics[1].Partitions != 3 || list.Topics[1].ReplicationFactor != 2 {
		t.Errorf("list json: %+v", list)
	}

	var desc struct {
		Topics []topicDescription `json:"topics"`
	}
	decodeJSON(t, wantRun(t, bs, 0, nil, "topics", "describe", "orders", "--output", "json"), &desc)
	if len(desc.Topics) != 1 || desc.Topics[0].PartitionCount != 3 || desc.Topics[0].Configs["retention.ms"] != "60000" || len(desc.Topics[0].Configs) != 1 {
		t.Fatalf("describe json: %+v", desc)
	}
	for _, p := range desc.Topics[0].Partitions {
		if len(p.Replicas) != 2 || p.Leader != p.Replicas[0] || p.UnderReplicated && len(p.ISR) == 2 {
			t.Errorf("partition %+v", p)
		}
	}
	out = wantRun(t, bs, 0, nil, "topics", "describe", "orders")
	if !strings.Contains(out, "Topic: orders") || !strings.Contains(out, "Configs: retention.ms=60000") || !strings.Contains(out, "PARTITION") {
		t.Errorf("describe: %q", out)
	}
	out = wantRun(t, bs, 1, []string{`topic "nope" does not exist`, "strata topics list"}, "topics", "describe", "orders", "nope")
	if !strings.Contains(out, "Topic: orders") {
		t.Errorf("describe with an unknown topic should still print the known ones: %q", out)
	}
	if out := wantRun(t, bs, 0, nil, "topics", "describe", "--under-replicated"); !strings.Contains(out, "No under-replicated partitions.") {
		t.Errorf("under-replicated: %q", out)
	}

	// Alter.
	var altered topicAltered
	decodeJSON(t, wantRun(t, bs, 0, nil, "topics", "alter", "orders", "--partitions", "5", "--config", "retention.ms=1000", "--output", "json"), &altered)
	if altered.Partitions != 5 || altered.ConfigsSet["retention.ms"] != "1000" {
		t.Errorf("alter: %+v", altered)
	}
	wantRun(t, bs, 1, []string{"partitions can only grow", "INVALID_PARTITIONS"}, "topics", "alter", "orders", "--partitions", "2")
	wantRun(t, bs, 1, []string{`no topic "nope"`}, "topics", "alter", "nope", "--partitions", "9")
	wantRun(t, bs, 1, []string{"INVALID_CONFIG"}, "topics", "alter", "orders", "--config", "no.such.key=1")
	wantRun(t, bs, 2, []string{"nothing to alter"}, "topics", "alter", "orders")
	wantRun(t, bs, 0, nil, "topics", "alter", "orders", "--delete-config", "retention.ms")
	deadline := time.Now().Add(10 * time.Second)
	for {
		desc.Topics = nil // (Unmarshal would merge into the old maps)
		decodeJSON(t, wantRun(t, bs, 0, nil, "topics", "describe", "orders", "--output", "json"), &desc)
		if desc.Topics[0].PartitionCount == 5 && len(desc.Topics[0].Configs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after alter: %+v", desc.Topics[0])
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Delete.
	var deleted struct {
		Deleted []string `json:"deleted"`
	}
	decodeJSON(t, wantRun(t, bs, 0, nil, "topics", "delete", "defaults", "--output", "json"), &deleted)
	if len(deleted.Deleted) != 1 || deleted.Deleted[0] != "defaults" {
		t.Errorf("delete: %+v", deleted)
	}
	wantRun(t, bs, 1, []string{`delete topic "defaults"`, "UNKNOWN_TOPIC_OR_PARTITION"}, "topics", "delete", "defaults")
	wantRun(t, bs, 2, []string{"missing the topic NAME"}, "topics", "delete")
}

// TestAdminCommandsUnreachable: a bootstrap nobody listens on is a clear
// exit-1 message naming --bootstrap; a malformed one is bad usage.
func TestAdminCommandsUnreachable(t *testing.T) {
	for _, args := range [][]string{{"topics", "list"}, {"topics", "create", "x"}, {"cluster", "describe"}, {"elect-leaders", "--preferred"}} {
		wantRun(t, "127.0.0.1:1", 1, []string{"127.0.0.1:1", "check --bootstrap"}, args...)
	}
	wantRun(t, "nohostport", 2, []string{"--bootstrap", "host:port"}, "topics", "list")
}
