package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratalog/strata/storage/record"
)

func TestManagerCheckpointsAndCleanShutdown(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.RetentionMs = -1
	m, err := OpenManager(dir, cfg, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tps := []TopicPartition{{"orders", 0}, {"orders", 1}, {"my-topic-with-dashes", 7}}
	for i, tp := range tps {
		l, err := m.GetOrCreate(tp, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 * (i + 1) {
			if _, err := l.Append(makeBatch(t, record.CodecNone, 3, "m", 0)); err != nil {
				t.Fatal(err)
			}
		}
		l.SetHighWatermark(int64(5 * (i + 1)))
	}
	if _, err := m.Get(tps[0]).DeleteRecordsBefore(4); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetOrCreate(TopicPartition{"bad topic", 0}, cfg); err == nil {
		t.Fatal("a topic name with a space must be refused")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, CleanShutdownFile)); err != nil {
		t.Fatalf("no clean shutdown marker: %v", err)
	}
	hws, err := ReadOffsetCheckpoint(filepath.Join(dir, ReplicationCheckpoint))
	if err != nil || hws[tps[2]] != 15 {
		t.Fatalf("replication checkpoint %v, %v", hws, err)
	}

	m2, err := OpenManager(dir, cfg, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := os.Stat(filepath.Join(dir, CleanShutdownFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the marker must go at open, so a crash after it is unclean")
	}
	if got := m2.Partitions(); len(got) != 3 {
		t.Fatalf("reopened partitions %v", got)
	}
	for i, tp := range tps {
		l := m2.Get(tp)
		if l.LogEndOffset() != int64(30*(i+1)) || l.HighWatermark() != int64(5*(i+1)) || l.RecoveryPoint() != l.LogEndOffset() {
			t.Fatalf("%v: end %d hw %d recovery point %d", tp, l.LogEndOffset(), l.HighWatermark(), l.RecoveryPoint())
		}
	}
	if got := m2.Get(tps[0]).LogStartOffset(); got != 4 {
		t.Fatalf("log start %d after reopen, want 4", got)
	}
	if err := m2.Delete(tps[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, LogsDir, "orders-1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("deleted log dir still there")
	}
	if err := m2.RunOnce(); err != nil {
		t.Fatal(err)
	}
}

// TestManagerCloseAfterFailedLogIsUnclean: a log whose write failed is not
// marked clean at Close (it may hold bytes it wrote and never published),
// so the next open validates its files.
func TestManagerCloseAfterFailedLogIsUnclean(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	m, err := OpenManager(dir, cfg, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.GetOrCreate(TopicPartition{"t", 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(makeBatch(t, record.CodecNone, 3, "m", 0)); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.failLocked(errors.New("index append: injected"))
	l.mu.Unlock()
	if err := m.Close(); !errors.Is(err, ErrStorageFailed) {
		t.Fatalf("Close after a failed log: %v, want ErrStorageFailed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CleanShutdownFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("clean shutdown marked after a failed log: %v", err)
	}
}

// A log whose last fsync fails at Close reports that failure once, not
// once from the flush and again as the log's sticky error.
func TestManagerCloseReportsFailedFlushOnce(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	m, err := OpenManager(dir, cfg, ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.GetOrCreate(TopicPartition{"t", 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(makeBatch(t, record.CodecNone, 3, "m", 0)); err != nil {
		t.Fatal(err)
	}
	l.segments()[0].file.File().Close() // the fsync at Close fails
	err = m.Close()
	if !errors.Is(err, ErrStorageFailed) {
		t.Fatalf("Close with a failing fsync: %v, want ErrStorageFailed", err)
	}
	if n := strings.Count(err.Error(), "fsync"); n != 1 {
		t.Fatalf("the failed fsync reported %d times: %v", n, err)
	}
}
