package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Files of a data directory. Part of the format: do not change.
//
//	<data-dir>/
//	  logs/<topic>-<partition>/               one Log each
//	  recovery-point-offset-checkpoint        offsets below which each log is fsynced
//	  replication-offset-checkpoint           each log's high watermark
//	  log-start-offset-checkpoint             each log's first readable offset
//	  .clean-shutdown                         present only after a clean Close
const (
	LogsDir                    = "logs"
	RecoveryPointCheckpoint    = "recovery-point-offset-checkpoint"
	ReplicationCheckpoint      = "replication-offset-checkpoint"
	LogStartOffsetCheckpoint   = "log-start-offset-checkpoint"
	CleanShutdownFile          = ".clean-shutdown"
	deletedLogDirSuffix        = ".delete"
	defaultBackgroundInterval  = time.Second
	defaultCheckpointIntervals = 5
)

// Manager owns the logs of one data directory: it opens them with what the
// checkpoints say, writes the checkpoints, runs retention, compaction and
// flush.ms in the background, and marks a clean shutdown.
type Manager struct {
	dir      string
	defaults Config
	logger   *slog.Logger
	now      func() time.Time

	mu struct {
		sync.Mutex
		logs   map[TopicPartition]*Log
		closed bool
	}
	checkpointMu sync.Mutex // serializes checkpoint writes
}

// ManagerOptions configure OpenManager.
type ManagerOptions struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Configs gives a partition's log config; the defaults when nil.
	Configs func(TopicPartition) Config
}

// OpenManager opens every log under dataDir/logs. After an unclean shutdown
// (no .clean-shutdown marker) each log validates what follows its recovery
// point; after a clean one it trusts its files.
func OpenManager(dataDir string, defaults Config, opts ManagerOptions) (*Manager, error) {
	if err := defaults.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{dir: dataDir, defaults: defaults, logger: opts.Logger, now: opts.Now}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.mu.logs = map[TopicPartition]*Log{}
	if err := os.MkdirAll(filepath.Join(dataDir, LogsDir), 0o755); err != nil {
		return nil, fmt.Errorf("storage: open data dir: %w", err)
	}
	recovery, err := ReadOffsetCheckpoint(filepath.Join(dataDir, RecoveryPointCheckpoint))
	if err != nil {
		return nil, err
	}
	starts, err := ReadOffsetCheckpoint(filepath.Join(dataDir, LogStartOffsetCheckpoint))
	if err != nil {
		return nil, err
	}
	hws, err := ReadOffsetCheckpoint(filepath.Join(dataDir, ReplicationCheckpoint))
	if err != nil {
		return nil, err
	}
	markerPath := filepath.Join(dataDir, CleanShutdownFile)
	_, statErr := os.Stat(markerPath)
	clean := statErr == nil
	// From now on a crash is unclean.
	if clean {
		if err := os.Remove(markerPath); err != nil {
			return nil, fmt.Errorf("storage: open data dir: %w", err)
		}
		if err := syncDir(dataDir); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(filepath.Join(dataDir, LogsDir))
	if err != nil {
		return nil, fmt.Errorf("storage: open data dir: %w", err)
	}
	for _, e := range entries {
		path := filepath.Join(dataDir, LogsDir, e.Name())
		if strings.HasSuffix(e.Name(), deletedLogDirSuffix) {
			if err := os.RemoveAll(path); err != nil {
				return nil, fmt.Errorf("storage: remove deleted log: %w", err)
			}
			continue
		}
		tp, ok := ParseLogDirName(e.Name())
		if !ok || !e.IsDir() {
			m.logger.Warn("ignoring unexpected entry in logs dir", "name", e.Name())
			continue
		}
		cfg := defaults
		if opts.Configs != nil {
			cfg = opts.Configs(tp)
		}
		l, err := Open(path, cfg, OpenOptions{
			RecoveryPoint:  recovery[tp],
			LogStartOffset: starts[tp],
			HighWatermark:  hws[tp],
			CleanShutdown:  clean,
			Logger:         m.logger.With("topic", tp.Topic, "partition", tp.Partition),
			Now:            m.now,
		})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("storage: open %s: %w", tp, err)
		}
		m.mu.logs[tp] = l
	}
	return m, nil
}

// LogDirName is the directory name of a partition's log: <topic>-<partition>.
func LogDirName(tp TopicPartition) string { return tp.Topic + "-" + strconv.Itoa(int(tp.Partition)) }

// ParseLogDirName reverses LogDirName (topics may contain '-').
func ParseLogDirName(name string) (TopicPartition, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return TopicPartition{}, false
	}
	p, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || p < 0 {
		return TopicPartition{}, false
	}
	return TopicPartition{Topic: name[:i], Partition: int32(p)}, true
}

// Get returns the partition's log, or nil.
func (m *Manager) Get(tp TopicPartition) *Log {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.logs[tp]
}

// Partitions lists the partitions with a log, sorted.
func (m *Manager) Partitions() []TopicPartition {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]TopicPartition, 0, len(m.mu.logs))
	for tp := range m.mu.logs {
		out = append(out, tp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// GetOrCreate returns the partition's log, creating an empty one with cfg.
func (m *Manager) GetOrCreate(tp TopicPartition, cfg Config) (*Log, error) {
	if err := validateCheckpointTopic(tp); err != nil {
		return nil, err
	}
	if tp.Partition < 0 {
		return nil, fmt.Errorf("%w: partition %d", ErrInvalidConfig, tp.Partition)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil, ErrClosed
	}
	if l := m.mu.logs[tp]; l != nil {
		return l, nil
	}
	l, err := Open(filepath.Join(m.dir, LogsDir, LogDirName(tp)), cfg, OpenOptions{
		Logger: m.logger.With("topic", tp.Topic, "partition", tp.Partition),
		Now:    m.now,
	})
	if err != nil {
		return nil, err
	}
	m.mu.logs[tp] = l
	return l, nil
}

// Delete closes and removes a partition's log: the directory is renamed
// <name>.delete first, so a crash leaves nothing that reopens as a log.
func (m *Manager) Delete(tp TopicPartition) error {
	m.mu.Lock()
	l := m.mu.logs[tp]
	delete(m.mu.logs, tp)
	m.mu.Unlock()
	if l == nil {
		return nil
	}
	if err := l.Close(); err != nil {
		m.logger.Warn("close deleted log", "topic", tp.Topic, "partition", tp.Partition, "err", err)
	}
	gone := l.Dir() + deletedLogDirSuffix
	if err := os.Rename(l.Dir(), gone); err != nil {
		return fmt.Errorf("storage: delete log %s: %w", tp, err)
	}
	if err := syncDir(filepath.Dir(l.Dir())); err != nil {
		return err
	}
	return os.RemoveAll(gone)
}

// Checkpoint writes the three offset checkpoints for every open log.
func (m *Manager) Checkpoint() error {
	m.checkpointMu.Lock()
	defer m.checkpointMu.Unlock()
	m.mu.Lock()
	recovery := make(map[TopicPartition]int64, len(m.mu.logs))
	starts := make(map[TopicPartition]int64, len(m.mu.logs))
	hws := make(map[TopicPartition]int64, len(m.mu.logs))
	for tp, l := range m.mu.logs {
		recovery[tp] = l.RecoveryPoint()
		starts[tp] = l.LogStartOffset()
		hws[tp] = l.HighWatermark()
	}
	m.mu.Unlock()
	return errors.Join(
		WriteOffsetCheckpoint(filepath.Join(m.dir, RecoveryPointCheckpoint), recovery),
		WriteOffsetCheckpoint(filepath.Join(m.dir, LogStartOffsetCheckpoint), starts),
		WriteOffsetCheckpoint(filepath.Join(m.dir, ReplicationCheckpoint), hws),
	)
}

// RunOnce applies flush.ms, retention and compaction to every log once.
func (m *Manager) RunOnce() error {
	var errs []error
	for _, tp := range m.Partitions() {
		l := m.Get(tp)
		if l == nil {
			continue
		}
		if err := l.MaybeFlush(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", tp, err))
		}
		if _, err := l.ApplyRetention(); err != nil && !errors.Is(err, ErrClosed) {
			errs = append(errs, fmt.Errorf("%s: %w", tp, err))
		}
		if _, err := l.Compact(); err != nil && !errors.Is(err, ErrClosed) {
			errs = append(errs, fmt.Errorf("%s: %w", tp, err))
		}
	}
	return errors.Join(errs...)
}

// Run does RunOnce every interval and writes checkpoints every few rounds,
// until ctx ends.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = defaultBackgroundInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for round := 1; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.RunOnce(); err != nil {
			m.logger.Error("log maintenance", "err", err)
		}
		if round%defaultCheckpointIntervals == 0 {
			if err := m.Checkpoint(); err != nil {
				m.logger.Error("write checkpoints", "err", err)
			}
		}
	}
}

// Close flushes and closes every log, writes the checkpoints, and marks the
// shutdown clean so the next open skips recovery. A failure anywhere leaves
// the marker out.
func (m *Manager) Close() error {
	logs, ok := m.markClosed()
	if !ok {
		return nil
	}
	var errs []error
	for tp, l := range logs {
		// A failed log may hold bytes it wrote and never published (a run
		// whose pwrite went through before its index entry failed): the
		// next open must validate, not trust, its files. A failed fsync
		// makes the log's error sticky: it is reported once.
		err := l.Flush()
		if err == nil {
			err = l.failed()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", tp, err))
		}
	}
	errs = append(errs, m.Checkpoint(), closeLogs(logs))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(m.dir, CleanShutdownFile), nil, 0o644); err != nil {
		return fmt.Errorf("storage: clean shutdown marker: %w", err)
	}
	return syncDir(m.dir)
}

// Abandon closes every log without flushing, checkpointing or marking a
// clean shutdown: what a crash leaves behind, for tests and for a process
// that must stop at once. The next open recovers.
func (m *Manager) Abandon() error {
	logs, ok := m.markClosed()
	if !ok {
		return nil
	}
	return closeLogs(logs)
}

// markClosed marks the manager closed and returns its logs; ok is false if
// it was closed already.
func (m *Manager) markClosed() (map[TopicPartition]*Log, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil, false
	}
	m.mu.closed = true
	return m.mu.logs, true
}

func closeLogs(logs map[TopicPartition]*Log) error {
	var errs []error
	for tp, l := range logs {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", tp, err))
		}
	}
	return errors.Join(errs...)
}
