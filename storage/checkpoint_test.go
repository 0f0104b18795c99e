package storage

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestCheckpointFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	for _, lines := range [][]string{{}, {"a"}, {"x 1", "y 2", "z 3"}} {
		if err := WriteCheckpointFile(path, 3, lines); err != nil {
			t.Fatal(err)
		}
		got, err := ReadCheckpointFile(path, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(lines) || (len(lines) > 0 && !reflect.DeepEqual(got, lines)) {
			t.Fatalf("read %q, wrote %q", got, lines)
		}
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestCheckpointFileMissing(t *testing.T) {
	got, err := ReadCheckpointFile(filepath.Join(t.TempDir(), "nope"), 0)
	if got != nil || err != nil {
		t.Fatalf("missing file: got %q, %v; want nil, nil", got, err)
	}
	m, err := ReadOffsetCheckpoint(filepath.Join(t.TempDir(), "nope"))
	if err != nil || len(m) != 0 {
		t.Fatalf("missing offset checkpoint: got %v, %v", m, err)
	}
}

func TestCheckpointFileCorrupt(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"empty", ""},
		{"only newline", "\n"},
		{"no count", "0\n"},
		{"bad version", "x\n0\n"},
		{"wrong version", "1\n0\n"},
		{"bad count", "0\nx\n"},
		{"negative count", "0\n-1\n"},
		{"too few", "0\n2\na\n"},
		{"too many", "0\n1\na\nb\n"},
		{"torn", "0\n3\na\nb"},
		{"carriage return", "0\n1\na\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadCheckpointFile(path, 0); !errors.Is(err, ErrCorruptCheckpoint) {
				t.Fatalf("got %v, want ErrCorruptCheckpoint", err)
			}
		})
	}
	// Kafka's reader accepts a last line without its newline; so do we.
	path := filepath.Join(t.TempDir(), "cp")
	if err := os.WriteFile(path, []byte("0\n2\na\nb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadCheckpointFile(path, 0); err != nil || !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestWriteCheckpointFileRejectsLineBreaks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	if err := WriteCheckpointFile(path, 0, []string{"a\nb"}); !errors.Is(err, ErrCorruptCheckpoint) {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("refused write left a file")
	}
}

func TestOffsetCheckpointFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "recovery-point-offset-checkpoint")
	m := map[TopicPartition]int64{
		{"orders", 1}:  977,
		{"orders", 0}:  1200,
		{"audit", 10}:  0,
		{"audit", 2}:   -1,
		{"orders", 11}: 1 << 40,
	}
	if err := WriteOffsetCheckpoint(path, m); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "0\n5\naudit 2 -1\naudit 10 0\norders 0 1200\norders 1 977\norders 11 1099511627776\n"
	if string(raw) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", raw, want)
	}
	got, err := ReadOffsetCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("read %v, wrote %v", got, m)
	}
}

func TestOffsetCheckpointRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tp := range []TopicPartition{{"", 0}, {"a b", 0}, {"a\tb", 0}, {"a\nb", 0}, {"a", -1}} {
		path := filepath.Join(dir, "cp")
		if err := WriteOffsetCheckpoint(path, map[TopicPartition]int64{tp: 1}); !errors.Is(err, ErrCorruptCheckpoint) {
			t.Errorf("%q: got %v, want ErrCorruptCheckpoint", tp, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%q: refused write left a file", tp)
		}
	}
	for _, body := range []string{
		"0\n1\norders 0\n",
		"0\n1\norders 0 1 2\n",
		"0\n1\norders x 1\n",
		"0\n1\norders -1 1\n",
		"0\n1\norders 4294967296 1\n",
		"0\n1\norders 0 x\n",
		"0\n2\norders 0 1\norders 0 2\n",
	} {
		path := filepath.Join(dir, "cp")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadOffsetCheckpoint(path); !errors.Is(err, ErrCorruptCheckpoint) {
			t.Errorf("%q: got %v, want ErrCorruptCheckpoint", body, err)
		}
	}
}

// A crash while writing leaves a torn <path>.tmp next to the good file: the
// reader ignores it and the next write overwrites it.
func TestCheckpointLeftoverTmp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replication-offset-checkpoint")
	good := map[TopicPartition]int64{{"t", 0}: 42}
	if err := WriteOffsetCheckpoint(path, good); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", []byte("0\n7\nt 0 9"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadOffsetCheckpoint(path)
	if err != nil || !reflect.DeepEqual(got, good) {
		t.Fatalf("with a torn .tmp: got %v, %v; want %v", got, err, good)
	}
	next := map[TopicPartition]int64{{"t", 0}: 43, {"t", 1}: 5}
	if err := WriteOffsetCheckpoint(path, next); err != nil {
		t.Fatal(err)
	}
	got, err = ReadOffsetCheckpoint(path)
	if err != nil || !reflect.DeepEqual(got, next) {
		t.Fatalf("after overwrite: got %v, %v; want %v", got, err, next)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatal(".tmp not consumed by the write")
	}
}

// A write that fails before the rename (here: the fsync) leaves the good file
// in place and removes the temporary file.
func TestCheckpointFailedWriteKeepsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	if err := WriteCheckpointFile(path, 0, []string{"old"}); err != nil {
		t.Fatal(err)
	}
	injected := errors.New("injected fsync failure")
	syncFile = func(*os.File) error { return injected }
	defer func() { syncFile = (*os.File).Sync }()
	if err := WriteCheckpointFile(path, 0, []string{"new"}); !errors.Is(err, injected) {
		t.Fatalf("got %v, want the injected error", err)
	}
	got, err := ReadCheckpointFile(path, 0)
	if err != nil || !reflect.DeepEqual(got, []string{"old"}) {
		t.Fatalf("got %q, %v; want the old content", got, err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatal(".tmp left after a failed write")
	}
}

// The helper process for TestCheckpointKilledMidWrite: it rewrites the
// checkpoint as fast as it can until killed.
func TestCheckpointHelperProcess(t *testing.T) {
	path := os.Getenv("STRATA_CHECKPOINT_HELPER")
	if path == "" {
		t.Skip("helper process only")
	}
	for i := int64(1); ; i++ {
		m := map[TopicPartition]int64{}
		for p := int32(0); p < 50; p++ {
			m[TopicPartition{"topic-with-a-longish-name", p}] = i
		}
		if err := WriteOffsetCheckpoint(path, m); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}

// Kill a process that is rewriting a checkpoint at random moments: the file
// must always read back whole, with one generation in every line.
func TestCheckpointKilledMidWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "recovery-point-offset-checkpoint")
	for round := 0; round < 5; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCheckpointHelperProcess$")
		cmd.Env = append(os.Environ(), "STRATA_CHECKPOINT_HELPER="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+round*15) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		m, err := ReadOffsetCheckpoint(path)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(m) == 0 {
			continue // killed before its first rename
		}
		if len(m) != 50 {
			t.Fatalf("round %d: %d entries, want 50", round, len(m))
		}
		var gen int64 = -1
		for tp, off := range m {
			if gen == -1 {
				gen = off
			} else if off != gen {
				t.Fatalf("round %d: mixed generations: %s at %d, others at %d", round, tp, off, gen)
			}
		}
		t.Logf("round %d: generation %s survived", round, strconv.FormatInt(gen, 10))
	}
}

// FuzzReadOffsetCheckpoint: any file content either fails with
// ErrCorruptCheckpoint or reads as a map that writes back and reads again
// identically. It never panics.
func FuzzReadOffsetCheckpoint(f *testing.F) {
	f.Add([]byte("0\n2\norders 0 1200\norders 1 977\n"))
	f.Add([]byte("0\n0\n"))
	f.Add([]byte("0\n1\na 0 -1"))
	f.Add([]byte("1\n1\na 0 1\n"))
	f.Add([]byte("0\n1\na  0\t1\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "cp")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := ReadOffsetCheckpoint(path)
		if err != nil {
			if !errors.Is(err, ErrCorruptCheckpoint) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		if err := WriteOffsetCheckpoint(path, m); err != nil {
			t.Fatalf("a map that read back does not write: %v", err)
		}
		again, err := ReadOffsetCheckpoint(path)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip: %v, %v; want %v", again, err, m)
		}
	})
}
