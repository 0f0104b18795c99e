package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratalog/strata/storage"
	"github.com/stratalog/strata/storage/record"
)

// writeLog writes a small two-segment log and returns its directory.
func writeLog(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "t-0")
	cfg := storage.DefaultConfig()
	cfg.SegmentBytes = 1024
	cfg.IndexIntervalBytes = 100
	l, err := storage.Open(dir, cfg, storage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := record.NewBuilder(record.BatchOptions{})
	for i := range 20 {
		b.Reset(record.BatchOptions{Codec: record.Codec(i % 5)})
		b.Append(int64(i), []byte("key"), []byte("value\x01"), []record.Header{{Key: "h", Value: []byte("v")}})
		out, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.AppendAsLeader(out, 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runCmd(args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestDumpLog(t *testing.T) {
	dir := writeLog(t)
	seg := filepath.Join(dir, storage.SegmentFileName(0, storage.LogFileSuffix))
	out, err := runCmd("dump-log", "--records", seg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"baseOffset: 0 lastOffset: 0 count: 1", "partitionLeaderEpoch: 3", "compresscodec: zstd", `key: "key" payload: 0x76616c756501`, "headers: [h=\"v\"]"} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q:\n%s", want, out)
		}
	}
	out, err = runCmd("dump-log", filepath.Join(dir, storage.SegmentFileName(0, storage.IndexFileSuffix)))
	if err != nil || !strings.Contains(out, "offset: ") {
		t.Fatalf("index dump: %v\n%s", err, out)
	}
	out, err = runCmd("dump-log", filepath.Join(dir, storage.SegmentFileName(0, storage.TimeIndexFileSuffix)))
	if err != nil || !strings.Contains(out, "timestamp: ") {
		t.Fatalf("time index dump: %v\n%s", err, out)
	}
	if out, err := runCmd("dump-log", "--verify", dir); err != nil || strings.Contains(out, "DAMAGED") {
		t.Fatalf("verify of a sound log: %v\n%s", err, out)
	}
}

func TestDumpLogVerifyFindsDamage(t *testing.T) {
	dir := writeLog(t)
	seg := filepath.Join(dir, storage.SegmentFileName(0, storage.LogFileSuffix))
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd("dump-log", "--verify", dir)
	if !errors.Is(err, errDamaged) || exitCode(err) != 2 {
		t.Fatalf("verify of a damaged log: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	if !strings.Contains(out, "DAMAGED") || !strings.Contains(out, "corrupt record") {
		t.Fatalf("verify output does not name the damage:\n%s", out)
	}
	if _, err := runCmd("dump-log", seg); !errors.Is(err, errDamaged) {
		t.Fatalf("dumping a damaged log: %v", err)
	}
}

func TestDumpLogBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "notes.txt")
	os.WriteFile(junk, []byte("x"), 0o644)
	for _, args := range [][]string{
		{"dump-log"},
		{"dump-log", junk},
		{"dump-log", filepath.Join(dir, "00000000000000000000.log")},
		{"dump-log", filepath.Join(dir, "00000000000000000000.bogus")},
		{"dump-log", "--max-index-size", "x", junk},
	} {
		if _, err := runCmd(args...); err == nil || errors.Is(err, errDamaged) {
			t.Errorf("%v: %v, want a usage or input error", args, err)
		}
	}
}
