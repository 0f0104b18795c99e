package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runPerfConsumeCmd runs `strata perf consume` under a root with the global
// flags (whether or not the perf parent command is registered yet).
func runPerfConsumeCmd(args ...string) (string, error) {
	root := &cobra.Command{Use: "strata", SilenceUsage: true, SilenceErrors: true}
	var g globalOptions
	g.addFlags(root)
	perf := &cobra.Command{Use: "perf"}
	perf.AddCommand(newPerfConsumeCmd(&g))
	root.AddCommand(perf)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"perf", "consume"}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestPerfConsume(t *testing.T) {
	bs, _ := consumeTestCluster(t) // 30 records

	out, err := runPerfConsumeCmd("--bootstrap", bs, "--topic", "t", "--num-records", "25", "--output", "json")
	if err != nil {
		t.Fatal(err, out)
	}
	var res perfConsumeResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if res.Records != 25 || res.Bytes == 0 || res.RecordsPerSec <= 0 || res.MBPerSec <= 0 || res.FirstRecordMs <= 0 || res.Topic != "t" {
		t.Fatalf("result %+v", res)
	}

	out, err = runPerfConsumeCmd("--bootstrap", bs, "--topic", "t", "--num-records", "30")
	if err != nil || !strings.Contains(out, "RECORDS/S") || !strings.Contains(out, "\n30 ") {
		t.Fatalf("table: %q, %v", out, err)
	}

	// Fewer records than asked: the figures, then exit 1 saying so.
	out, err = runPerfConsumeCmd("--bootstrap", bs, "--topic", "t", "--num-records", "100", "--timeout", "300ms")
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "only 30 of 100") || !strings.Contains(out, "RECORDS/S") {
		t.Fatalf("short topic: %q, %v", out, err)
	}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--num-records", "10"}, "--topic is required"},
		{[]string{"--topic", "t"}, "--num-records must be positive"},
		{[]string{"--topic", "t", "--num-records", "1", "extra"}, "takes no arguments"},
	} {
		_, err := runPerfConsumeCmd(append(tc.args, "--bootstrap", bs)...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: %v; want exit 2 naming %q", tc.args, err, tc.msg)
		}
	}
	_, err = runPerfConsumeCmd("--bootstrap", bs, "--topic", "nope", "--num-records", "1")
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("unknown topic: %v", err)
	}
}
