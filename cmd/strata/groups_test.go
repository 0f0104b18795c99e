package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
)

// TestGroupsFlags: bad usage exits 2 before anything is sent.
func TestGroupsFlags(t *testing.T) {
	bs := "127.0.0.1:1" // nothing listens: a request would exit 1
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"groups"}, "name a subcommand"},
		{[]string{"groups", "frobnicate"}, "unknown command"},
		{[]string{"groups", "list", "--state", "busy"}, `--state "busy"`},
		{[]string{"groups", "list", "extra"}, "takes no arguments"},
		{[]string{"groups", "describe"}, "missing the GROUP"},
		{[]string{"groups", "delete"}, "missing the GROUP"},
		{[]string{"groups", "reset-offsets", "g"}, "say where to move the offsets"},
		{[]string{"groups", "reset-offsets", "g", "--to-earliest", "--to-latest"}, "exclude each other"},
		{[]string{"groups", "reset-offsets", "g", "--shift-by", "1", "--to-offset", "3"}, "exclude each other"},
		{[]string{"groups", "reset-offsets", "g", "--to-datetime", "yesterday"}, "--to-datetime"},
		{[]string{"groups", "reset-offsets", "g", "--to-offset", "-1"}, "--to-offset -1"},
		{[]string{"groups", "reset-offsets", "g", "--to-earliest", "--topic", "t:x"}, "not an integer"},
		{[]string{"groups", "reset-offsets", "g", "--to-earliest", "--topic", "t:"}, "no partitions"},
		{[]string{"groups", "reset-offsets", "g", "--to-earliest", "--topic", "t", "--topic", "t:1"}, "each topic once"},
		{[]string{"groups", "reset-offsets", "g", "--shift-by", "x"}, "shift-by"},
		{[]string{"groups", "reset-offsets"}, "missing the GROUP"},
		{[]string{"groups", "reset-offsets", "g", "h", "--to-latest"}, "too many arguments"},
	} {
		wantRun(t, bs, 2, []string{tc.msg}, tc.args...)
	}
	wantRun(t, bs, 1, []string{"list groups"}, "groups", "list")
}

// TestGroupsCommands: consume --group reads a share of the topic and
// commits what it printed; a second run resumes after it; groups list,
// describe, reset-offsets (plan, then --execute) and delete; reset and
// delete are refused while the group has a member.
func TestGroupsCommands(t *testing.T) {
	bs, _ := consumeTestCluster(t) // topic t: 3 partitions x 10 records

	out, stderr, err := runConsumeCmd("consume", "t", "--bootstrap", bs, "--group", "g", "--from-beginning", "--max-messages", "12", "--print-offset")
	if err != nil {
		t.Fatal(err, stderr)
	}
	first := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(first) != 12 || !strings.Contains(stderr, "Processed a total of 12 messages") {
		t.Fatalf("first run printed %d lines (%q)", len(first), stderr)
	}
	var desc struct {
		Groups []groupDescription `json:"groups"`
	}
	decodeJSON(t, wantRun(t, bs, 0, nil, "groups", "describe", "g", "--output", "json"), &desc)
	var sum int64
	for _, o := range desc.Groups[0].Offsets {
		sum += o.CurrentOffset
		if o.LogEndOffset != 10 || o.Lag != 10-o.CurrentOffset {
			t.Errorf("offset %+v", o)
		}
	}
	if len(desc.Groups) != 1 || desc.Groups[0].State != "empty" || len(desc.Groups[0].Members) != 0 || sum != 12 {
		t.Fatalf("describe after the first run (committed %d, want the 12 printed): %+v", sum, desc)
	}

	// The second member resumes after what the first printed.
	out, _, err = runConsumeCmd("consume", "t", "--bootstrap", bs, "--group", "g", "--from-beginning", "--timeout", "2s", "--print-offset")
	if err != nil {
		t.Fatal(err)
	}
	second := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	seen := map[string]bool{}
	for _, l := range append(first, second...) {
		if seen[l] {
			t.Fatalf("%q read twice by the group", l)
		}
		seen[l] = true
	}
	if len(seen) != 30 {
		t.Fatalf("the two runs read %d records, want the 30", len(seen))
	}

	table := wantRun(t, bs, 0, nil, "groups", "list")
	if !strings.Contains(table, "GROUP") || !strings.Contains(table, "g ") || !strings.Contains(table, "empty") {
		t.Fatalf("groups list:\n%s", table)
	}
	table = wantRun(t, bs, 0, nil, "groups", "describe", "g")
	if !strings.Contains(table, "Group: g  State: empty") || !strings.Contains(table, "CURRENT-OFFSET") {
		t.Fatalf("groups describe:\n%s", table)
	}

	// Plan, then execute.
	plan := wantRun(t, bs, 0, nil, "groups", "reset-offsets", "g", "--shift-by", "-4", "--topic", "t:0,1")
	if lines := strings.Split(plan, "\n"); len(lines) != 4 || !strings.Contains(lines[0], "PREVIOUS-OFFSET") ||
		strings.Join(strings.Fields(lines[1]), " ") != "t 0 10 6" || strings.Join(strings.Fields(lines[2]), " ") != "t 1 10 6" {
		t.Fatalf("plan:\n%s", plan)
	}
	decodeJSON(t, wantRun(t, bs, 0, nil, "groups", "describe", "g", "--output", "json"), &desc)
	if desc.Groups[0].Offsets[0].CurrentOffset != 10 {
		t.Fatalf("a plan moved the offsets: %+v", desc.Groups[0].Offsets)
	}
	var res struct {
		Executed   bool           `json:"executed"`
		Partitions []offsetResetJ `json:"partitions"`
	}
	decodeJSON(t, wantRun(t, bs, 0, nil, "groups", "reset-offsets", "g", "--to-earliest", "--execute", "--output", "json"), &res)
	if !res.Executed || len(res.Partitions) != 3 || res.Partitions[2].NewOffset != 0 {
		t.Fatalf("reset --execute: %+v", res)
	}
	out, _, err = runConsumeCmd("consume", "t", "--bootstrap", bs, "--group", "g", "--max-messages", "30")
	if err != nil || strings.Count(out, "\n") != 30 {
		t.Fatalf("after the reset to earliest the group reads all 30 again: %d lines, %v", strings.Count(out, "\n"), err)
	}

	// A member in the group: reset and delete are refused.
	cl, err := client.New(client.Config{Bootstrap: []string{bs}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	gc, err := client.NewGroupConsumer(cl, client.GroupConsumerConfig{Group: "g", Topics: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); len(gc.Assignment()) < 3; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the member got no partitions")
		}
	}
	wantRun(t, bs, 1, []string{`reset offsets of group "g"`, "NON_EMPTY_GROUP", "stop them"}, "groups", "reset-offsets", "g", "--to-latest", "--execute")
	wantRun(t, bs, 1, []string{`delete group "g"`, "NON_EMPTY_GROUP"}, "groups", "delete", "g")
	decodeJSON(t, wantRun(t, bs, 0, nil, "groups", "describe", "g", "--output", "json"), &desc)
	if m := desc.Groups[0].Members; len(m) != 1 || m[0].MemberID != gc.MemberID() || len(m[0].Assigned["t"]) != 3 {
		t.Fatalf("describe with a member: %+v", desc.Groups[0].Members)
	}
	if err := gc.Close(); err != nil {
		t.Fatal(err)
	}
	out = wantRun(t, bs, 0, nil, "groups", "delete", "g")
	if out != "Deleted group g.\n" {
		t.Fatalf("delete: %q", out)
	}
	wantRun(t, bs, 1, []string{`describe group "g"`, "GROUP_ID_NOT_FOUND"}, "groups", "describe", "g")
	wantRun(t, bs, 1, []string{`delete group "nope"`, "GROUP_ID_NOT_FOUND"}, "groups", "delete", "nope")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ls, err := client.NewAdmin(cl).ListGroups(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("groups after delete: %v %v", ls, fmt.Sprint(err))
	}
}
